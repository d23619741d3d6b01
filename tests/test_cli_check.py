"""`tffexec check`: many cases in long-lived worker processes, through Click's CliRunner.

The cases are real: copies of examples/mean_of_clients (one with a wrong expected value), a
TensorFlow computation that runs the `Abort` op (it kills its worker process, allowed by its
case.json flags), examples/slow_loop with a huge step count (it passes --case-timeout inside one
kernel). Each `check` run starts at least one worker process that imports TensorFlow, so the
module runs few of them: one run covers every verdict, the JUnit file and a manifest; a second
runs the same cases with --jobs 2 and --json and must give the same verdicts.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from xml.etree import ElementTree

import numpy as np
import pytest
from click.testing import CliRunner

from tffexec import checking
from tffexec.cli.main import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
MEAN = REPO / "examples" / "mean_of_clients"
SLOW = REPO / "examples" / "slow_loop"
CASES = REPO / "examples" / "cases"
CASE_TIMEOUT_S = 3



def _invoke(runner, *args):
    return runner.invoke(cli, [str(a) for a in args])


def _copy_case(source: pathlib.Path, target: pathlib.Path, **files: str) -> pathlib.Path:
    shutil.copytree(source, target)
    for name, text in files.items():
        stem = name.removesuffix("_json")
        for other in target.glob(f"{stem}.*"):  # arg.pb would win over the new arg.json
            other.unlink()
        (target / f"{stem}.json").write_text(text)
    return target


def _abort_computation() -> bytes:
    """`int32 -> int32` that runs TensorFlow's Abort op first (the process dies by SIGABRT)."""
    from tffexec import tf_runtime
    from tffexec import tensorflow as tc

    tf = tf_runtime.tensorflow()

    def body(x):
        abort = tf.raw_ops.Abort(error_msg="abort requested by test_cli_check")
        with tf.control_dependencies([abort]):
            return tf.identity(x)

    return tc.tensorflow_computation(body, np.int32).SerializeToString()


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> pathlib.Path:
    """A folder of cases, one per verdict, plus a manifest next to it."""
    root = tmp_path_factory.mktemp("check")
    cases = root / "cases"
    cases.mkdir()
    _copy_case(MEAN, cases / "a_pass")
    _copy_case(MEAN, cases / "b_mismatch", expected_json="22.5")
    _copy_case(MEAN, cases / "c_bad_arg", arg_json='"not a list of readings"')
    for name, case_json in (("d_crash", {"flags": ["--allow-op", "Abort"]}),
                            ("e_refused", None)):
        folder = cases / name
        folder.mkdir()
        (folder / "comp.pb").write_bytes(_abort_computation())
        (folder / "arg.json").write_text("3")
        (folder / "expected.json").write_text("3")
        if case_json is not None:
            (folder / "case.json").write_text(json.dumps(case_json))
    # The manifest: the same computation, a near miss that passes only with its own --rtol;
    # last, a loop that runs past --case-timeout (last: no new worker is needed after it).
    shutil.copytree(MEAN, root / "listed")
    (root / "listed" / "near.json").write_text("21.01")
    slow = root / "slow"
    slow.mkdir()
    for name in ("comp.pb", "expected.json"):
        shutil.copy(SLOW / name, slow / name)
    (slow / "steps.json").write_text(str(10**12))
    (root / "manifest.txt").write_text(
        "# COMP ARG EXPECTED [CLIENTS] [FLAGS...]\n"
        "listed/comp.pb listed/arg.json listed/near.json 10 --rtol 0.01\n"
        "\n"
        "listed/comp.pb listed/arg.pb listed/near.json  # the default rtol: a mismatch\n"
        "slow/comp.pb slow/steps.json slow/expected.json\n")
    return root


EXPECTED_VERDICTS = {
    "a_pass": ("pass", 0),
    "b_mismatch": ("fail", 1),
    "c_bad_arg": ("error", 4),
    "d_crash": ("error", 6),
    "e_refused": ("error", 5),
}


def _verdicts_from_lines(stdout: str) -> list[tuple[str, str, int]]:
    """(name, status, exit code) from `PASS name 12 ms`, `FAIL name: ..`, `ERROR name: .. (exit
    N)` lines."""
    verdicts = []
    for line in stdout.splitlines()[:-1]:
        word, rest = line.split(" ", 1)
        if word == "PASS":
            verdicts.append((rest.rsplit(" ", 2)[0], "pass", 0))
        elif word == "FAIL":
            verdicts.append((rest.split(": ")[0], "fail", 1))
        else:
            code = int(rest.rsplit("(exit ", 1)[1].rstrip(")"))
            verdicts.append((rest.split(": ")[0], "error", code))
    return verdicts


@pytest.fixture(scope="module")
def first_run(suite, tmp_path_factory):
    """One sequential run over every kind of case and the manifest, with a JUnit report."""
    report = tmp_path_factory.mktemp("report") / "report.xml"
    result = CliRunner().invoke(cli, [
        "check", str(suite / "cases"), "--manifest", str(suite / "manifest.txt"),
        "--case-timeout", str(CASE_TIMEOUT_S), "--junit", str(report)],
        env={k: None for k in os.environ if k.startswith("TFFEXEC_")})
    return result, report


def test_each_case_gets_one_line_in_order_and_the_exit_is_the_highest_class(first_run):
    result, _ = first_run
    lines = result.stdout.splitlines()
    assert result.exit_code == 124, result.output
    by_case = {pathlib.PurePath(line.split()[1].rstrip(":")).name: line for line in lines[:5]}
    assert list(by_case) == list(EXPECTED_VERDICTS)
    for name, (status, code) in EXPECTED_VERDICTS.items():
        line = by_case[name]
        assert line.startswith({"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[status]), line
        if status == "error":
            assert line.endswith(f"(exit {code})"), line
    assert by_case["a_pass"].endswith(" ms") or by_case["a_pass"].endswith(" s")
    assert "result: got 21.0 vs expected 22.5" in by_case["b_mismatch"]
    assert "crashed: killed by SIGABRT" in by_case["d_crash"]
    assert "abort requested by test_cli_check" in by_case["d_crash"]
    assert "'Abort'" in by_case["e_refused"] or "Abort" in by_case["e_refused"]
    assert lines[7].startswith("ERROR slow/comp.pb: ") and lines[7].endswith("(exit 124)")
    assert f"--case-timeout {CASE_TIMEOUT_S} s" in lines[7]
    assert lines[-1].startswith("8 cases: 2 passed, 2 failed, 4 errors in ")


def test_manifest_lines_are_cases_with_their_own_clients_and_flags(first_run):
    result, _ = first_run
    listed = [line for line in result.stdout.splitlines() if "listed/comp.pb" in line]
    assert len(listed) == 2
    assert listed[0].startswith("PASS listed/comp.pb (") and "manifest.txt:2)" in listed[0]
    assert listed[1].startswith("FAIL listed/comp.pb (") and "manifest.txt:4)" in listed[1]
    assert "got 21.0 vs expected 21.01" in listed[1]


def test_junit_report_parses_and_classifies_every_case(first_run):
    _, report = first_run
    root = ElementTree.parse(report).getroot()
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("8", "2", "4")
    kinds = {}
    for case in suite.findall("testcase"):
        child = next(iter(case), None)
        kinds[case.get("name")] = (child.tag, child.get("type")) if child is not None else None
    named = {pathlib.PurePath(n).name: k for n, k in kinds.items() if n.startswith("/")}
    assert named["a_pass"] is None
    assert named["b_mismatch"] == ("failure", "mismatch")
    assert named["d_crash"] == ("error", "exit 6")
    assert kinds["slow/comp.pb"] == ("error", "exit 124")
    assert not list(report.parent.glob(".*.tmp"))  # written atomically, nothing left over


def test_two_jobs_give_the_same_verdicts_as_one(first_run, suite, runner):
    sequential, _ = first_run
    result = _invoke(runner, "check", suite / "cases", "--manifest", suite / "manifest.txt",
                     "--case-timeout", CASE_TIMEOUT_S, "--jobs", 2, "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == document["summary"]["exit_code"] == 124
    parallel = [(c["name"], c["status"], c["exit_code"]) for c in document["cases"]]
    assert parallel == _verdicts_from_lines(sequential.stdout)
    assert document["summary"]["passed"] == 2 and document["summary"]["errors"] == 4


def test_fail_fast_reports_the_cases_it_did_not_start(suite, runner, tmp_path):
    unreadable = _copy_case(MEAN, tmp_path / "unreadable", case_json="{")
    report = tmp_path / "report.xml"
    result = _invoke(runner, "check", unreadable, f"{suite / 'cases'}/[ab]_*", "-x",
                     "--junit", report)
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ERROR ") and lines[0].split()[1].endswith("unreadable:")
    assert lines[1].startswith("SKIP ") and "a_pass: not run (--fail-fast)" in lines[1]
    assert lines[2].startswith("SKIP ") and "b_mismatch: not run (--fail-fast)" in lines[2]
    assert lines[-1].startswith("3 cases: 0 passed, 1 error, 2 not run in ")
    testsuite = ElementTree.parse(report).getroot().find("testsuite")
    assert testsuite.get("skipped") == "2"
    assert testsuite.findall("testcase")[1].find("skipped") is not None


# --- discovery: no worker process needed -----------------------------------------------------

def test_a_directory_of_cases_expands_to_every_case_below_it_in_both_forms(monkeypatch):
    monkeypatch.chdir(REPO)
    found = checking.discover(["examples/cases"])
    dirs = sorted(p.name for p in CASES.iterdir() if checking.is_case_dir(p))
    assert [c.name for c in found][:2] == [f"examples/cases/{dirs[0]}",
                                          f"examples/cases/{dirs[0]}[native]"]
    assert len(found) == sum(len(list(CASES.glob(f"{d}/*comp.pb"))) for d in dirs)
    assert {c.comp.name for c in found} == {"comp.pb", "native_comp.pb"}


def test_globs_and_forms_select_cases(monkeypatch):
    monkeypatch.chdir(REPO)
    found = checking.discover(["examples/cases/fed_min_*"], form="native")
    assert [c.name for c in found] == [
        f"examples/cases/{p.name}[native]" for p in sorted(CASES.glob("fed_min_*"))]
    everything = checking.discover(["examples/cases/*"], form="comp")  # README.md skipped
    assert len(everything) == len(list(CASES.glob("*/comp.pb")))
    single = checking.discover(["examples/cases/fed_broadcast/comp.pb",
                                "examples/cases/fed_broadcast"], form="comp")
    assert [c.name for c in single] == ["examples/cases/fed_broadcast"]
    assert single[0].clients == 4  # meta.json's num_clients
    assert single[0].arg.name == "arg.pb" and single[0].expected.name == "expected.pb"


@pytest.mark.parametrize("pattern, message", [
    ("no/such/dir", "no such file or directory"),
    ("examples/cases/zz_*", "the pattern matches nothing"),
    ("benchmarks", "no case found"),
    ("README.md", "not a case"),
])
def test_a_case_argument_that_names_no_case_is_a_usage_error(runner, monkeypatch, pattern,
                                                              message):
    monkeypatch.chdir(REPO)
    result = _invoke(runner, "check", pattern)
    assert result.exit_code == 2
    assert message in result.stderr and pattern in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_manifest_line_is_a_usage_error_naming_the_line(runner, tmp_path):
    manifest = tmp_path / "cases.txt"
    manifest.write_text("# fine\ncomp.pb arg.pb expected.pb many\n")
    result = _invoke(runner, "check", "--manifest", manifest)
    assert result.exit_code == 2
    assert "cases.txt:2" in result.stderr and "CLIENTS" in result.stderr
    manifest.write_text("comp.pb\n")
    result = _invoke(runner, "check", "--manifest", manifest)
    assert result.exit_code == 2 and "COMP ARG EXPECTED" in result.stderr


def test_manifest_fields_and_flags_become_the_case(tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("'a dir/comp.pb' - exp.json - --allow-op Abort --rtol 0.1\n")
    (case,) = checking.read_manifest(manifest)
    assert case.comp == tmp_path / "a dir" / "comp.pb" and case.arg is None
    assert case.clients is None and case.flags == ("--allow-op", "Abort", "--rtol", "0.1")


def test_cases_that_cannot_start_are_errors_without_a_worker(runner, tmp_path):
    bad_json = _copy_case(MEAN, tmp_path / "bad_json", case_json="{nope")
    typo = _copy_case(MEAN, tmp_path / "typo", case_json='{"rtoll": 1}')
    bad_flag = _copy_case(MEAN, tmp_path / "bad_flag", case_json='{"flags": ["--no-such"]}')
    no_expected = tmp_path / "no_expected"
    no_expected.mkdir()
    shutil.copy(MEAN / "comp.pb", no_expected / "comp.pb")
    result = _invoke(runner, "check", bad_json, bad_flag, no_expected, typo, "--json")
    assert result.exit_code == 2
    cases = {pathlib.PurePath(c["name"]).name: c for c in json.loads(result.stdout)["cases"]}
    assert all(c["status"] == "error" and c["exit_code"] == 2 for c in cases.values())
    assert "case.json" in cases["bad_json"]["message"]
    assert "unknown key 'rtoll'" in cases["typo"]["message"]
    assert "--no-such" in cases["bad_flag"]["message"]
    assert "no expected value" in cases["no_expected"]["message"]


def test_junit_into_a_missing_folder_is_refused_before_running(runner, tmp_path):
    result = _invoke(runner, "check", MEAN, "--junit", tmp_path / "missing" / "r.xml")
    assert result.exit_code == 2 and "--junit" in result.stderr


@pytest.mark.parametrize("signame, code, word", [("SIGINT", 130, "interrupted"),
                                                  ("SIGTERM", 143, "terminated")],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_workers(tmp_path, signame, code, word):
    """A real process: Ctrl-C (or SIGTERM) while the workers start ends the run at once, workers
    included."""
    import signal
    import subprocess
    import time
    import uuid

    from tffexec_test_support import clean_env, sigint_as_from_a_terminal, tffexec_script

    marker = uuid.uuid4().hex
    process = subprocess.Popen(
        [tffexec_script(), "check", str(MEAN), str(CASES / "fed_broadcast"), "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(CHECK_TEST_MARKER=marker), preexec_fn=sigint_as_from_a_terminal)
    assert process.stderr.readline().startswith("checking 3 cases in 2 worker processes")
    deadline = time.monotonic() + 60
    while len(_processes_with(marker)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # until both workers exist (they then import TensorFlow for seconds)
    process.send_signal(getattr(signal, signame))
    start = time.monotonic()
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert time.monotonic() - start < 15
    assert err.strip().splitlines()[-1] == f"Error: {word}; the worker processes were stopped"
    assert _processes_with(marker) == []


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (the workers inherit it)."""
    found = []
    for environ in pathlib.Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
