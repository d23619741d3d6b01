"""One `tffexec check` over N cases against N separate `tffexec run ... --expect` processes.

    python benchmarks/bench_check.py                   # 50 cases, 3 repeats
    python benchmarks/bench_check.py --cases 20 --repeats 3 --jobs 2
    TFFEXEC_CORPUS=path/to/corpus python benchmarks/bench_check.py

Why: a CI job that checks many computations with one `run --expect` process each pays the import
of TensorFlow (seconds of CPU) per computation; `check` pays it once per worker process. Both
arms check the same cases (each computation form of a case directory is one case, as `check`
counts them), one after the other in the same run, interleaved (check, runs, runs, check, ...)
so that machine load affects both alike. Reported: wall seconds per arm and repeat, the median
and spread (min-max) over repeats, the ratio of the medians, and whether both arms agreed on
every verdict.

Cases: the corpus at $TFFEXEC_CORPUS when set, else examples/cases and examples/conformance
(when present) of this repository; the first N case forms in path order.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def case_roots() -> list[str]:
    corpus = os.environ.get("TFFEXEC_CORPUS")
    if corpus:
        return [corpus]
    roots = [REPO / "examples" / "cases", REPO / "examples" / "conformance"]
    return [str(r) for r in roots if r.is_dir()]


def pick_cases(count: int, form: str):
    from tffexec import checking  # noqa: PLC0415 - light: no TensorFlow

    cases = [c for c in checking.discover(case_roots(), form=form) if c.problem is None]
    if len(cases) < count:
        print(f"note: only {len(cases)} cases found; using all of them", file=sys.stderr)
    return cases[:count]


def tffexec_command() -> list[str]:
    return [sys.executable, "-m", "tffexec"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TFFEXEC_")}


def run_check(cases, jobs: int) -> tuple[float, int]:
    """Wall seconds and exit status of one `tffexec check` over every case's computation file."""
    with tempfile.TemporaryDirectory() as tmp:
        report = pathlib.Path(tmp) / "report.xml"
        start = time.perf_counter()
        done = subprocess.run(
            tffexec_command() + ["check", "--quiet", "--jobs", str(jobs), "--junit", str(report)]
            + [str(c.comp) for c in cases],
            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return time.perf_counter() - start, done.returncode


def run_separately(cases) -> tuple[float, list[int]]:
    """Wall seconds of `tffexec run COMP ARG --expect EXPECTED` per case, one after another."""
    codes = []
    start = time.perf_counter()
    for case in cases:
        command = tffexec_command() + ["run", str(case.comp)]
        if case.arg is not None:
            command.append(str(case.arg))
        command += ["--expect", str(case.expected), "--quiet"]
        if case.clients is not None:
            command += ["--clients", str(case.clients)]
        for name in ("rtol", "atol"):
            if getattr(case, name) is not None:
                command += [f"--{name}", str(getattr(case, name))]
        command += list(case.flags)
        done = subprocess.run(command, env=clean_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        codes.append(done.returncode)
    return time.perf_counter() - start, codes


def _spread(times: list[float]) -> str:
    return f"median {statistics.median(times):7.1f} s  (min {min(times):.1f}, max {max(times):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=50, metavar="N",
                    help="how many cases both arms check (default 50)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each arm (default 3)")
    ap.add_argument("--jobs", type=int, default=1, help="--jobs of `tffexec check` (default 1)")
    ap.add_argument("--form", choices=("both", "comp", "native"), default="both",
                    help="which computation files of the case directories count (default both)")
    args = ap.parse_args()

    cases = pick_cases(args.cases, args.form)
    if not cases:
        sys.exit("no cases found: set TFFEXEC_CORPUS or run from a repository with "
                 "examples/cases")
    print(f"{len(cases)} cases from {', '.join(os.path.relpath(r) for r in case_roots())}; "
          f"{args.repeats} repeats, interleaved; check --jobs {args.jobs}; "
          f"{os.cpu_count()} CPUs", flush=True)
    check_times: list[float] = []
    run_times: list[float] = []
    agreed = True
    for repeat in range(args.repeats):
        arms = ["check", "run"] if repeat % 2 == 0 else ["run", "check"]
        for arm in arms:
            if arm == "check":
                seconds, code = run_check(cases, args.jobs)
                check_times.append(seconds)
                print(f"repeat {repeat + 1}: one `tffexec check`      {seconds:7.1f} s  "
                      f"(exit {code})", flush=True)
            else:
                seconds, codes = run_separately(cases)
                run_times.append(seconds)
                failing = sum(1 for c in codes if c != 0)
                print(f"repeat {repeat + 1}: {len(cases)} x `tffexec run --expect` {seconds:7.1f} s  "
                      f"({len(cases) - failing}/{len(cases)} exit 0)", flush=True)
        agreed = agreed and (code == 0) == (failing == 0)
    print()
    print(f"tffexec check        {_spread(check_times)}")
    print(f"separate runs        {_spread(run_times)}")
    ratio = statistics.median(run_times) / statistics.median(check_times)
    print(f"ratio (median runs / median check): {ratio:.1f}x  (target >= 20x); "
          f"verdicts {'agree' if agreed else 'DIFFER'}")


if __name__ == "__main__":
    main()
