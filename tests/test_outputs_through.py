"""Outputs never destroy what they point at (issue 15 §3).

A regular file is replaced atomically (temporary file + rename); a terminal, a pipe or a FIFO,
directly or through a symlink, is written through and survives, as does the symlink; a directory
or a socket is refused with one line. The targets here are made by the tests (a pty slave, a
FIFO, the pipe a subprocess writes its stdout to): never the real /dev/null or /dev/stdout, which
a test running as root would destroy if the behaviour regressed.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import stat
import subprocess
import threading

import pytest

from tffexec import errors
from tffexec.cli.main import cli
from tffexec.formats import atomic
from tffexec_test_support import REPO, clean_env, tffexec_script

MEAN = REPO / "examples" / "mean_of_clients"
RUNNING_SUM = REPO / "examples" / "iterate" / "running_sum"


def _expected_mean() -> float:
    document = json.loads((MEAN / "expected.json").read_text())
    return document["value"]["federated"]["values"][0]["value"]


def _mean_in(text: str) -> float:
    return json.loads(text)["value"]["federated"]["values"][0]["value"]


def _invoke(runner, *args):
    return runner.invoke(cli, [str(a) for a in args])


class FifoReader:
    """A FIFO in `folder` with a thread reading it to the end (what a `cat fifo` would do)."""

    def __init__(self, folder: pathlib.Path, name: str):
        self.path = folder / name
        os.mkfifo(self.path)
        self.data = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:  # waits for a writer
            self.data = f.read()

    def finish(self) -> bytes:
        """The bytes read; a writer that never came is replaced by an empty one (no hang)."""
        self._thread.join(60)
        if self._thread.is_alive():
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self._thread.join(10)
        assert stat.S_ISFIFO(os.lstat(self.path).st_mode), "the FIFO was replaced"
        return self.data


def test_output_through_a_symlink_to_a_terminal_writes_on_it_and_keeps_both(runner, tmp_path):
    master, slave = os.openpty()
    try:
        terminal = os.ttyname(slave)
        link = tmp_path / "tty"
        link.symlink_to(terminal)
        result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.json", "--format", "json",
                         "--output", link)
        assert result.exit_code == 0, result.output
        os.set_blocking(master, False)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            shown += chunk
        assert stat.S_ISCHR(os.stat(terminal).st_mode)  # (gone once the pty is closed)
    finally:
        os.close(slave)
        os.close(master)
    assert _mean_in(shown.decode().replace("\r\n", "\n")) == pytest.approx(_expected_mean())
    assert link.is_symlink() and os.readlink(link) == terminal
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_through_a_symlink_to_proc_self_fd_1_reaches_the_stdout_pipe(tmp_path):
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    out = subprocess.run(
        [tffexec_script(), "run", str(MEAN / "comp.pb"), str(MEAN / "arg.json"), "--format",
         "json", "--output", str(link)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert _mean_in(out.stdout) == pytest.approx(_expected_mean())
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdout"]


@pytest.mark.parametrize("command", [
    ["run", MEAN / "comp.pb", MEAN / "arg.json", "--format", "json", "--output", "{fifo}"],
    ["convert", MEAN / "arg.pb", "{fifo}", "--type-of", MEAN / "comp.pb"],
    ["template", MEAN / "comp.pb", "--clients", "2", "--output", "{fifo}"],
], ids=["run", "convert", "template"])
def test_a_fifo_output_is_written_through_and_stays_a_fifo(runner, tmp_path, command):
    reader = FifoReader(tmp_path, "out.json")
    args = [str(reader.path) if a == "{fifo}" else a for a in command]
    result = _invoke(runner, *args)
    data = reader.finish()
    assert result.exit_code == 0, result.output
    assert json.loads(data)  # a whole JSON document came through the FIFO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_iterate_writes_metrics_and_state_through_fifos(runner, tmp_path):
    metrics = FifoReader(tmp_path, "m.jsonl")
    state = FifoReader(tmp_path, "state.json")
    result = _invoke(runner, "iterate", "--init", RUNNING_SUM / "init.pb", "--next",
                     RUNNING_SUM / "next.pb", "--data", RUNNING_SUM / "clients", "--rounds", 3,
                     "--metrics", metrics.path, "--output", state.path)
    metrics_data, state_data = metrics.finish(), state.finish()
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["round"] for line in metrics_data.decode().splitlines()] == [1, 2, 3]
    assert json.loads(state_data)


def test_check_junit_report_goes_through_a_fifo(runner, tmp_path):
    reader = FifoReader(tmp_path, "report.xml")
    result = _invoke(runner, "check", MEAN, "--junit", reader.path)
    data = reader.finish()
    assert result.exit_code == 0, result.output
    assert data.startswith(b"<?xml") and b"<testsuite" in data


def test_a_symlink_to_a_regular_file_stays_a_symlink_and_its_file_is_replaced(runner, tmp_path):
    real = tmp_path / "results" / "mean.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.json", "--format", "json",
                     "--output", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert _mean_in(real.read_text()) == pytest.approx(_expected_mean())
    assert sorted(p.name for p in real.parent.iterdir()) == ["mean.json"]


@pytest.fixture
def unix_socket(tmp_path):
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


@pytest.mark.parametrize("kind", ["socket", "directory"])
def test_an_output_that_is_no_file_terminal_or_pipe_is_refused_in_one_line(
        runner, tmp_path, unix_socket, kind):
    target = unix_socket if kind == "socket" else tmp_path / "folder"
    if kind == "directory":
        target.mkdir()
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.json", "--output", target)
    assert result.exit_code == 2, result.output
    assert f"is a {kind}" in result.stderr and str(target) in result.stderr
    assert "Traceback" not in result.output
    mode = os.lstat(target).st_mode
    assert stat.S_ISSOCK(mode) if kind == "socket" else stat.S_ISDIR(mode)


def test_the_library_write_refuses_a_socket_naming_it(unix_socket):
    with pytest.raises(errors.ArgumentError, match="s.sock.*socket"):
        atomic.write(unix_socket, b"x")
    assert stat.S_ISSOCK(os.lstat(unix_socket).st_mode)
