"""tffexec vs TFF 0.87 on issue 16's set of tff.learning rounds (examples/learning), side by side.

    .venv/bin/python benchmarks/bench_learning.py --tff-python $PEER/bin/python
    .venv/bin/python benchmarks/bench_learning.py --tff-python $PEER/bin/python \\
        --cases fedavg_mlp_c10,fedavg_mlp_c100 --repeats 3 --json learning.json

($PEER: the virtual environment holding TFF 0.87; see benchmarks/README.md.)

Steady state, interleaved: ONE tffexec `Runner` in this process and ONE TFF process
(`benchmarks/tff_side.py --serve` under --tff-python, TFF imported once, each case deserialized
once) take turns case by case: for each of --repeats repeats, for each case, tffexec times --runs
calls, then TFF times --runs calls of the same round. The first repeat starts each side with
--warmup untimed calls (graph import, TFF's compile cache; tffexec's compiled round, traced on
the second call). Per side and case: the median of the
repeats' medians and their spread (min-max); the ratio is TFF / tffexec per repeat, reported as
its median and range (> 1: tffexec is faster). tffexec's first result is compared with
expected.pb under the case's meta.json tolerance (outside the timed region).

Also, unless --no-floors: the two floors of issue 16 for the MLP FedAvg cases with equal datasets
(benchmarks/learning_floors.py: a per-client tf.function over the batches as tensors, and one
vectorised call over all clients), checked against TFF's result, and tffexec's round timed
taking turns with the vectorised floor call by call in this process (--floor-runs each; the
tffexec / floor ratio issue 16 asks to be within 2x). With --first-call CASE: process
start to result, `tffexec run` (a fresh process) against TFF's one-shot process
(`tff_side.py CASE --runs 1 --warmup 0`), with TensorFlow's bare import time for reference.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_corpus  # noqa: E402  (the tffexec side: one Runner, untimed load, the check)
import learning_floors  # noqa: E402

REPO = HERE.parent
DEFAULT_CASES = REPO / "examples" / "learning"
TFF_SIDE = HERE / "tff_side.py"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases-dir", type=pathlib.Path, default=DEFAULT_CASES)
    ap.add_argument("--cases", action="append", default=None, metavar="NAME[,NAME...]",
                    help="case folders (default: every case in --cases-dir)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1, help="timed calls per side, case and repeat")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed calls in the first repeat (default 2: tffexec compiles a round "
                         "on its second call, so the timed calls are steady on both sides)")
    ap.add_argument("--tff-python", metavar="PATH", help="python of a TFF 0.87 environment")
    ap.add_argument("--tff-timeout", type=float, default=1800.0, metavar="S",
                    help="seconds allowed per TFF request (default 1800)")
    ap.add_argument("--no-floors", action="store_true")
    ap.add_argument("--floor-runs", type=int, default=10)
    ap.add_argument("--first-call", metavar="CASE", default=None,
                    help="also time process start -> result on this case, both sides")
    ap.add_argument("--json", metavar="FILE", default=None, help="also write a JSON document")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.runs < 1 or args.warmup < 0:
        ap.error("--repeats and --runs must be at least 1, --warmup at least 0")
    if args.tff_python and not os.path.exists(args.tff_python):
        ap.error(f"--tff-python {args.tff_python}: no such file")
    return args


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("TFFEXEC_")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class TffServer:
    """tff_side.py --serve under TFF's python: one request line in, one JSON line out.

    Its stderr goes to a temp file (TFF's worker_binary inherits it and can outlive a pipe's
    reader); its stdout is a private pipe the worker does not inherit. Its whole process group
    (with the worker) is killed on close.
    """

    def __init__(self, tff_python: str, timeout: float):
        self._timeout = timeout
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [tff_python, str(TFF_SIDE), "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._err, env=_env(), start_new_session=True)
        self._buffer = b""
        ready = self._read_line()
        if not ready.get("ready"):
            raise RuntimeError(f"tff_side.py --serve did not start: {ready}")
        self.version = ready.get("tff_version")

    def _read_line(self) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return {"error": f"no answer within {self._timeout:g} s"}
            chunk = os.read(fd, 65536)
            if not chunk:
                self._err.seek(0)
                tail = " | ".join(self._err.read().decode(errors="replace").splitlines()[-3:])
                return {"error": f"tff_side.py --serve ended: {tail[-400:]}"}
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def time_case(self, case_dir: pathlib.Path, runs: int, warmup: int) -> dict[str, Any]:
        request = {"case_dir": str(case_dir), "comp": "comp.pb", "runs": runs, "warmup": warmup}
        self._proc.stdin.write((json.dumps(request) + "\n").encode())
        self._proc.stdin.flush()
        return self._read_line()

    def close(self) -> None:
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self._proc.wait()
        self._err.close()


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_interleaved(case_dirs, args, log) -> list[dict[str, Any]]:
    """The ratio table's rows: per case, each side's per-repeat medians and the ratios."""
    tffexec_side = bench_corpus.TffexecSide()
    tff = TffServer(args.tff_python, args.tff_timeout) if args.tff_python else None
    rows = [{"case": d.name, "meta": json.loads((d / "meta.json").read_text()),
             "tffexec": [], "tff": []} for d in case_dirs]
    try:
        for repeat in range(args.repeats):
            warmup = args.warmup if repeat == 0 else 0
            for case_dir, row in zip(case_dirs, rows):
                log(f"repeat {repeat + 1}/{args.repeats} {case_dir.name}: tffexec ...")
                try:
                    out = tffexec_side.time_case(case_dir, "comp.pb", row["meta"], args.runs,
                                                 warmup, check=repeat == 0)
                    if repeat == 0:
                        row["check"] = out["check"]
                except Exception as e:  # noqa: BLE001 - reported in the row, the others go on
                    out = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                row["tffexec"].append(out)
                if tff is not None:
                    log(f"repeat {repeat + 1}/{args.repeats} {case_dir.name}: TFF ...")
                    row["tff"].append(tff.time_case(case_dir, args.runs, warmup))
    finally:
        tffexec_side.close()
        if tff is not None:
            tff.close()
    for row in rows:
        _summarize(row)
    return rows


def _summarize(row: dict[str, Any]) -> None:
    for side in ("tffexec", "tff"):
        medians = [r["median_s"] for r in row[side] if "median_s" in r]
        errors = [r["error"] for r in row[side] if "error" in r]
        row[f"{side}_s"] = _spread(medians) if medians and not errors else None
        row[f"{side}_error"] = errors[0] if errors else None
    ratios = [b["median_s"] / a["median_s"] for a, b in zip(row["tffexec"], row["tff"])
              if "median_s" in a and "median_s" in b]
    row["ratio"] = _spread(ratios) if ratios and not (row["tffexec_error"] or
                                                      row["tff_error"]) else None
    row["num_clients"] = row.pop("meta").get("num_clients")


def run_floors(case_dirs, rows, runs: int, log) -> list[dict[str, Any]]:
    """Both floors on every MLP FedAvg case with equal datasets in the set."""
    out = []
    by_name = {r["case"]: r for r in rows}
    for case_dir in case_dirs:
        if not case_dir.name.startswith("fedavg_mlp_c"):
            continue
        log(f"floors {case_dir.name} ...")
        data = learning_floors.load_round(case_dir)
        entry = {"case": case_dir.name}
        for name, build in (("per_client", learning_floors.per_client_floor),
                            ("vectorised", learning_floors.vectorised_floor)):
            timing = learning_floors.time_floor(build(data), runs)
            timing["max_abs_diff_vs_tff"] = learning_floors.check(timing.pop("result"),
                                                                  data["expected"])
            row = by_name.get(case_dir.name) or {}
            for side in ("tffexec", "tff"):
                side_s = row.get(f"{side}_s")
                timing[f"{side}_over_floor"] = (side_s["median"] / timing["median_s"]
                                                if side_s else None)
            entry[name] = timing
        # The same round by tffexec, taking turns with the vectorised floor call by call in this
        # process (no TFF process between the calls): the "within 2x of the floor" figure.
        turns = learning_floors.time_interleaved(
            {"tffexec": learning_floors.tffexec_round(case_dir),
             "floor": learning_floors.vectorised_floor(data)}, runs)
        entry["interleaved"] = {**turns, "tffexec_over_floor": (
            turns["tffexec"]["median_s"] / turns["floor"]["median_s"])}
        out.append(entry)
    return out


def first_call(case_dir: pathlib.Path, tff_python: Optional[str]) -> dict[str, Any]:
    """Process start -> result: a fresh `tffexec run` and TFF's one-shot process, same round."""
    script = pathlib.Path(sys.executable).parent / "tffexec"
    tffexec_cmd = [str(script) if script.exists() else shutil.which("tffexec") or "tffexec"]
    out: dict[str, Any] = {"case": case_dir.name}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run(tffexec_cmd + ["run", str(case_dir / "comp.pb"),
                                             str(case_dir / "arg.pb"), "-o",
                                             str(pathlib.Path(tmp) / "result.pb"), "--quiet"],
                              env=_env(), capture_output=True, stdin=subprocess.DEVNULL)
        out["tffexec_process_s"] = time.perf_counter() - t0
        out["tffexec_exit"] = proc.returncode
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], env=_env(),
                   capture_output=True, stdin=subprocess.DEVNULL)
    out["tensorflow_import_s"] = time.perf_counter() - t0
    if tff_python:
        result = bench_corpus.time_tff(tff_python, case_dir, "comp.pb", 1, 0, 1800.0)
        out["tff_process_s"] = result.get("process_wall_s")
        out["tff_first_call_in_process_s"] = result.get("first_call_s")
        out["tff_error"] = result.get("error")
        if out["tff_process_s"]:
            out["ratio_tffexec_over_tff"] = out["tffexec_process_s"] / out["tff_process_s"]
    return out


def _fmt(spread: Optional[dict[str, float]], unit: str = "s") -> str:
    if not spread:
        return "-"
    if unit == "x":
        return f"{spread['median']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f})"
    return f"{spread['median']:.3f} ({spread['min']:.3f}-{spread['max']:.3f})"


def markdown(doc: dict[str, Any]) -> str:
    """The ratio table, the floors and the first call, as Markdown (the report's form)."""
    lines = [f"Repeats: {doc['repeats']} x {doc['runs']} timed call(s) per side, interleaved; "
             "seconds per round as median (min-max of the repeats' medians); "
             "ratio = TFF / tffexec (> 1: tffexec faster).", "",
             "| case | clients | tffexec s | TFF s | ratio TFF/tffexec | check |",
             "|---|---:|---|---|---|---|"]
    for r in doc["cases"]:
        tffexec_s = _fmt(r["tffexec_s"]) if not r["tffexec_error"] else "error"
        tff_s = _fmt(r["tff_s"]) if not r["tff_error"] else "error"
        lines.append(f"| {r['case']} | {r['num_clients']} | {tffexec_s} | {tff_s} | "
                     f"{_fmt(r['ratio'], 'x')} | {r.get('check', '-')} |")
    errors = [(r["case"], side, r[f"{side}_error"]) for r in doc["cases"]
              for side in ("tffexec", "tff") if r[f"{side}_error"]]
    lines += [f"- {side} error on {case}: {msg}" for case, side, msg in errors]
    if doc.get("floors"):
        lines += ["", "| floor (MLP FedAvg) | case | s per round (min-max) | tffexec / floor | "
                  "TFF / floor | max abs diff vs TFF |", "|---|---|---|---|---|---|"]
        for f in doc["floors"]:
            for name in ("per_client", "vectorised"):
                t = f[name]
                ratio = {side: (f"{t[f'{side}_over_floor']:.1f}x" if t[f"{side}_over_floor"]
                                else "-") for side in ("tffexec", "tff")}
                lines.append(f"| {name} | {f['case']} | {t['median_s']:.4f} ({t['min_s']:.4f}-"
                             f"{t['max_s']:.4f}) | {ratio['tffexec']} | {ratio['tff']} | "
                             f"{t['max_abs_diff_vs_tff']:.1e} |")
        lines += ["", "| case | tffexec s, taking turns with the vectorised floor | floor s | "
                  "tffexec / floor |", "|---|---|---|---|"]
        for f in doc["floors"]:
            turns = f.get("interleaved")
            if turns:
                lines.append(
                    f"| {f['case']} | {turns['tffexec']['median_s']:.4f} "
                    f"({turns['tffexec']['min_s']:.4f}-{turns['tffexec']['max_s']:.4f}) | "
                    f"{turns['floor']['median_s']:.4f} ({turns['floor']['min_s']:.4f}-"
                    f"{turns['floor']['max_s']:.4f}) | {turns['tffexec_over_floor']:.2f}x |")
    fc = doc.get("first_call")
    if fc:
        tff_part = (f"TFF's one-shot process {fc['tff_process_s']:.1f} s (its first call "
                    f"in-process {fc['tff_first_call_in_process_s']:.1f} s); tffexec / TFF = "
                    f"{fc['ratio_tffexec_over_tff']:.2f}x" if fc.get("tff_process_s")
                    else f"TFF: {fc.get('tff_error') or 'not measured'}")
        lines += ["", f"First call on {fc['case']} (process start to result): `tffexec run` "
                      f"{fc['tffexec_process_s']:.1f} s (exit {fc['tffexec_exit']}; a bare "
                      f"`import tensorflow` takes {fc['tensorflow_import_s']:.1f} s); {tff_part}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    corpus = args.cases_dir.resolve()
    if args.cases is None:
        case_dirs = sorted(d for d in corpus.iterdir() if (d / "comp.pb").is_file()) \
            if corpus.is_dir() else []
        if not case_dirs:
            raise SystemExit(f"Error: no case folders in {corpus}")
    else:
        case_dirs = bench_corpus.select_cases(corpus, args.cases)
    doc: dict[str, Any] = {"cases_dir": str(corpus), "repeats": args.repeats, "runs": args.runs,
                           "warmup": args.warmup, "tff_python": args.tff_python}
    doc["cases"] = run_interleaved(case_dirs, args, log)
    doc["floors"] = [] if args.no_floors else run_floors(case_dirs, doc["cases"],
                                                         args.floor_runs, log)
    if args.first_call:
        doc["first_call"] = first_call(corpus / args.first_call, args.tff_python)
    text = markdown(doc)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        log(f"wrote {args.json}")
    failed = any(r["tffexec_error"] or r["tff_error"] for r in doc["cases"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
