"""Where a per-client round's time goes, against the per-client floor (issue 16 follow-ups).

    .venv/bin/python benchmarks/per_client_breakdown.py
    .venv/bin/python benchmarks/per_client_breakdown.py examples/learning/fedavg_mlp_c10 --rounds 9

One process, one JSON line. The round (`--no-batch`: one graph call per client, the path the
floor compares with) and `learning_floors.per_client_floor` (one tf.function per client over its
batches as tensors) take turns, --rounds each after 2 untimed of each: medians of wall and CPU
time. Then 5 more rounds with the time split by stage: TensorFlow's function calls
(`tf_function.call_flat`), tffexec's own Python inside `GraphFunction.__call__` (argument
conversion, element lists, the session token), and everything outside it (the executor stack,
result conversion).

To compare two versions of tffexec on a shared machine, alternate processes of each (the
machine's load moves between processes more than within one) and compare the ratios
tffexec / floor that each process reports.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import learning_floors  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def _round(case: pathlib.Path) -> Callable[[], Any]:
    """One call of the case's round on a runner with batching off."""
    import federated_language as fl  # noqa: PLC0415

    from tffexec import runner as runner_lib  # noqa: PLC0415
    from tffexec.factories import config as config_lib  # noqa: PLC0415
    from tffexec.formats import loading  # noqa: PLC0415

    comp = loading.load_computation(case / "comp.pb")
    arg = loading.load_value((case / "arg.pb").read_bytes(),
                             fl.Type.from_proto(comp.type).parameter)
    runner = runner_lib.Runner(config_lib.StackConfig(batch=False))
    prepared = runner.prepare(comp, arg)
    return lambda: runner.call(prepared)


def _timed(function: Callable[[], Any]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def _stages(call: Callable[[], Any], rounds: int) -> dict[str, float]:
    """Seconds per round by stage (wrapping GraphFunction's call and its TensorFlow call)."""
    from tffexec.executors import tf_function  # noqa: PLC0415

    spent = {"graph_function": 0.0, "tensorflow": 0.0}
    call_graph, call_flat = tf_function.GraphFunction.__call__, tf_function.call_flat

    def accumulating(function: Callable, key: str) -> Callable:
        def timed(*args):
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                spent[key] += time.perf_counter() - start
        return timed

    tf_function.call_flat = accumulating(call_flat, "tensorflow")
    tf_function.GraphFunction.__call__ = accumulating(call_graph, "graph_function")
    try:
        start = time.perf_counter()
        for _ in range(rounds):
            call()
        total = (time.perf_counter() - start) / rounds
    finally:
        tf_function.call_flat, tf_function.GraphFunction.__call__ = call_flat, call_graph
    graph, tensorflow = spent["graph_function"] / rounds, spent["tensorflow"] / rounds
    return {"round": total, "tensorflow_calls": tensorflow,
            "python_in_graph_function": graph - tensorflow, "outside_graph_function": total - graph}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", default=str(REPO / "examples/learning/fedavg_mlp_c100"),
                        help="a case folder with comp.pb, arg.pb, expected.pb (equal datasets)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of each side")
    args = parser.parse_args()
    case = pathlib.Path(args.case)
    floor = learning_floors.per_client_floor(learning_floors.load_round(case))
    call = _round(case)
    for _ in range(2):
        floor()
        call()
    floor_times, round_times = [], []
    for _ in range(args.rounds):
        floor_times.append(_timed(floor))
        round_times.append(_timed(call))
    sides = (("floor", floor_times), ("tffexec", round_times))
    medians = {name: statistics.median(t[0] for t in times) * 1e3 for name, times in sides}
    cpu = {name: statistics.median(t[1] for t in times) * 1e3 for name, times in sides}
    print(json.dumps({
        "case": case.name,
        "wall_ms": {k: round(v, 1) for k, v in medians.items()},
        "cpu_ms": {k: round(v, 1) for k, v in cpu.items()},
        "tffexec_over_floor": {"wall": round(medians["tffexec"] / medians["floor"], 2),
                               "cpu": round(cpu["tffexec"] / cpu["floor"], 2)},
        "stages_ms_per_round": {k: round(v * 1e3, 1) for k, v in _stages(call, 5).items()},
    }))


if __name__ == "__main__":
    main()
