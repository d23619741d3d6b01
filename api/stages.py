"""A run split into its stages — load, prepare the argument, build the stack, call — each timed
and announced through `tffexec.executors.activity`.

Why: `Runner.run` does everything in one call, which is right for the Python API but hides where
the time goes. The CLI shows these stages as progress (and logs them with `-v`), and `tffexec
benchmark` reports load and stack-build time separately from the steady-state time per call. The
stages use only `Runner`'s public pieces (`prepare_argument`, `resolve_clients`, the factory's
per-client-count stack cache), so a staged run executes exactly what `Runner.run` would.
"""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from typing import Any, Callable, Iterator, Optional

import federated_language
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec import tf_runtime
from tffexec.executors import activity

# Stage names as they appear in progress displays, `-v` logs and benchmark reports.
LOAD_COMPUTATION = "load computation"
LOAD_ARGUMENT = "load argument"
PREPARE = "check argument"
BUILD_STACK = "build stack"
CALL = "run"


@contextlib.contextmanager
def stage(name: str) -> Iterator[dict]:
    """Announces `name` (activity event 0/1), then its end (1/1).

    `["seconds"]` holds its time without the import of TensorFlow, when the stage triggered it
    (that import is a stage of its own, `tf_runtime.IMPORT_STAGE`); `["import_s"]` holds that
    part.
    """
    timing: dict[str, float] = {}
    activity.report(name, 0, 1)
    start = time.perf_counter()
    try:
        yield timing
    finally:
        end = time.perf_counter()
        timing["import_s"] = tf_runtime.import_seconds_within(start, end)
        timing["seconds"] = end - start - timing["import_s"]
        activity.report(name, 1, 1)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A computation's function type, split the way the commands need it."""

    function_type: Any
    parameter_type: Any  # None for a no-argument function or a non-function
    result_type: Any


def signature(computation: computation_pb2.Computation, *, file: str | None = None) -> Signature:
    try:
        function_type = federated_language.Type.from_proto(computation.type)
    except Exception as e:  # noqa: BLE001 - federated-language raises several kinds
        raise errors.ComputationError(f"unreadable type signature: {e}", file=file) from None
    return Signature(function_type, getattr(function_type, "parameter", None),
                     getattr(function_type, "result", function_type))


@dataclasses.dataclass
class Prepared:
    """A computation and its argument, checked and ready to call on a stack of `clients`."""

    computation: computation_pb2.Computation
    signature: Signature
    argument: Any
    clients: int


def prepare(computation: computation_pb2.Computation, argument: Any, clients: Optional[int],
            sig: Signature | None = None) -> Prepared:
    """Checks the argument against the parameter type and settles the client count."""
    sig = sig or signature(computation)
    with stage(PREPARE):
        arg = runner_lib.prepare_argument(argument, sig.parameter_type)
        n = runner_lib.resolve_clients(computation, arg, sig.parameter_type, clients)
    return Prepared(computation, sig, arg, n)


def build_stack(runner: runner_lib.Runner, prepared: Prepared) -> float:
    """Builds (or takes from the factory's cache) the stack for `prepared.clients`; seconds."""
    with stage(BUILD_STACK) as timing:
        runner.factory.create_executor({federated_language.CLIENTS: prepared.clients})
    return timing["seconds"]


def call(runner: runner_lib.Runner, prepared: Prepared) -> Any:
    """One call, "argument in memory -> result in memory", on the stack `build_stack` made."""
    return runner.run(prepared.computation, prepared.argument, clients=prepared.clients)


# ---------------------------------------------------------------------------------- benchmark

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

    def steady(self) -> dict[str, float]:
        times = self.times_s
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        return {"min_s": ordered[0], "median_s": statistics.median(times),
                "mean_s": statistics.fmean(times), "p90_s": p90, "max_s": ordered[-1],
                "runs": len(times)}


def benchmark(runner: runner_lib.Runner, load_computation: Callable[[], Any],
              load_argument: Callable[[Signature], Any], *, clients: Optional[int], runs: int,
              warmup: int, on_run: Callable[[int, int], None] | None = None) -> BenchmarkReport:
    """Loads, builds the stack, then times `runs` calls after one first call and `warmup` more.

    The import of TensorFlow (when this run triggers it) is reported on its own and left out of
    the stage that triggered it. The first call is reported on its own (it imports TensorFlow
    graphs); the steady-state times
    cover only `call`, "argument in memory -> result in memory", as benchmarks/bench_corpus.py
    does for TFF and tffexec.
    """
    begin = time.perf_counter()
    with stage(LOAD_COMPUTATION) as t_comp:
        computation = load_computation()
    sig = signature(computation)
    with stage(LOAD_ARGUMENT) as t_arg:
        argument = load_argument(sig)
    start = time.perf_counter()
    prepared = prepare(computation, argument, clients, sig)
    prepare_end = time.perf_counter()
    prepare_s = prepare_end - start - tf_runtime.import_seconds_within(start, prepare_end)
    build_s = build_stack(runner, prepared)
    with stage("first call") as t_first:
        call(runner, prepared)
    end = time.perf_counter()  # TensorFlow, when needed, has been imported by now
    total = warmup + runs
    times: list[float] = []
    for i in range(total):
        activity.report("benchmark runs", i, total)
        if on_run is not None:
            on_run(i, total)
        t0 = time.perf_counter()
        call(runner, prepared)
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    activity.report("benchmark runs", total, total)
    return BenchmarkReport(load_computation_s=t_comp["seconds"], load_argument_s=t_arg["seconds"],
                           import_tensorflow_s=tf_runtime.import_seconds_within(begin, end),
                           prepare_s=prepare_s, stack_build_s=build_s,
                           first_call_s=t_first["seconds"], warmup=warmup, times_s=times,
                           clients=prepared.clients)
