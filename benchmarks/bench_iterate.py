"""Seconds per round and peak RSS of `tffexec iterate` over many rounds, per stack and K.

    .venv/bin/python benchmarks/bench_iterate.py                       # 100 rounds, K = 10/100/1000
    .venv/bin/python benchmarks/bench_iterate.py --rounds 20 --k 10,100 --stacks local,threaded
    .venv/bin/python benchmarks/bench_iterate.py --json > iterate.json
    .venv/bin/python benchmarks/bench_iterate.py --k 1000 --stacks local --rounds 20 \
        --population 10000,100000,1000000        # per-round time against the population N

What runs: the installed `tffexec iterate` command, one process per (stack, K), exactly as a user
runs it: examples/fedavg_round/comp.pb as `next` (broadcast the linear model, 5 local gradient
steps on each client's 8 examples, weighted mean of models and losses), the initial state from
examples/fedavg_round/model.pb, and a population of --population clients (random data in one
`{<x=float32[8,3],y=float32[8]>}@CLIENTS` npz file, written once) from which K clients are
sampled per round (seeded, so every configuration trains on the same rounds). Several
populations (`--population 10000,100000,1000000`) show whether a round's time depends on N: the
data stays columns and a round gathers its K clients' rows, so it should not.

Reported per configuration, from the command's own `--json` summary: the first round (stack
build, graph import), the median and p90 of the other rounds, the whole process's peak RSS, and
RSS growth between round 10 and the last round (flat memory means ~0). `--stack ray` starts an
embedded Ray cluster inside the process (its start-up is in the process wall time, not in the
rounds). Timings on a shared machine are noisy: compare configurations of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
FEDAVG = REPO / "examples" / "fedavg_round"


def _script() -> str:
    candidate = pathlib.Path(sys.executable).parent / "tffexec"
    return str(candidate) if candidate.exists() else (shutil.which("tffexec") or "tffexec")


def write_population(path: pathlib.Path, clients: int, seed: int = 0) -> None:
    """`clients` clients of linear-regression data, stacked along a leading client axis (npz)."""
    rng = np.random.default_rng(seed)
    w = np.array([0.5, -1.0, 2.0], np.float32)
    x = rng.normal(size=(clients, 8, 3)).astype(np.float32)
    y = (x @ w + 0.3 + rng.normal(scale=0.1, size=(clients, 8))).astype(np.float32)
    np.savez(path, x=x, y=y)


def run_one(stack: str, k: int, rounds: int, data: pathlib.Path, timeout: float,
            population: int) -> dict:
    command = [_script(), "iterate", "--next", str(FEDAVG / "comp.pb"), "--state",
               str(FEDAVG / "model.pb"), "--data", str(data), "--rounds", str(rounds),
               "-k", str(k), "--seed", "1", "--json", "--stack", stack]
    env = {key: v for key, v in os.environ.items() if not key.startswith("TFFEXEC_")}
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, env=env, timeout=timeout, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"stack": stack, "k": k, "population": population,
                "error": proc.stderr.decode().strip().splitlines()[-1:], "exit": proc.returncode}
    summary = json.loads(proc.stdout)
    history = summary["history"]
    rest = sorted(r["seconds"] for r in history[1:]) or [history[0]["seconds"]]
    p90 = rest[min(len(rest) - 1, int(round(0.9 * (len(rest) - 1))))]
    at10 = history[min(9, len(history) - 1)]["rss_mb"]
    return {"stack": stack, "k": k, "population": population, "rounds": len(history),
            "first_round_s": history[0]["seconds"],
            "median_round_s": statistics.median(rest), "p90_round_s": p90,
            "peak_rss_mb": summary["peak_rss_mb"],
            "rss_growth_after_round_10_mb": round(history[-1]["rss_mb"] - at10, 1),
            "final_loss": summary["final_metrics"].get("loss"),
            "process_wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--k", default="10,100,1000", help="clients per round, comma-separated")
    ap.add_argument("--stacks", default="local,threaded,ray")
    ap.add_argument("--population", default="2000",
                    help="clients in the data file, comma-separated for several populations")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.k.split(",")]
    stacks = args.stacks.split(",")
    populations = [max(int(n), max(ks)) for n in args.population.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for population in populations:
            data = pathlib.Path(tmp) / f"clients_{population}.npz"
            write_population(data, population)
            for stack in stacks:
                for k in ks:
                    try:
                        result = run_one(stack, k, args.rounds, data, args.timeout, population)
                    except subprocess.TimeoutExpired:
                        result = {"stack": stack, "k": k, "population": population,
                                  "error": f"over {args.timeout:g} s"}
                    results.append(result)
                    if not args.json:
                        print(_row(result), flush=True)
            data.unlink()
    if args.json:
        print(json.dumps({"rounds": args.rounds, "populations": populations,
                          "results": results}, indent=1))
    return 0


def _row(r: dict) -> str:
    if "error" in r:
        return f"{r['stack']:>9} N={r['population']:>8,} K={r['k']:>5}  failed: {r['error']}"
    return (f"{r['stack']:>9} N={r['population']:>8,} K={r['k']:>5}  first "
            f"{r['first_round_s']:7.3f} s  median {r['median_round_s']:7.4f} s/round  p90 {r['p90_round_s']:7.4f}  peak RSS "
            f"{r['peak_rss_mb']:6.0f} MiB  growth {r['rss_growth_after_round_10_mb']:+5.1f} MiB  "
            f"loss {r['final_loss']:.4f}  process {r['process_wall_s']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
