"""Local vs threaded vs Ray stacks at 1 000 and 100 000 clients, and Ray's cost per shard.

    .venv/bin/python benchmarks/bench_ray.py                         # the table + shard sweep
    .venv/bin/python benchmarks/bench_ray.py --clients 1000 --workloads trivial --no-sweep
    .venv/bin/python benchmarks/bench_ray.py --json results.json --timeout 600

Workloads (benchmarks/scaling_comps.py): `trivial` (map x+1, federated_sum: almost no work per
client, so it measures the runtime) and `fedavg` (broadcast a 784x10 model, 5 local steps on 100
generated examples per client, weighted mean: real work per client). Every (workload, clients,
stack) runs in its own process (TensorFlow's thread pools are process-wide), under --timeout: a
configuration that does not finish is reported as such, not extrapolated.

Per configuration: start-up (the first call: building the stack; for Ray also starting the
embedded cluster and its actors, which import TensorFlow), then seconds per round (median of
--runs). Rounds of 100 000 clients are too slow to warm up at full size, so those configurations
warm up on 100 clients (same graphs, same actors) and then time --runs full rounds.

The shard sweep (`--sweep`) runs the trivial workload at --sweep-clients clients on one Ray pool
with more and more shards (--clients-per-shard) and fits seconds = a + b * shards: b is Ray's
cost per shard per round (submitting a batch, the actor's dispatch, fetching a partial result).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
STACKS = {
    "local": {},
    "threaded": {"kind": "threaded"},
    "ray": {"kind": "ray"},
}
SWEEP_SHARDS = (2, 8, 32, 128, 512)


def _config(stack: str, opts):
    from tffexec.factories import config as config_lib  # noqa: PLC0415

    fields = dict(STACKS[stack])
    if stack == "ray":
        fields.update(workers=opts.workers, clients_per_shard=opts.clients_per_shard)
    config = config_lib.StackConfig(**fields)
    if opts.no_batch and hasattr(config, "batch"):
        config = dataclasses.replace(config, batch=False)
    return config


def worker(opts) -> dict:
    sys.path.insert(0, str(HERE))
    import scaling_comps  # noqa: PLC0415

    from tffexec import runner as runner_lib  # noqa: PLC0415

    record = {"workload": opts.workload, "clients": opts.clients, "stack": opts.stack}
    config = _config(opts.stack, opts)
    comp = scaling_comps.computation(opts.workload)
    warm_clients = opts.clients if opts.clients <= 10_000 else 100
    start = time.perf_counter()
    with runner_lib.Runner(config) as runner:
        runner.run(comp, scaling_comps.argument(opts.workload, warm_clients))
        record["startup_s"] = round(time.perf_counter() - start, 2)
        arg = scaling_comps.argument(opts.workload, opts.clients)
        times = []
        for _ in range(opts.runs):
            start = time.perf_counter()
            runner.run(comp, arg)
            times.append(time.perf_counter() - start)
        pool = runner.factory.resources
        if pool is not None:
            record["workers"] = len(pool.workers)
            record["puts"] = pool.puts
        close_start = time.perf_counter()
    record["close_s"] = round(time.perf_counter() - close_start, 2)
    record["seconds"] = statistics.median(times)
    record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return record


def sweep(opts) -> dict:
    """Seconds per round of the trivial workload for growing shard counts on one pool."""
    sys.path.insert(0, str(HERE))
    import scaling_comps  # noqa: PLC0415

    from tffexec.factories import config as config_lib  # noqa: PLC0415
    from tffexec.factories import ray_pool  # noqa: PLC0415
    from tffexec.factories import ray_stack  # noqa: PLC0415

    n = opts.sweep_clients
    comp = scaling_comps.computation("trivial")
    arg = scaling_comps.argument("trivial", n)
    base = _config("ray", opts)
    points = []
    with ray_pool.RayPool(base) as pool:
        pool.start()
        import federated_language as fl  # noqa: PLC0415

        function_type = fl.Type.from_proto(comp.type)
        from tffexec import runner as runner_lib  # noqa: PLC0415

        prepared = runner_lib.prepare_argument(arg, function_type.parameter)
        for shards in SWEEP_SHARDS:
            per_shard = max(1, -(-n // shards))
            config = dataclasses.replace(base, clients_per_shard=per_shard)
            shards = -(-n // per_shard)
            stack = ray_stack.build(config, n, pool)
            try:
                def round_once():
                    fn = stack.value(comp, function_type)
                    value = stack.value(prepared, function_type.parameter)
                    return stack.materialize(stack.call(fn, value))

                round_once()  # the actors import the graph; shards are created
                times = []
                for _ in range(opts.runs):
                    start = time.perf_counter()
                    round_once()
                    times.append(time.perf_counter() - start)
            finally:
                stack.close()
            points.append({"shards": shards, "seconds": statistics.median(times)})
        workers = len(pool.workers)
    xs = [p["shards"] for p in points]
    ys = [p["seconds"] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
             / sum((x - mean_x) ** 2 for x in xs))
    return {"sweep_clients": n, "workers": workers, "points": points,
            "per_shard_ms": round(slope * 1e3, 3), "intercept_s": round(mean_y - slope * mean_x, 4)}


def _spawn(command_args: list[str], timeout: float) -> dict:
    command = [sys.executable, __file__, *command_args]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "TFFEXEC_ADDRESS")}
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:g} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(records: list[dict]) -> str:
    lines = ["| workload | clients | stack | s/round | start-up s | vs local | peak RSS MB (driver) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    local = {(r["workload"], r["clients"]): r.get("seconds") for r in records
             if r["stack"] == "local"}
    for r in records:
        if "error" in r:
            lines.append(f"| {r['workload']} | {r['clients']} | {r['stack']} | {r['error']} "
                         "| | | |")
            continue
        base = local.get((r["workload"], r["clients"]))
        ratio = f"{base / r['seconds']:.2f}x" if base else ""
        stack = r["stack"] + (f" ({r['workers']} actors)" if "workers" in r else "")
        lines.append(f"| {r['workload']} | {r['clients']} | {stack} | {r['seconds']:.3f} | "
                     f"{r['startup_s']:.1f} | {ratio} | {r['peak_rss_mb']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sweep-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stack", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--clients", default="1000,100000")
    parser.add_argument("--workloads", default="trivial,fedavg")
    parser.add_argument("--stacks", default="local,threaded,ray")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="Ray actors (default: cores)")
    parser.add_argument("--clients-per-shard", type=int, default=None)
    parser.add_argument("--no-batch", action="store_true",
                        help="one TensorFlow call per client (when the stack batches clients)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per configuration")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false")
    parser.add_argument("--sweep-clients", type=int, default=10_000)
    parser.add_argument("--json", metavar="FILE", default=None)
    opts = parser.parse_args(argv)
    if opts.worker:
        opts.clients = int(opts.clients)
        print(json.dumps(worker(opts)))
        return 0
    if opts.sweep_worker:
        print(json.dumps(sweep(opts)))
        return 0

    shared = []
    if opts.workers:
        shared += ["--workers", str(opts.workers)]
    if opts.clients_per_shard:
        shared += ["--clients-per-shard", str(opts.clients_per_shard)]
    if opts.no_batch:
        shared += ["--no-batch"]
    records = []
    for workload in opts.workloads.split(","):
        for clients in (int(c) for c in opts.clients.split(",")):
            for stack in opts.stacks.split(","):
                runs = ["--runs", str(opts.runs if clients <= 10_000 else 1), *shared]
                record = {"workload": workload, "clients": clients, "stack": stack}
                record.update(_spawn(["--worker", "--workload", workload, "--clients",
                                      str(clients), "--stack", stack, *runs], opts.timeout))
                records.append(record)
                print(json.dumps(record), file=sys.stderr, flush=True)
    print(_table(records))
    result = {"records": records}
    if opts.sweep:
        swept = _spawn(["--sweep-worker", "--sweep-clients", str(opts.sweep_clients),
                        "--runs", str(opts.runs), *shared],
                       opts.timeout)
        result["sweep"] = swept
        if "error" in swept:
            print(f"\nshard sweep: {swept['error']}")
        else:
            print(f"\nshard sweep: trivial workload, {swept['sweep_clients']} clients, "
                  f"{swept['workers']} actors")
            for point in swept["points"]:
                print(f"  {point['shards']:>4} shards: {point['seconds']:.3f} s/round")
            print(f"  fit: {swept['intercept_s']:.3f} s + {swept['per_shard_ms']:.2f} ms x shards")
    if opts.json:
        pathlib.Path(opts.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
