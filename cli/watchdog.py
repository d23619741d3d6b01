"""Ctrl-C, SIGTERM and `--timeout` that work even while TensorFlow is busy.

Why: a TensorFlow kernel cannot be interrupted, and Python runs signal handlers only in the main
thread between bytecodes, so a run on the main thread ignores Ctrl-C until the kernel returns
(minutes, for a big one). Instead the command's work runs on a daemon worker thread and the main
thread only waits for it; the wait wakes up at once for SIGINT (KeyboardInterrupt) and at the
deadline. The work is then abandoned: the CLI prints one line and `main()` leaves the process with
`os._exit` (exit 130, 143 or 124) without waiting for TensorFlow, after removing any temporary
output file (`tffexec.formats.atomic` registers them while they are written) and ending a Ray
cluster the run started (`tffexec.factories.ray_pool.shutdown_started_clusters`).

SIGTERM is Ctrl-C with another exit status: `install_sigterm` (called by `main()` only, so tests
in a CliRunner keep the default) makes it raise `tffexec.errors.TerminateSignal`, a
KeyboardInterrupt, in the main thread; it ends as `tffexec.errors.Terminated` (exit 143).

Inside a test's CliRunner nothing exits hard: the abandoned thread simply finishes in the
background; `work_abandoned()` tells `tffexec.cli.main.main` to exit hard in a real process.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Callable, TypeVar

from tffexec import errors
from tffexec.formats import atomic

T = TypeVar("T")

_abandoned = threading.Event()

#: How often the main thread wakes while it waits (a safety net; signals wake it at once).
_POLL_S = 0.25


def _raise_terminate(_signum: int, _frame: Any) -> None:
    raise errors.TerminateSignal()


def install_sigterm() -> None:
    """Handles SIGTERM like SIGINT from now on (main thread only; a no-op elsewhere)."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminate)
    except ValueError:  # not the main thread
        pass


def run_guarded(work: Callable[[], T], *, timeout: float | None = None) -> T:
    """Runs `work()` on a worker thread; returns its result or re-raises its exception.

    Raises:
      tffexec.errors.Interrupted: Ctrl-C (SIGINT) arrived while the work was running (exit 130).
      tffexec.errors.Terminated: SIGTERM arrived while the work was running (exit 143).
      tffexec.errors.Timeout: the work took longer than `timeout` seconds (exit 124).
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread as is
            outcome["error"] = e
        finally:
            done.set()

    worker = threading.Thread(target=target, name="tffexec-work", daemon=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    stderr_fd = _dup_stderr()
    try:
        worker.start()
        while not done.is_set():
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                _abandon(stderr_fd)
                raise errors.Timeout(f"stopped after --timeout {timeout:g} s; no output written")
            done.wait(wait)
    except KeyboardInterrupt as e:
        _abandon(stderr_fd)
        raise errors.interruption(e, "interrupted; no output written") from None
    finally:
        if stderr_fd is not None:
            os.close(stderr_fd)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _dup_stderr() -> int | None:
    try:
        return os.dup(2)
    except OSError:
        return None


def _abandon(stderr_fd: int | None) -> None:
    """Marks the worker abandoned and gives file descriptor 2 back to the user.

    The worker may be importing TensorFlow, which runs with descriptor 2 pointed at /dev/null
    (tffexec.tf_runtime silences its C++ banner); the one-line message must still be seen.
    """
    _abandoned.set()
    if stderr_fd is not None:
        try:
            sys.stderr.flush()
            os.dup2(stderr_fd, 2)
        except (OSError, ValueError):
            pass


def work_abandoned() -> bool:
    """Whether a worker was left running (so the process must not wait for it at exit)."""
    return _abandoned.is_set()


def hard_exit(code: int) -> None:
    """Leaves the process now: temp files removed, a Ray cluster it started ended, streams
    flushed, no waiting for threads. A second Ctrl-C or SIGTERM cannot cut the clean-up short."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
    atomic.remove_temp_files()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not stop the exit
            pass
    _stop_started_ray_clusters()  # last: nothing of Ray may run between this and the exit
    os._exit(code)


def _stop_started_ray_clusters() -> None:
    """Ends an embedded Ray cluster this process started (its processes would outlive an
    `os._exit`), in bounded time; nothing when Ray's stack was never used."""
    pools = sys.modules.get("tffexec.factories.ray_pool")
    if pools is not None:
        pools.shutdown_started_clusters()
