"""How tffexec's cost grows with the number of clients, per stack, against a plain-TF floor.

    .venv/bin/python benchmarks/bench_scaling.py                      # the full table
    .venv/bin/python benchmarks/bench_scaling.py --clients 10,100 --workloads heavy
    .venv/bin/python benchmarks/bench_scaling.py --memory-rounds 100  # flat memory check

Workloads (benchmarks/scaling_comps.py): `trivial` (map x+1, sum), `heavy` (50 chained 64x64
matmuls per client, sum), `fedavg` (broadcast a 784x10 model, 5 local steps on 100 examples per
client, weighted mean). Every (workload, clients, stack) runs in its own process, because
TensorFlow's thread pools are process-wide and fixed at start.

Per configuration it reports: seconds per round (median of --runs after one warm-up round; the
region "argument in memory -> result in memory" through one `tffexec.Runner`), time inside
TensorFlow calls (summed over threads), the runtime's own overhead per client
((wall - TF time) / clients, meaningful on the one-thread local stack), peak RSS, and the floor:
the same math for all clients in one compiled TF program. The summary prints ratios measured in
this run: threaded vs local, and each stack vs the floor.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
STACKS = {
    "local": {"batch": False},
    "threaded": {"kind": "threaded", "batch": False},
    "local-fanout100": {"max_fanout": 100, "batch": False},
    "threaded-fanout100": {"kind": "threaded", "max_fanout": 100, "batch": False},
    "batched": {},
    "batched-threaded": {"kind": "threaded"},
    "batched-fanout100": {"max_fanout": 100},
}


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TFTimer:
    """Sums the wall time spent inside TensorFlow function calls (all threads)."""

    def __init__(self):
        from tffexec.executors import tf_batch  # noqa: PLC0415
        from tffexec.executors import tf_function  # noqa: PLC0415

        self.total = 0.0
        self._lock = threading.Lock()
        tf_function.GraphFunction.__call__ = self._timed(tf_function.GraphFunction.__call__)
        tf_batch.BatchedFunctions._invoke = self._timed(tf_batch.BatchedFunctions._invoke)

    def _timed(self, original):
        timer = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                with timer._lock:
                    timer.total += elapsed

        return timed


def worker(args) -> dict:
    sys.path.insert(0, str(HERE))
    import scaling_comps  # noqa: PLC0415

    from tffexec import runner as runner_lib  # noqa: PLC0415
    from tffexec.factories import config as config_lib  # noqa: PLC0415

    config = config_lib.StackConfig(**STACKS[args.stack], threads=args.threads)
    comp = scaling_comps.computation(args.workload)
    arg = scaling_comps.argument(args.workload, args.clients)
    timer = _TFTimer()
    record = {"workload": args.workload, "clients": args.clients, "stack": args.stack}
    with runner_lib.Runner(config) as runner:
        runner.run(comp, arg)  # warm-up: builds the stack, imports the graphs
        if args.memory_rounds:
            rss = []
            for _ in range(args.memory_rounds):
                runner.run(comp, arg)
                rss.append(_rss_now_mb())
            tenth = max(0, len(rss) // 10 - 1)
            record.update(rounds=len(rss), rss_after_10pct_mb=round(rss[tenth], 1),
                          rss_at_end_mb=round(rss[-1], 1),
                          growth_mb=round(rss[-1] - rss[tenth], 1))
            return record
        times, tf_times = [], []
        for _ in range(args.runs):
            timer.total = 0.0
            start = time.perf_counter()
            runner.run(comp, arg)
            times.append(time.perf_counter() - start)
            tf_times.append(timer.total)
    seconds = statistics.median(times)
    tf_seconds = statistics.median(tf_times)
    floor = scaling_comps.floor(args.workload, args.clients)
    floor()
    floor_times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        floor()
        floor_times.append(time.perf_counter() - start)
    # Wall minus TF time is the runtime's own cost only when one thread does all the work.
    overhead = (max(0.0, seconds - tf_seconds) / args.clients * 1e6
                if config.kind == "local" else None)
    record.update(
        seconds=seconds, tf_seconds=tf_seconds, overhead_us_per_client=overhead,
        floor_seconds=statistics.median(floor_times), peak_rss_mb=round(_peak_rss_mb(), 1))
    return record


def _spawn(workload: str, clients: int, stack: str, opts) -> dict:
    command = [sys.executable, __file__, "--worker", "--workload", workload, "--clients",
               str(clients), "--stack", stack, "--runs", str(opts.runs)]
    if opts.threads:
        command += ["--threads", str(opts.threads)]
    if opts.memory_rounds:
        command += ["--memory-rounds", str(opts.memory_rounds)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=opts.timeout)
    if out.returncode != 0:
        return {"workload": workload, "clients": clients, "stack": stack,
                "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(records: list[dict]) -> str:
    lines = [f"{'workload':8} {'clients':>7} {'stack':18} {'s/round':>9} {'us/client':>10} "
             f"{'in TF':>9} {'overhead/client':>16} {'peak RSS':>9} {'floor s':>9} {'x floor':>8}"]
    for r in records:
        if "error" in r:
            lines.append(f"{r['workload']:8} {r['clients']:>7} {r['stack']:18} error: {r['error']}")
            continue
        overhead = r["overhead_us_per_client"]
        overhead = f"{overhead:13.1f} us" if overhead is not None else f"{'-':>16}"
        lines.append(
            f"{r['workload']:8} {r['clients']:>7} {r['stack']:18} {r['seconds']:9.4f} "
            f"{r['seconds'] / r['clients'] * 1e6:10.1f} {r['tf_seconds']:9.4f} {overhead} "
            f"{r['peak_rss_mb']:7.0f}MB {r['floor_seconds']:9.5f} "
            f"{r['seconds'] / r['floor_seconds']:7.1f}x")
    return "\n".join(lines)


def _ratios(records: list[dict]) -> str:
    by_key = {(r["workload"], r["clients"], r["stack"]): r for r in records if "error" not in r}
    lines = []
    for other, title in (("threaded", "threaded over local (per-client calls)"),
                         ("batched", "batched over local (per-client calls)")):
        rows = []
        for (workload, clients, stack), r in sorted(by_key.items()):
            if stack == "local" and (workload, clients, other) in by_key:
                faster = r["seconds"] / by_key[(workload, clients, other)]["seconds"]
                rows.append(f"  {workload:8} {clients:>7} clients: {faster:.2f}x")
        if rows:
            lines += [f"speed-up, {title}; local s / {other} s, same run:"] + rows
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stack", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--workloads", default="trivial,heavy,fedavg")
    parser.add_argument("--clients", default="1,10,100,1000,10000")
    parser.add_argument("--stacks", default="local,threaded,batched",
                        help=f"comma-separated, from {','.join(STACKS)} (local/threaded: one "
                             "TensorFlow call per client; batched*: columnar clients)")
    parser.add_argument("--threads", type=int, default=None, help="client threads (threaded)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-rounds", type=int, default=0,
                        help="instead of timing, run this many rounds and report RSS growth")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write all records")
    opts = parser.parse_args(argv)
    if opts.worker:
        opts.clients = int(opts.clients)
        print(json.dumps(worker(opts)))
        return 0
    records = []
    for workload in opts.workloads.split(","):
        for clients in (int(c) for c in opts.clients.split(",")):
            for stack in opts.stacks.split(","):
                print(f"... {workload} {clients} {stack}", file=sys.stderr, flush=True)
                records.append(_spawn(workload, clients, stack, opts))
    if opts.memory_rounds:
        for r in records:
            print(json.dumps(r))
    else:
        print(_table(records))
        print()
        print(_ratios(records))
    if opts.json:
        pathlib.Path(opts.json).write_text(json.dumps(records, indent=1))
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
