"""`tffexec benchmark`'s measurement: start-up stages once, then the steady state of `call`.

Why its own module: the CLI command only parses flags and prints; a Python user can time a
computation the same way. The stages (`tffexec.stages`) are loading, `Runner.prepare` (the checks
and the argument's conversion, reported as `prepare_s`), building the stack, and a first call
(which imports TensorFlow graphs); the steady-state times cover only `Runner.call` on the one
`Prepared`, "argument in memory -> result in memory", as benchmarks/bench_corpus.py does for TFF
and tffexec.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

from tffexec import preflight
from tffexec import runner as runner_lib
from tffexec import stages
from tffexec import tf_runtime
from tffexec.executors import activity


@dataclasses.dataclass
class BenchmarkReport:
    """What `tffexec benchmark` measures, all times in seconds."""

    load_computation_s: float
    load_argument_s: float
    import_tensorflow_s: float  # 0.0 when TensorFlow was imported before, or is not needed
    prepare_s: float
    stack_build_s: float
    first_call_s: float
    warmup: int
    times_s: list[float]
    clients: int
    #: Client graph calls per path (`activity.PATHS`) over the timed runs, all runs together.
    client_paths: dict[str, int] = dataclasses.field(default_factory=dict)

    def steady(self) -> dict[str, float]:
        times = self.times_s
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        return {"min_s": ordered[0], "median_s": statistics.median(times),
                "mean_s": statistics.fmean(times), "p90_s": p90, "max_s": ordered[-1],
                "runs": len(times)}


def build_stack(runner: runner_lib.Runner, prepared: preflight.Prepared) -> float:
    """Builds (or takes from the factory's cache) the stack for `prepared.clients`; seconds."""
    with stages.stage(stages.BUILD_STACK) as timing:
        runner.stack(prepared)
    return timing["seconds"]


def benchmark(runner: runner_lib.Runner, load_computation: Callable[[], Any],
              load_argument: Callable[[preflight.Signature], Any], *, clients: int | None,
              runs: int, warmup: int, on_run: Callable[[int, int], None] | None = None,
              on_prepared: Callable[[preflight.Prepared], None] | None = None) -> BenchmarkReport:
    """Loads, prepares, builds the stack, then times `runs` calls after a first and `warmup`.

    The import of TensorFlow (when this run triggers it) is reported on its own and left out of
    the stage that triggered it. `prepare` and the first call (it imports TensorFlow graphs) are
    reported on their own; the steady-state times cover only `Runner.call` on the one `Prepared`,
    "argument in memory -> result in memory". `on_prepared` sees the `Prepared` before the stack
    is built (the CLI notes a `--clients` that changes nothing).
    """
    begin = time.perf_counter()
    with stages.stage(stages.LOAD_COMPUTATION) as t_comp:
        computation = load_computation()
    sig = preflight.signature(computation)
    with stages.stage(stages.LOAD_ARGUMENT) as t_arg:
        argument = load_argument(sig)
    start = time.perf_counter()
    prepared = runner.prepare(computation, argument, clients=clients)
    prepare_end = time.perf_counter()
    prepare_s = prepare_end - start - tf_runtime.import_seconds_within(start, prepare_end)
    if on_prepared is not None:
        on_prepared(prepared)
    build_s = build_stack(runner, prepared)
    with stages.stage("first call") as t_first:
        runner.call(prepared)
    end = time.perf_counter()  # TensorFlow, when needed, has been imported by now
    total = warmup + runs
    times: list[float] = []
    paths = activity.path_counts()
    for i in range(total):
        if i == warmup:
            paths = activity.path_counts()
        activity.report("benchmark runs", i, total)
        if on_run is not None:
            on_run(i, total)
        t0 = time.perf_counter()
        runner.call(prepared)
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    activity.report("benchmark runs", total, total)
    return BenchmarkReport(load_computation_s=t_comp["seconds"], load_argument_s=t_arg["seconds"],
                           import_tensorflow_s=tf_runtime.import_seconds_within(begin, end),
                           prepare_s=prepare_s, stack_build_s=build_s,
                           first_call_s=t_first["seconds"], warmup=warmup, times_s=times,
                           clients=prepared.clients, client_paths=activity.paths_since(paths))
