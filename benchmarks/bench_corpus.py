"""Time tffexec (and, optionally, real TFF 0.87) on the corpus' scale cases.

    .venv/bin/python benchmarks/bench_corpus.py [--tff-python $PEER/bin/python] [--runs 10]
        [--warmup 2] [--form both|comp.pb|native_comp.pb] [--cases a,b] [--corpus DIR]
        [--json [FILE]]

($PEER: a virtual environment holding TFF 0.87; see benchmarks/README.md.)

The timed region is "argument in memory -> result in memory", the region TFF's meta.json timing
covers. Before timing, each case's computation is parsed (`load_computation`) and its argument is
decoded into tffexec's Python representation (`value_from_proto`). Timed is one
`runner.run(comp_proto, arg_python, clients=...)` on one `Runner` kept across cases and runs, so
stacks and imported graphs are reused as they would be by a caller running many rounds. That call
re-checks the argument against the parameter type (normalize) and infers the client count each
time; both are part of tffexec's cost and stay in the region.

With `--tff-python PATH` (a TFF 0.87 environment), TFF is timed in the same run of this script,
on the same machine, one case after the other (never concurrently), by running
`benchmarks/tff_side.py` under that interpreter. Without it, TFF's figure is meta.json's recorded
timing, marked "recorded" (a different machine, run and `n`: indicative only).

The ratio is TFF median / tffexec median: above 1 means tffexec is faster.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = (REPO_ROOT / ".." / "shared" / "corpus").resolve()
TFF_SIDE = pathlib.Path(__file__).resolve().parent / "tff_side.py"
FORMS = ("comp.pb", "native_comp.pb")
RTOL, ATOL = 1e-5, 1e-6  # as tests/test_run_conformance.py


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Time tffexec (and TFF 0.87, given --tff-python) on the corpus' scale cases; "
                    "ratio = TFF median / tffexec median (>1: tffexec is faster).")
    ap.add_argument("--corpus", type=pathlib.Path, default=DEFAULT_CORPUS,
                    help=f"corpus folder (default: {DEFAULT_CORPUS})")
    ap.add_argument("--cases", action="append", default=None, metavar="NAME[,NAME...]",
                    help="case folders to time (repeatable or comma-separated; default: every "
                         "folder whose name starts with scale_)")
    ap.add_argument("--form", choices=("both",) + FORMS, default="both",
                    help="computation file: comp.pb (as serialized by the user), native_comp.pb "
                         "(as compiled by TFF for its runtime), or both (default)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per case (default 10)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed runs before timing (default 2)")
    ap.add_argument("--tff-python", metavar="PATH",
                    help="python of a TFF 0.87 environment; time TFF side by side")
    ap.add_argument("--tff-timeout", type=float, default=900.0, metavar="S",
                    help="seconds allowed per TFF subprocess (default 900)")
    ap.add_argument("--no-check", action="store_true",
                    help="skip comparing tffexec's result with expected.pb (done untimed)")
    ap.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                    help="write a JSON document: to FILE, or to stdout instead of the table when "
                         "FILE is omitted or '-'")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.warmup < 0:
        ap.error("--warmup must be 0 or more")
    return args


def select_cases(corpus: pathlib.Path, names: Optional[list[str]]) -> list[pathlib.Path]:
    if not corpus.is_dir():
        raise SystemExit(f"Error: corpus folder not found: {corpus}")
    if names:
        wanted = [n.strip() for item in names for n in item.split(",") if n.strip()]
        dirs = [corpus / n for n in wanted]
        missing = [str(d) for d in dirs if not (d / "meta.json").exists()
                   and not (d / "comp.pb").exists()]
        if missing:
            raise SystemExit(f"Error: not a case folder: {', '.join(missing)}")
        return dirs
    dirs = sorted(d for d in corpus.iterdir() if d.is_dir() and d.name.startswith("scale_"))
    if not dirs:
        raise SystemExit(f"Error: no scale_* case folders in {corpus}")
    return dirs


def summarize(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


# ------------------------------------------------------------------------------------ tffexec

class TffexecSide:
    """One Runner for the whole benchmark, so stacks and imported graphs are reused."""

    def __init__(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import federated_language  # noqa: PLC0415
        from tffexec import runner as runner_lib  # noqa: PLC0415
        from tffexec.formats import loading, values  # noqa: PLC0415
        from tffexec.formats.protos import executor_pb2  # noqa: PLC0415

        self._fl, self._loading, self._values, self._pb2 = (
            federated_language, loading, values, executor_pb2)
        self.runner = runner_lib.Runner()
        # (case, form) -> (computation, argument): each case is loaded once, as the TFF side
        # deserializes each case once; repeats then time the same call on both sides.
        self._loaded: dict[tuple[str, str], tuple[Any, Any]] = {}

    def close(self):
        self.runner.close()

    def time_case(self, case_dir: pathlib.Path, form: str, meta: dict, runs: int, warmup: int,
                  check: bool) -> dict[str, Any]:
        # --- untimed: the computation and the argument, in memory (once per case) ---
        key = (str(case_dir), form)
        if key not in self._loaded:
            comp = self._loading.load_computation(case_dir / form)
            parameter_type = getattr(self._fl.Type.from_proto(comp.type), "parameter", None)
            arg = None
            if parameter_type is not None:
                arg_pb = self._pb2.Value.FromString((case_dir / "arg.pb").read_bytes())
                arg, _ = self._values.value_from_proto(arg_pb, parameter_type, path="arg")
            self._loaded[key] = (comp, arg)
        comp, arg = self._loaded[key]
        function_type = self._fl.Type.from_proto(comp.type)
        clients = meta.get("num_clients")
        run = self.runner.run

        # --- timed: runner.run(comp_proto, arg_python, clients=...) ---
        first_call_s = None
        first_result = None
        for i in range(warmup):
            t0 = time.perf_counter()
            result = run(comp, arg, clients=clients)
            dt = time.perf_counter() - t0
            if i == 0:
                first_call_s, first_result = dt, result
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = run(comp, arg, clients=clients)
            times.append(time.perf_counter() - t0)
        if first_call_s is None:
            first_call_s, first_result = times[0], result

        out = {**summarize(times), "runs": runs, "warmup": warmup, "first_call_s": first_call_s}
        out["check"] = self._check(case_dir, function_type, meta, first_result) if check else None
        return out

    def _check(self, case_dir, function_type, meta, result) -> str:
        """'ok' / 'DIFF: ...' / 'type only' against expected.pb; outside the timed region."""
        expected_path = case_dir / "expected.pb"
        if not expected_path.exists():
            return "no expected.pb"
        result_type = getattr(function_type, "result", function_type)
        if meta.get("random") or "stateful random" in str(meta.get("roundtrip_error")):
            self._values.normalize(result, result_type, path="result")
            return "ok (type only)"
        expected, _ = self._values.value_from_proto(
            self._pb2.Value.FromString(expected_path.read_bytes()), result_type)
        tolerance = meta.get("compare") or {}  # a case may record its own (examples/learning)
        diffs = self._values.values_equal(result, expected, result_type,
                                          rtol=tolerance.get("rtol", RTOL),
                                          atol=tolerance.get("atol", ATOL), path="result")
        return "ok" if not diffs else f"DIFF at {', '.join(diffs[:3])}"


# ------------------------------------------------------------------------------------ TFF

def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the tff_side process group we started (with its worker)
    except OSError:
        pass


def time_tff(tff_python: str, case_dir: pathlib.Path, form: str, runs: int, warmup: int,
             timeout: float) -> dict[str, Any]:
    """Runs tff_side.py under TFF's python. stdout and stderr go to temp files, not pipes: TFF's
    worker_binary can inherit and hold them open past the end of the process."""
    cmd = [tff_python, str(TFF_SIDE), str(case_dir), "--runs", str(runs), "--warmup",
           str(warmup), "--comp", form]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return {"error": f"timed out after {timeout:g} s"}
        finally:
            _kill_group(proc.pid)  # anything of that session still alive (a stray worker)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    lines = [ln for ln in stdout.splitlines() if ln.strip().startswith("{")]
    if rc != 0 or not lines:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        return {"error": f"tff_side.py exited {rc}: {tail[-400:]}"}
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    return result


def recorded_tff(meta: dict) -> Optional[dict[str, Any]]:
    timing = meta.get("timing") or {}
    if "median_s" not in timing:
        return None
    return {k: timing.get(k) for k in ("median_s", "min_s", "max_s", "n", "first_call_s")}


# ------------------------------------------------------------------------------------ output

def _fmt_s(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.5f}"


def render_table(doc: dict, console) -> None:
    from rich.table import Table  # noqa: PLC0415

    measured = doc["tff_python"] is not None
    table = Table(title=f"tffexec vs TFF 0.87 — seconds per call, argument in memory -> result "
                        f"in memory ({doc['runs']} runs after {doc['warmup']} warm-up)",
                  title_justify="left")
    table.add_column("case", no_wrap=True)
    table.add_column("form")
    table.add_column("clients", justify="right")
    table.add_column("tffexec median", justify="right")
    table.add_column("tffexec min-max", justify="right")
    table.add_column("TFF median", justify="right")
    table.add_column("TFF min-max", justify="right")
    table.add_column("TFF", justify="left")
    table.add_column("ratio TFF/tffexec", justify="right")
    table.add_column("check")
    for row in doc["cases"]:
        te, tf = row.get("tffexec") or {}, row.get("tff") or {}
        te_med = _fmt_s(te.get("median_s")) if "error" not in te else "[red]error[/]"
        te_rng = (f"{_fmt_s(te.get('min_s'))}-{_fmt_s(te.get('max_s'))}"
                  if "median_s" in te else "")
        if "error" in tf:
            tf_med, tf_rng = "[red]error[/]", ""
        else:
            tf_med = _fmt_s(tf.get("median_s"))
            tf_rng = (f"{_fmt_s(tf.get('min_s'))}-{_fmt_s(tf.get('max_s'))}"
                      if tf.get("median_s") is not None else "")
        ratio = row.get("ratio")
        if ratio is None:
            ratio_s = "-"
        else:
            colour = "green" if ratio > 1 else "red"
            ratio_s = f"[{colour}]{ratio:.2f}x[/]"
            if row.get("tff_source") == "recorded":
                ratio_s += " (recorded)"
        check = te.get("check") or ("-" if "error" not in te else "")
        if check.startswith("DIFF"):
            check = f"[red]{check}[/]"
        table.add_row(row["case"], row["form"], str(row.get("num_clients", "")), te_med, te_rng,
                      tf_med, tf_rng, row.get("tff_source") or "-", ratio_s, check)
    console.print(table)
    errors = [(r["case"], r["form"], side, r[side]["error"]) for r in doc["cases"]
              for side in ("tffexec", "tff") if isinstance(r.get(side), dict)
              and "error" in r[side]]
    for case, form, side, msg in errors:
        console.print(f"[red]{side} error[/] {case} {form}: {msg}", markup=True,
                      highlight=False)
    if measured:
        console.print("TFF = measured in this run on this machine "
                      f"({doc['tff_python']}). ratio > 1: tffexec is faster.")
    else:
        console.print("TFF = meta.json's recorded timing (another machine and run; pass "
                      "--tff-python for a side-by-side measurement). ratio > 1: tffexec is faster.")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from rich.console import Console  # noqa: PLC0415

    out_console = Console(width=None if sys.stdout.isatty() else 200)
    log = Console(stderr=True, highlight=False)
    forms = FORMS if args.form == "both" else (args.form,)
    case_dirs = select_cases(args.corpus.resolve(), args.cases)
    if args.tff_python and not os.path.exists(args.tff_python):
        raise SystemExit(f"Error: --tff-python {args.tff_python}: no such file")

    tffexec_side = TffexecSide()
    import tensorflow as tf  # noqa: PLC0415  (already imported by tffexec; for the versions)
    import tffexec  # noqa: PLC0415

    doc: dict[str, Any] = {
        "corpus": str(args.corpus.resolve()),
        "runs": args.runs,
        "warmup": args.warmup,
        "tff_python": args.tff_python,
        "timed_region": "argument in memory -> result in memory; tffexec: "
                        "Runner.run(comp_proto, arg_python, clients=...) on one Runner",
        "ratio": "TFF median_s / tffexec median_s (>1: tffexec is faster)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "versions": {"tffexec": tffexec.__version__, "tensorflow": tf.__version__},
        "cases": [],
    }
    try:
        for case_dir in case_dirs:
            meta_path = case_dir / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            for form in forms:
                if not (case_dir / form).exists():
                    log.print(f"skip {case_dir.name} {form}: no such file")
                    continue
                row: dict[str, Any] = {"case": case_dir.name, "form": form,
                                       "num_clients": meta.get("num_clients")}
                log.print(f"tffexec {case_dir.name} {form} ...")
                try:
                    row["tffexec"] = tffexec_side.time_case(case_dir, form, meta, args.runs,
                                                            args.warmup, not args.no_check)
                except Exception as e:  # noqa: BLE001 - report and go on with the others
                    row["tffexec"] = {"error": f"{type(e).__name__}: {e}"}
                if args.tff_python:
                    log.print(f"TFF     {case_dir.name} {form} ...")
                    row["tff"] = time_tff(args.tff_python, case_dir, form, args.runs,
                                          args.warmup, args.tff_timeout)
                    row["tff_source"] = "measured"
                else:
                    row["tff"] = recorded_tff(meta)
                    row["tff_source"] = "recorded" if row["tff"] else None
                te_med = (row["tffexec"] or {}).get("median_s")
                tf_med = (row["tff"] or {}).get("median_s")
                row["ratio"] = tf_med / te_med if te_med and tf_med else None
                doc["cases"].append(row)
    finally:
        tffexec_side.close()

    failed = any(isinstance(r.get(side), dict) and "error" in r[side]
                 for r in doc["cases"] for side in ("tffexec", "tff"))
    if args.json is not None:
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
            return 1 if failed else 0
        pathlib.Path(args.json).write_text(text + "\n")
        log.print(f"wrote {args.json}")
    render_table(doc, out_console)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
