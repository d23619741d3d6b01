"""The `tffexec` group: exit codes, --debug, --version, start-up cost, the installed script."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import click
import pytest

from tffexec import errors
from tffexec.cli import main
from tffexec.cli import versions

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = "examples/mean_of_clients"  # README's first example; relative to REPO, the cwd below



@pytest.fixture
def raising_command(monkeypatch):
    """Adds a `boom` command that raises whatever `boom.exc` is set to."""

    @click.command("boom")
    def boom():
        raise boom.exc

    monkeypatch.setitem(main.cli.commands, "boom", boom)
    return boom


# --- one place maps errors to exit codes -------------------------------------------------------

ERROR_CLASSES = [
    errors.CheckFailed, errors.UsageError, errors.ComputationError, errors.ArgumentError,
    errors.PolicyError, errors.ExecutionError, errors.EngineUnavailable, errors.InternalError,
    errors.Timeout, errors.Interrupted, errors.Terminated,
]


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_tffexec_error_maps_to_its_exit_code(runner, raising_command, error_class):
    raising_command.exc = error_class("went\nwrong", file="f.pb", path="lambda.result")
    result = runner.invoke(main.cli, ["boom"])
    assert result.exit_code == error_class.exit_code
    assert result.stdout == ""
    assert result.stderr == "Error: f.pb: lambda.result: went wrong\n"


def test_every_documented_exit_code_has_a_class():
    codes = {cls.exit_code for cls in ERROR_CLASSES} | {0}
    assert codes == set(errors.EXIT_CODES)


def test_an_error_class_with_an_undocumented_exit_code_is_refused():
    with pytest.raises(TypeError, match="exit code 99 is not in EXIT_CODES"):
        class _Undocumented(errors.TffexecError, exit_code=99):
            """Never defined: 99 has no meaning in EXIT_CODES."""


def test_other_exception_is_internal_error_70(runner, raising_command):
    raising_command.exc = ValueError("boom")
    result = runner.invoke(main.cli, ["boom"])
    assert result.exit_code == 70
    line, = result.stderr.splitlines()
    assert line.startswith("Error: internal error: ValueError: boom; please report it to the tffexec maintainers")
    assert main.REPORT_HINT in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_traceback(runner, raising_command, monkeypatch, how):
    raising_command.exc = errors.ArgumentError("bad value")
    if how == "env":
        monkeypatch.setenv("TFFEXEC_DEBUG", "1")
        args = ["boom"]
    else:
        args = ["--debug", "boom"]
    result = runner.invoke(main.cli, args)
    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "Error: bad value"


def test_keyboard_interrupt_is_130(runner, raising_command):
    raising_command.exc = KeyboardInterrupt()
    result = runner.invoke(main.cli, ["boom"])
    assert result.exit_code == 130
    assert result.stderr == "Error: interrupted\n"


def test_sigterm_in_any_command_is_one_line_and_exit_143(runner, raising_command):
    raising_command.exc = errors.TerminateSignal()
    result = runner.invoke(main.cli, ["boom"])
    assert result.exit_code == 143
    assert result.stderr == "Error: terminated\n"


@pytest.mark.parametrize("args", [["nosuchcommand"], ["inspect"], ["inspect", "--bogus", "x"],
                                  ["--bogus"]])
def test_click_usage_errors_are_2(runner, args):
    result = runner.invoke(main.cli, args)
    assert result.exit_code == 2
    assert result.stdout == ""


# --- --version and --help ----------------------------------------------------------------------

def test_version_lists_components(runner):
    result = runner.invoke(main.cli, ["--version"])
    assert result.exit_code == 0
    labels = [line.split()[0] for line in result.stdout.splitlines()]
    assert labels == ["tffexec", "TensorFlow", "federated-language", "numpy", "protobuf", "ray",
                      "matplotlib", "Python", "OS"]
    for line in result.stdout.splitlines():
        assert line.split(None, 1)[1].strip()


def test_version_accepts_tensorflow_cpu_or_not_installed(monkeypatch):
    import importlib.metadata

    installed = {"tensorflow-cpu": "2.99.0"}

    def fake_version(name):
        if name in installed:
            return installed[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    assert versions.versions()["TensorFlow"] == "2.99.0"
    installed.clear()
    assert versions.versions()["TensorFlow"] == "not installed"


def test_help_lists_commands_and_exit_codes(runner):
    result = runner.invoke(main.cli, ["--help"])
    assert result.exit_code == 0
    assert "inspect" in result.stdout and "validate" in result.stdout
    for code in errors.EXIT_CODES:
        assert f" {code}  " in result.stdout


# --- real processes: the installed script, exit codes, no TensorFlow import, start-up time --------

def _script() -> list[str]:
    """The installed `tffexec` console script next to this Python, else `python -m tffexec`."""
    candidate = pathlib.Path(sys.executable).parent / "tffexec"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("tffexec")
    return [found] if found else [sys.executable, "-m", "tffexec"]


def _run(*args: str, env_extra: dict | None = None, stdin: bytes | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFEXEC_")}
    env.update(env_extra or {})
    return subprocess.run(_script() + list(args), capture_output=True, env=env, input=stdin,
                          timeout=120, cwd=REPO)


def _imported_modules(stderr: bytes) -> set[str]:
    names = set()
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize("args", [
    ["--help"],
    ["--version"],
    ["inspect", f"{EXAMPLE}/comp.pb"],
    ["inspect", f"{EXAMPLE}/comp.pb", "--tree", "--json"],
    ["validate", f"{EXAMPLE}/comp.pb", "--clients", "3"],
    ["validate", f"{EXAMPLE}/comp.pb", f"{EXAMPLE}/arg.pb"],
], ids=["help", "version", "inspect", "inspect-tree-json", "validate", "validate-arg"])
def test_subprocess_does_not_import_tensorflow(args):
    proc = _run(*args, env_extra={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    modules = _imported_modules(proc.stderr)
    assert "click" in modules  # the profile really covers this process
    heavy = sorted(m for m in modules if m.split(".")[0] in {"tensorflow", "keras", "jax", "torch"})
    assert heavy == []


def test_subprocess_exit_codes_and_one_line_errors(tmp_path):
    missing = _run("inspect", str(tmp_path / "missing.pb"))
    assert missing.returncode == 2 and missing.stdout == b""
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\x0a\xff\xff\xff\xff")
    bad = _run("inspect", str(garbage))
    assert bad.returncode == 3 and bad.stdout == b""
    assert bad.stderr.decode().count("\n") == 1 and bad.stderr.startswith(b"Error: ")
    stdin = _run("inspect", "-", stdin=(REPO / EXAMPLE / "comp.pb").read_bytes())
    assert stdin.returncode == 0 and b"float32@SERVER" in stdin.stdout
    problems = _run("validate", f"{EXAMPLE}/comp.pb")
    assert problems.returncode == 1 and problems.stdout == b""


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "tffexec", "--help"], capture_output=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0 and b"Usage: tffexec" in proc.stdout


# --- README's first lines --------------------------------------------------------------------------

def test_readme_starts_with_install_and_test_commands():
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines[0] == "```sh"
    install, test_cmd = lines[1], lines[2]
    assert install.startswith("python -m venv .venv && .venv/bin/pip install -e '.[test]' && ")
    example = install.rsplit(" ", 1)[1]
    assert (REPO / example).is_file(), example
    assert test_cmd == ".venv/bin/pytest -q -p no:cacheprovider --import-mode=importlib tests"


def test_ci_script_runs_the_readme_commands_in_a_fresh_copy():
    script = (REPO / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    assert "archive --format=tar HEAD" in script  # the committed tree alone, no siblings
    assert "-m external_corpus" in script  # then the external corpus, when present
    # The script's own extraction of the README's first ```sh block gives its two commands.
    awk = script[script.index("awk '"):].split("\n", 1)[0]
    program = awk[len("awk '"):awk.rindex("'")]
    out = subprocess.run(["awk", program, str(REPO / "README.md")], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    readme = (REPO / "README.md").read_text().splitlines()
    assert readme[0] == "```sh" and out == readme[1:3]
    assert "pip install -e '.[test]'" in out[0]
    assert "pytest -q -p no:cacheprovider --import-mode=importlib tests" in out[1]