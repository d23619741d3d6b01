"""Two checkouts of tffexec side by side: start-up and steady state, interleaved, after/before.

    .venv/bin/python benchmarks/bench_versions.py --before ../old-checkout --after . --repeats 3
    .venv/bin/python benchmarks/bench_versions.py --before B --after A --only startup --json out.json

Why: a refactor (issue 14, "the house") must not make tffexec slower. This script answers "is
the new code at least as fast as the old one" on one machine in one run, with the two versions'
measurements interleaved (before, after, after, before, ...) so that a load change on a shared
machine hits both alike.

Each checkout is a folder holding tffexec's sources and a virtual environment with tffexec
installed editable from that folder (`--before-python`/`--after-python`, default
`DIR/.venv/bin/python`). Each version runs its OWN copy of `bench_corpus.py`/`bench_iterate.py`,
so the timed region is whatever that version's benchmark defines (they have not changed).

What is measured, per repeat and version (a repeat runs every measurement of both versions):

- **start-up**: whole-process wall time of `tffexec --help`, `tffexec inspect` of a TensorFlow
  computation, and a graph-free `tffexec run` (examples/mean_of_clients), each the median of
  `--startup-runs` processes;
- **corpus**: `bench_corpus.py` on the committed conformance cases (`--cases`), tffexec only:
  median seconds per call (argument in memory -> result in memory) per case and form;
- **iterate**: `bench_iterate.py` (`tffexec iterate` of examples/fedavg_round): median seconds per
  round per stack.

Reported per metric: each version's median over the repeats (and the spread, max - min), and
`speed = before median / after median` (>= 1: the new code is as fast or faster).
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

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFORMANCE = REPO / "examples" / "conformance"
DEFAULT_CASES = "scale_map_mean_100,scale_map_mean_1000,scale_fedavg_784x10_100clients_seeded"


def _env() -> dict[str, str]:
    """The caller's environment minus TFFEXEC_* settings (each version runs with its defaults)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TFFEXEC_")}


def _wall(command: list[str], cwd: pathlib.Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    return wall


def startup(python: str, runs: int) -> dict[str, float]:
    """Median process wall time of the three start-up commands (run from this checkout, so both
    versions read the same example files)."""
    commands = {
        "start-up: tffexec --help": ["--help"],
        "start-up: tffexec inspect (TF graph)": ["inspect", "examples/fedavg_round/comp.pb"],
        "start-up: graph-free tffexec run": ["run", "examples/mean_of_clients/comp.pb",
                                             "examples/mean_of_clients/arg.pb"],
    }
    return {name: statistics.median(_wall([python, "-m", "tffexec", *args], REPO)
                                    for _ in range(runs))
            for name, args in commands.items()}


def corpus(python: str, checkout: pathlib.Path, cases: str, runs: int) -> dict[str, float]:
    """bench_corpus.py (that checkout's copy) on this checkout's conformance cases."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "corpus.json"
        command = [python, str(checkout / "benchmarks" / "bench_corpus.py"), "--corpus",
                   str(CONFORMANCE), "--cases", cases, "--runs", str(runs), "--warmup", "2",
                   "--no-check", "--json", str(out)]
        proc = subprocess.run(command, cwd=checkout, env=_env(), capture_output=True,
                              timeout=1800)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"bench_corpus failed in {checkout}: "
                               f"{proc.stderr.decode(errors='replace')[-800:]}")
        doc = json.loads(out.read_text())
    return {f"corpus: {row['case']} [{row['form']}]": row["tffexec"]["median_s"]
            for row in doc["cases"] if "median_s" in (row.get("tffexec") or {})}


def iterate(python: str, checkout: pathlib.Path, rounds: int, k: int,
            stacks: str) -> dict[str, float]:
    """bench_iterate.py (that checkout's copy): median seconds per round per stack."""
    command = [python, str(checkout / "benchmarks" / "bench_iterate.py"), "--rounds",
               str(rounds), "--k", str(k), "--stacks", stacks, "--json"]
    proc = subprocess.run(command, cwd=checkout, env=_env(), capture_output=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_iterate failed in {checkout}: "
                           f"{proc.stderr.decode(errors='replace')[-800:]}")
    doc = json.loads(proc.stdout)
    return {f"iterate: {r['stack']} K={r['k']} per round": r["median_round_s"]
            for r in doc["results"] if "median_round_s" in r}


def measure(version: dict, args: argparse.Namespace) -> dict[str, float]:
    python, checkout = version["python"], version["dir"]
    found: dict[str, float] = {}
    if "startup" in args.only:
        found.update(startup(python, args.startup_runs))
    if "corpus" in args.only:
        found.update(corpus(python, checkout, args.cases, args.corpus_runs))
    if "iterate" in args.only:
        found.update(iterate(python, checkout, args.rounds, args.k, args.stacks))
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=pathlib.Path, required=True, help="old checkout")
    ap.add_argument("--after", type=pathlib.Path, default=REPO, help="new checkout (default: this)")
    ap.add_argument("--before-python", help="default: BEFORE/.venv/bin/python")
    ap.add_argument("--after-python", help="default: AFTER/.venv/bin/python")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="startup,corpus,iterate",
                    help="comma-separated subset of startup,corpus,iterate")
    ap.add_argument("--startup-runs", type=int, default=5)
    ap.add_argument("--cases", default=DEFAULT_CASES)
    ap.add_argument("--corpus-runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--stacks", default="local,batched")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    args.only = set(args.only.split(","))
    versions = {
        name: {"dir": path.resolve(),
               "python": given or str(path.resolve() / ".venv" / "bin" / "python")}
        for name, path, given in (("before", args.before, args.before_python),
                                  ("after", args.after, args.after_python))}
    samples: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for repeat in range(args.repeats):
        order = ("before", "after") if repeat % 2 == 0 else ("after", "before")
        for name in order:
            print(f"repeat {repeat + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
            for metric, value in measure(versions[name], args).items():
                samples[name].setdefault(metric, []).append(value)
    rows = []
    for metric in samples["before"]:
        before, after = samples["before"][metric], samples["after"].get(metric, [])
        if not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        rows.append({"metric": metric, "before_s": b, "before_spread_s": max(before) - min(before),
                     "after_s": a, "after_spread_s": max(after) - min(after), "speed": b / a,
                     "before_samples": before, "after_samples": after})
    print(f"{'metric':58} {'before s (spread)':>20} {'after s (spread)':>20} {'speed':>6}")
    for r in rows:
        print(f"{r['metric']:58} {r['before_s']:9.4f} ({r['before_spread_s']:7.4f}) "
              f"{r['after_s']:9.4f} ({r['after_spread_s']:7.4f}) {r['speed']:6.2f}")
    print("speed = before median / after median over the repeats (>= 1: after is as fast)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"versions": {k: {"dir": str(v["dir"]), "python": v["python"]}
                          for k, v in versions.items()},
             "repeats": args.repeats, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
