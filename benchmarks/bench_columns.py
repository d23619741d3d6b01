"""Columnar clients at scale: map+mean over N clients of float32[16] against its floor program.

One run reports, per client count (each in its own process, so that peak memory is its own):

- steady state: `Runner.call` of a prepared run (the argument prepared once, as `tffexec
  benchmark` and `iterate` rounds do), median of --runs, over the floor program
  (`floor_map_mean.py`: the same math as one `tf.function`) timed in the same process;
- load: seconds to read the argument as `tffexec run` does (`tffexec.load_value`), for the npz
  (one stacked [N, 16] array) and for the pb (N members, as TFF writes them);
- whole process: `tffexec run comp.pb arg.npz -o out.npz` (import, load, run, write) over
  `python floor_map_mean.py arg.npz` (TensorFlow's import, load, run), and the peak RSS of the
  `tffexec run` process.

    .venv/bin/python benchmarks/bench_columns.py [--sizes 100000,1000000] [--runs 5]

The computation is the conformance case `scale_map_mean_1000` (TFF 0.87's `comp.pb`:
`federated_mean(federated_map(tanh(2x+1), x))`), whose type does not depend on N.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
COMP = HERE.parent / "examples" / "conformance" / "scale_map_mean_1000" / "comp.pb"


def write_arguments(n: int, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """arg.npz (key `value`, [n, 16] float32) and arg.pb (n members, each an `Array` with raw
    `content`, as TFF 0.87 writes a float32[16]) of the same values."""
    import federated_language as fl  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from tffexec.formats.values import value_to_proto  # noqa: PLC0415

    x = np.random.default_rng(n).uniform(-1, 1, size=(n, 16)).astype(np.float32)
    npz = folder / "arg.npz"
    np.savez(npz, value=x)
    # One member encoded by tffexec, the others copied from it with their own bytes: encoding a
    # million members is not what is measured.
    pb = value_to_proto([x[0]], fl.FederatedType(fl.TensorType(np.float32, [16]), fl.CLIENTS))
    template = pb.federated.value[0]
    members = pb.federated.value
    for row in x[1:]:
        member = members.add()
        member.CopyFrom(template)
        member.array.content = row.tobytes()
    path = folder / "arg.pb"
    path.write_bytes(pb.SerializeToString())
    return npz, path


def _median_seconds(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(n: int, folder: pathlib.Path, runs: int) -> dict:
    """Load times, steady state and floor for n clients, in this process."""
    import numpy as np  # noqa: PLC0415

    import tffexec  # noqa: PLC0415
    from tffexec import policy as policy_lib  # noqa: PLC0415
    from tffexec.factories import config as config_lib  # noqa: PLC0415
    from tffexec.formats import types as tt  # noqa: PLC0415
    from tffexec.runner import Runner, to_proto  # noqa: PLC0415

    sys.path.insert(0, str(HERE))
    import floor_map_mean  # noqa: PLC0415

    policy = policy_lib.Policy(max_clients=max(n, policy_lib.DEFAULT_MAX_CLIENTS))
    comp = to_proto(str(COMP))
    parameter = tt.type_from_proto(comp.type).parameter
    record: dict = {"clients": n}
    loaded = {}
    for fmt in ("npz", "pb"):
        path = folder / f"arg.{fmt}"
        record[f"load_{fmt}_s"] = _median_seconds(
            lambda p=path, f=fmt: loaded.__setitem__(f, tffexec.load_value(p, parameter,
                                                                           policy=policy)),
            max(1, runs // 2))
    with Runner(config_lib.StackConfig(policy=policy)) as runner:
        prepared = runner.prepare(comp, loaded["npz"])
        result = runner.call(prepared)  # warm-up: builds the stack, traces the batched map
        record["steady_s"] = _median_seconds(lambda: runner.call(prepared), runs)
    floor = floor_map_mean.floor_function()
    with np.load(folder / "arg.npz") as archive:
        x = archive["value"]
    import tensorflow as tf  # noqa: PLC0415

    tensor = tf.constant(x)
    expected = floor(tensor).numpy()
    record["floor_s"] = _median_seconds(lambda: floor(tensor).numpy(), runs)
    record["max_abs_diff"] = float(np.max(np.abs(np.asarray(result) - expected)))
    return record


def _timed_process(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit status) of a child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.stderr.write(child.stderr.read().decode(errors="replace")[-2000:])
    child.stderr.close()
    return wall, usage.ru_maxrss / 1024, child.returncode


def whole_process(n: int, folder: pathlib.Path) -> dict:
    """`tffexec run` vs the floor script, each a fresh process on the same npz."""
    run = [sys.executable, "-m", "tffexec", "run", str(COMP), str(folder / "arg.npz"),
           "-o", str(folder / "out.npz"), "-q", "--max-clients", str(max(n, 1))]
    floor = [sys.executable, str(HERE / "floor_map_mean.py"), str(folder / "arg.npz")]
    run_s, run_rss, status = _timed_process(run)
    floor_s, floor_rss, _ = _timed_process(floor)
    return {"run_process_s": run_s, "run_peak_rss_mb": run_rss, "run_status": status,
            "floor_process_s": floor_s, "floor_peak_rss_mb": floor_rss}


def _table(records: list[dict]) -> str:
    head = (f"{'clients':>9} {'steady s':>9} {'floor s':>9} {'x floor':>8} {'load npz s':>10} "
            f"{'load pb s':>9} {'run proc s':>10} {'floor proc s':>12} {'x proc':>7} "
            f"{'run RSS MB':>10}")
    lines = [head]
    for r in records:
        lines.append(
            f"{r['clients']:>9,} {r['steady_s']:9.4f} {r['floor_s']:9.5f} "
            f"{r['steady_s'] / r['floor_s']:7.1f}x {r['load_npz_s']:10.3f} {r['load_pb_s']:9.2f} "
            f"{r['run_process_s']:10.2f} {r['floor_process_s']:12.2f} "
            f"{r['run_process_s'] / r['floor_process_s']:6.1f}x {r['run_peak_rss_mb']:10.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the records")
    opts = parser.parse_args(argv)
    if opts.worker is not None:
        print(json.dumps(worker(opts.worker, pathlib.Path(opts.folder), opts.runs)))
        return 0
    records = []
    for n in (int(s) for s in opts.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-columns-") as tmp:
            folder = pathlib.Path(tmp)
            print(f"... {n} clients", file=sys.stderr, flush=True)
            write_arguments(n, folder)
            out = subprocess.run([sys.executable, __file__, "--worker", str(n), "--folder", tmp,
                                  "--runs", str(opts.runs)], capture_output=True, text=True)
            if out.returncode:
                sys.stderr.write(out.stderr[-3000:])
                return 1
            record = json.loads(out.stdout.strip().splitlines()[-1])
            record.update(whole_process(n, folder))
            records.append(record)
    print(_table(records))
    if opts.json:
        pathlib.Path(opts.json).write_text(json.dumps(records, indent=1))
    return 1 if any(r["run_status"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
