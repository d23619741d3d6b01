"""The installed `tffexec` script as a real process: pipes, Ctrl-C, --timeout, exit codes,
progress on a terminal only, shell completion, start-up without TensorFlow."""
from __future__ import annotations

import json
import os
import pathlib
import pty
import signal
import subprocess
import sys
import time

import pytest
from tffexec_test_support import (REPO, clean_env, run_with_terminal_stderr,
                                  sigint_as_from_a_terminal, tffexec_script)

MEAN = REPO / "examples" / "mean_of_clients"
FEDAVG = REPO / "examples" / "fedavg_round"
SLOW = REPO / "examples" / "slow_loop"
SECURE = REPO / "examples" / "cases" / "fed_secure_sum_struct"
#: slow_loop steps that keep TensorFlow inside one kernel for many minutes (~40 us per step).
FOREVER = "1000000000"


def _path_env(**extra: str) -> dict[str, str]:
    """A clean environment whose PATH finds the installed script first (for shell pipelines)."""
    env = clean_env(**extra)
    env["PATH"] = f"{pathlib.Path(tffexec_script()).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(*args, stdin: bytes | None = None, timeout: float = 120, **env):
    return subprocess.run([tffexec_script(), *map(str, args)], capture_output=True, input=stdin,
                          env=_path_env(**env), timeout=timeout, cwd=REPO)


def _shell(command: str, timeout: float = 120):
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                          env=_path_env(), timeout=timeout, cwd=REPO)


# --- pipes ------------------------------------------------------------------------------------------

def test_computation_from_stdin_json_result_into_a_pipe():
    proc = _shell(f"cat {MEAN}/comp.pb | tffexec run - {MEAN}/arg.json --format json"
                  f" | {sys.executable} -c 'import json,sys; print(json.load(sys.stdin)[\"type\"])'")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"float32@SERVER\n"
    assert proc.stderr == b""


def test_pb_result_into_a_pipe_converts_back():
    proc = _shell(f"tffexec run {MEAN}/comp.pb {MEAN}/arg.npz --format pb"
                  f" | tffexec convert - - --from pb --to json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["type"] == "float32@SERVER"


def test_default_output_to_a_pipe_is_json():
    proc = _run("run", MEAN / "comp.pb", MEAN / "arg.pb")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["format"] == "tffexec-value/1"
    assert proc.stderr == b""


def test_template_into_run_through_a_pipe():
    proc = _shell(f"tffexec template {MEAN}/comp.pb --clients 2 | tffexec run {MEAN}/comp.pb -"
                  " --format json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["value"]["federated"]["values"][0]["value"] == 0.0


def test_closed_stdout_does_not_print_a_traceback():
    proc = _shell(f"tffexec convert {SLOW}/expected.json - --to json | head -c 10")
    assert proc.stdout == b'{\n "format'
    assert b"Traceback" not in proc.stderr and b"Error" not in proc.stderr


# --- Ctrl-C and --timeout ---------------------------------------------------------------------------

def _start_busy(tmp_path: pathlib.Path, *extra: str) -> tuple[subprocess.Popen, pathlib.Path]:
    """Starts slow_loop with a huge step count and waits until TensorFlow is inside the loop."""
    (tmp_path / "n.json").write_text(FOREVER)
    out = tmp_path / "result.json"
    proc = subprocess.Popen([tffexec_script(), "-v", "run", str(SLOW / "comp.pb"),
                             str(tmp_path / "n.json"), "--output", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_path_env(), cwd=REPO,
                            preexec_fn=sigint_as_from_a_terminal)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        if line.strip() == "tffexec: run: started":
            break
        assert line, "tffexec exited before running"
    else:
        proc.kill()
        pytest.fail("the run did not start within 60 s")
    # TensorFlow's import takes ~3 s after "run: started"; then the while-loop kernel runs for
    # hours. (Should the import be slower here, the signal still lands mid-run.)
    time.sleep(4.5)
    assert proc.poll() is None
    return proc, out


def _rest_of_stderr(proc: subprocess.Popen) -> list[str]:
    return [line for line in proc.stderr.read().decode().splitlines()
            if not line.startswith("tffexec: ")]


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                 (signal.SIGTERM, 143, "terminated")],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_inside_a_tensorflow_kernel_exits_within_2_seconds(tmp_path, signum,
                                                                            code, word):
    proc, out = _start_busy(tmp_path)
    signalled = time.monotonic()
    proc.send_signal(signum)
    try:
        got = proc.wait(timeout=10)
    finally:
        proc.kill()
    elapsed = time.monotonic() - signalled
    assert got == code
    assert elapsed < 2.0, elapsed
    assert _rest_of_stderr(proc) == [f"Error: {word}; no output written"]
    assert proc.stdout.read() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.json"]  # no output, no temp file
    assert not out.exists()


def test_timeout_inside_a_tensorflow_kernel_exits_124(tmp_path):
    (tmp_path / "n.json").write_text(FOREVER)
    started = time.monotonic()
    proc = _run("run", SLOW / "comp.pb", tmp_path / "n.json", "--output", tmp_path / "r.npz",
                "--timeout", "3", timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 124
    assert proc.stderr == b"Error: stopped after --timeout 3 s; no output written\n"
    # The kernel would run for hours: ending a few seconds after the limit (process start-up
    # included, which a loaded machine stretches) shows the run did not wait for it.
    assert 3 <= elapsed < 20, elapsed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.json"]


def test_timeout_from_environment_stops_a_benchmark():
    proc = _run("benchmark", MEAN / "comp.pb", MEAN / "arg.pb", "--runs", "100000000",
                timeout=60, TFFEXEC_TIMEOUT="1.5")
    assert proc.returncode == 124
    assert proc.stderr == b"Error: stopped after --timeout 1.5 s; no output written\n"
    assert proc.stdout == b""


def test_ctrl_c_during_benchmark_exits_130():
    proc = subprocess.Popen([tffexec_script(), "benchmark", str(MEAN / "comp.pb"),
                             str(MEAN / "arg.pb"), "--runs", "100000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_path_env(), cwd=REPO,
                            preexec_fn=sigint_as_from_a_terminal)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
    assert code == 130
    assert proc.stderr.read() == b"Error: interrupted; no output written\n"


# --- every exit code as a process sees it -------------------------------------------------------------

def test_exit_codes_of_real_failures(tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\x0a\xff\xff\xff\xff")
    (tmp_path / "too_big.json").write_text('[{"a": 1000, "b": [0, 0]}]')
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"type": "float32@SERVER", "value": {"federated": {
        "placement": "server", "all_equal": True,
        "values": [{"dtype": "float32", "shape": [], "value": 1.0}]}}}))
    cases = {
        0: ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", MEAN / "expected.json"],
        1: ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", wrong],
        2: ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--format", "yaml"],
        3: ["run", garbage, MEAN / "arg.pb"],
        4: ["run", MEAN / "comp.pb", FEDAVG / "arg.json"],
        5: ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--max-clients", "2"],
        6: ["run", SECURE / "comp.pb", tmp_path / "too_big.json"],
    }
    for code, args in cases.items():
        proc = _run(*args)
        assert proc.returncode == code, (code, proc.stderr)
        if code:
            assert proc.stderr.decode().splitlines()[-1].startswith("Error: "), proc.stderr
            assert b"Traceback" not in proc.stderr
        if code not in (0, 1):
            assert proc.stdout == b""


# --- progress: a terminal only ---------------------------------------------------------------------

def _run_with_tty_stderr(tmp_path: pathlib.Path, *args: str) -> tuple[int, bytes, bytes]:
    """Runs tffexec with standard error on a pseudo-terminal; (exit code, stdout, terminal)."""
    stdout_file = tmp_path / "stdout"
    code, seen = run_with_terminal_stderr([tffexec_script(), *args], stdout_file,
                                          _path_env(COLUMNS="100", TERM="xterm"))
    return code, stdout_file.read_bytes(), seen


def test_progress_is_drawn_on_a_terminal_and_stdout_stays_clean(tmp_path):
    (tmp_path / "n.json").write_text("30000")  # about 1.2 s of TensorFlow work
    code, stdout, tty = _run_with_tty_stderr(tmp_path, "run", str(SLOW / "comp.pb"),
                                             str(tmp_path / "n.json"), "--format", "json")
    assert code == 0, tty
    assert json.loads(stdout)["type"] == "<steps=int64,state=float32[64,64]>"
    assert b"run" in tty and b"\x1b[" in tty  # Rich redraws the live display
    # A fresh process: the display says so while TensorFlow imports (seconds of nothing else).
    assert b"importing TensorFlow" in tty


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["default", "quiet"])
def test_quiet_draws_no_progress_on_a_terminal(tmp_path, quiet):
    code, stdout, tty = _run_with_tty_stderr(tmp_path, "run", str(MEAN / "comp.pb"),
                                             str(MEAN / "arg.pb"), "--format", "json", *quiet)
    assert code == 0
    json.loads(stdout)
    if quiet:
        assert tty == b""
    else:
        assert b"\x1b[?25l" in tty  # the live display hid the cursor while it ran


def test_binary_result_is_refused_on_a_terminal():
    master, slave = pty.openpty()
    proc = subprocess.run([tffexec_script(), "run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb"),
                           "--format", "pb"], stdout=slave, stderr=subprocess.PIPE, env=_path_env(),
                          cwd=REPO, timeout=60)
    os.close(slave)
    os.close(master)
    assert proc.returncode == 2
    assert b"refusing to write binary pb to a terminal" in proc.stderr


# --- shell completion and start-up -------------------------------------------------------------------

def test_bash_completion_script_and_completions():
    source = _run(_TFFEXEC_COMPLETE="bash_source")
    assert source.returncode == 0
    assert b"complete -o nosort -F _tffexec_completion tffexec" in source.stdout
    words = _run(COMP_WORDS="tffexec ", COMP_CWORD="1", _TFFEXEC_COMPLETE="bash_complete")
    names = {line.split(",", 1)[1] for line in words.stdout.decode().splitlines()}
    assert {"run", "inspect", "validate", "convert", "template", "benchmark"} <= names
    stacks = _run(COMP_WORDS="tffexec run comp.pb --stack ", COMP_CWORD="4",
                  _TFFEXEC_COMPLETE="bash_complete")
    from tffexec.cli import stack_flags

    assert {line.split(",", 1)[1] for line in stacks.stdout.decode().splitlines()} == set(
        stack_flags.STACK_CHOICES)


def _imported(stderr: bytes) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in stderr.decode(errors="replace").splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


@pytest.mark.parametrize("args", [
    ["template", f"{FEDAVG}/comp.pb"],
    ["convert", f"{FEDAVG}/arg.pb", "-", "--to", "json"],
    ["convert", f"{FEDAVG}/arg.npz", "-", "--to", "pb", "--type-of", f"{FEDAVG}/comp.pb"],
    ["run", f"{MEAN}/comp.pb", f"{MEAN}/arg.pb", "--expect", f"{MEAN}/expected.json"],
], ids=["template", "convert-pb-json", "convert-npz-pb", "run-graph-free"])
def test_graph_free_commands_do_not_import_tensorflow(args):
    proc = _run(*args, PYTHONPROFILEIMPORTTIME="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = _imported(proc.stderr)
    assert "click" in modules
    assert not [m for m in modules if m.split(".")[0] in {"tensorflow", "keras"}]
