"""Runs cases in long-lived worker processes that are replaced after a crash or a timeout.

Why processes: a TensorFlow kernel cannot be interrupted, and an op such as `Abort` (or a bug in
a kernel) ends the whole process. A checker that ran cases in its own process would stop at the
first such case. Why long-lived: importing TensorFlow costs seconds of CPU, so each worker imports
it once and runs case after case through one `tffexec.checking.CaseRunner` (one `Runner` per
stack configuration). When a worker dies or a case runs past its timeout, that case is reported
as an error and the next case gets a fresh worker.

Workers are started with multiprocessing's "spawn" method (a fresh interpreter, no inherited
threads or TensorFlow state). Their standard output and error go to a log file, so TensorFlow's
messages never mix with the report; after a crash the last line of that log is quoted in the
verdict. The parent never imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
import signal
import tempfile
import threading
import time
from typing import Callable, Sequence

from tffexec import checking
from tffexec import errors

#: How long a new worker may take to import TensorFlow and say it is ready.
STARTUP_TIMEOUT_S = 300.0
#: How long a worker may take to exit after being asked to.
_STOP_TIMEOUT_S = 5.0
#: How often waiting threads look at the stop flag (Ctrl-C, --fail-fast).
_POLL_S = 0.25


def _worker_main(conn, log_path: str) -> None:
    """A worker's life: import TensorFlow, say ready, then check cases until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    from tffexec import tf_runtime  # noqa: PLC0415

    tf_runtime.tensorflow()
    from tffexec import runner  # noqa: F401, PLC0415 - imported before the first case's clock

    conn.send(("ready", os.getpid()))
    with checking.CaseRunner() as case_runner:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if message is None:
                return
            case, settings = message
            os.ftruncate(log_fd, 0)  # the log then holds this case's messages only
            conn.send(case_runner.check(case, settings))


class _Crashed(Exception):
    """The worker process ended without answering."""


class Worker:
    """One worker process and the pipe to it; `check` starts it on first use."""

    def __init__(self) -> None:
        self._process = None
        self._conn = None
        self._log_path: str | None = None

    def start(self, stop: threading.Event) -> None:
        """Starts the process and waits until it imported TensorFlow.

        Raises:
          tffexec.errors.EngineUnavailable: it died or did not get ready in time (exit 7).
        """
        context = multiprocessing.get_context("spawn")
        fd, self._log_path = tempfile.mkstemp(prefix="tffexec-check-", suffix=".log")
        os.close(fd)
        parent_conn, child_conn = context.Pipe()
        self._process = context.Process(target=_worker_main, args=(child_conn, self._log_path),
                                        name="tffexec-check-worker", daemon=True)
        self._process.start()
        child_conn.close()
        self._conn = parent_conn
        try:
            self._receive(STARTUP_TIMEOUT_S, stop)
        except (_Crashed, TimeoutError) as e:
            detail = self._crash_detail() if isinstance(e, _Crashed) else (
                f"not ready after {STARTUP_TIMEOUT_S:g} s")
            self.kill()
            raise errors.EngineUnavailable(f"a check worker process did not start: {detail}"
                                           ) from None

    @property
    def running(self) -> bool:
        return self._process is not None

    def check(self, case: checking.Case, settings: checking.CaseSettings,
              stop: threading.Event) -> checking.Verdict:
        """The case's verdict; an ERROR verdict when the worker crashed or timed out (the
        worker is then gone and the next call starts a new one)."""
        if self._process is None:
            self.start(stop)
        start = time.perf_counter()
        try:
            self._conn.send((case, settings))
            return self._receive(settings.timeout, stop)
        except TimeoutError:
            self.kill()
            return checking.Verdict(
                case.name, checking.ERROR, errors.Timeout.exit_code,
                f"no result after --case-timeout {settings.timeout:g} s (worker stopped)",
                time.perf_counter() - start, comp=str(case.comp))
        except _Crashed:
            detail = self._crash_detail()
            self.kill()
            return checking.Verdict(
                case.name, checking.ERROR, errors.ExecutionError.exit_code,
                f"the worker process crashed: {detail}", time.perf_counter() - start,
                comp=str(case.comp))

    def _receive(self, timeout: float | None, stop: threading.Event):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if stop.is_set():
                raise errors.Interrupted("interrupted")
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError
            try:
                if self._conn.poll(wait):
                    return self._conn.recv()
            except (EOFError, OSError):
                raise _Crashed from None
            if not self._process.is_alive() and not self._conn.poll(0):
                raise _Crashed

    def _crash_detail(self) -> str:
        self._process.join(1.0)
        code = self._process.exitcode
        if code is None:
            how = "it stopped answering"
        elif code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"it exited with status {code}"
        last = _last_line(self._log_path)
        return f"{how}; its last message: {last}" if last else how

    def stop(self) -> None:
        """Asks the worker to exit, then makes sure it did."""
        if self._process is None:
            return
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._process.join(_STOP_TIMEOUT_S)
        self.kill()

    def kill(self) -> None:
        """Ends the process now (a kernel may be running: nothing else would stop it)."""
        if self._process is None:
            return
        if self._process.is_alive():
            self._process.kill()
        self._process.join(_STOP_TIMEOUT_S)
        try:
            self._conn.close()
        except OSError:
            pass
        if self._log_path is not None:
            try:
                os.unlink(self._log_path)
            except OSError:
                pass
        self._process = self._conn = self._log_path = None


#: A glog FATAL line ("F0000 00:00:1796152496.366995 4149 file.cc:737] message").
_FATAL = re.compile(r"^F\d{4} [\d:.]+\s+\d+ [^\]]*\] ")
#: Lines of a stack trace that follow the message that matters.
_TRACE = re.compile(r'^(@ |\*\*\* |PC: |Fatal Python error|Current thread|Thread 0x|File ")')


def _last_line(path: str | None, limit: int = 64 * 1024) -> str:
    """What the worker said last before it died: TensorFlow's FATAL message when there is one
    (without its glog prefix), else the last line that is not part of a stack trace."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    fatal = [line for line in lines if _FATAL.match(line)]
    if fatal:
        return _FATAL.sub("", fatal[-1])[:300]
    plain = [line for line in lines if line and not _TRACE.match(line)]
    return plain[-1][:300] if plain else ""


@dataclasses.dataclass
class _Progress:
    """Verdicts by case index, handed to `on_verdict` in case order as they complete."""

    verdicts: list
    on_verdict: Callable[[checking.Verdict], None] | None
    reported: int = 0

    def record(self, index: int, verdict: checking.Verdict) -> None:
        self.verdicts[index] = verdict
        while self.reported < len(self.verdicts) and self.verdicts[self.reported] is not None:
            if self.on_verdict is not None:
                self.on_verdict(self.verdicts[self.reported])
            self.reported += 1


def check_cases(cases: Sequence[checking.Case],
                settings_for: checking.SettingsFor = checking.default_settings, *,
                jobs: int = 1, fail_fast: bool = False,
                on_verdict: Callable[[checking.Verdict], None] | None = None
                ) -> list[checking.Verdict]:
    """Checks `cases` in `jobs` worker processes; returns one verdict per case, in order.

    Args:
      cases: what to check.
      settings_for: the stack, client count, tolerances and timeout of a case; called for
        every case in the calling thread before any case runs (a `TffexecError` it raises
        makes that case an error without running it).
      jobs: how many cases run at the same time, each in its own worker process.
      fail_fast: after the first case that does not pass, start no more; the rest are
        SKIPPED verdicts.
      on_verdict: called with each verdict in case order, as soon as it and all before it are
        known (from a worker thread; calls never overlap).

    Raises:
      tffexec.errors.Interrupted: Ctrl-C; the workers are stopped first.
    """
    if jobs < 1:
        raise errors.UsageError(f"jobs must be >= 1, got {jobs}")
    lock = threading.Lock()
    stop = threading.Event()
    failed = threading.Event()
    progress = _Progress([None] * len(cases), on_verdict)
    pending = iter(range(len(cases)))
    startup_failure: list[errors.TffexecError] = []
    # Settled here, in the calling thread, before any case runs: `settings_for` need not be
    # thread-safe (the CLI's parses flags with click), and a bad case.json shows at once.
    settings: list[checking.CaseSettings | errors.TffexecError] = []
    for case in cases:
        try:
            settings.append(settings_for(case))
        except errors.TffexecError as e:
            settings.append(e)

    def next_index() -> int | None:
        with lock:
            if stop.is_set() or (fail_fast and failed.is_set()):
                return None
            return next(pending, None)

    def record(index: int, verdict: checking.Verdict) -> None:
        with lock:
            if not verdict.passed:
                failed.set()
            progress.record(index, verdict)

    def check_one(worker: Worker, case: checking.Case,
                  case_settings: checking.CaseSettings | errors.TffexecError
                  ) -> checking.Verdict:
        if isinstance(case_settings, errors.TffexecError):
            return checking.verdict_for_error(case, case_settings)
        if case.problem is not None:  # nothing to run: no worker needed
            return checking.CaseRunner().check(case, case_settings)
        if startup_failure:
            return checking.verdict_for_error(case, startup_failure[0])
        try:
            return worker.check(case, case_settings, stop)
        except errors.EngineUnavailable as e:
            startup_failure.append(e)
            return checking.verdict_for_error(case, e)

    def work() -> None:
        worker = Worker()
        try:
            while (index := next_index()) is not None:
                try:
                    verdict = check_one(worker, cases[index], settings[index])
                except errors.Interrupted:
                    return
                except Exception as e:  # noqa: BLE001 - a bug here must still give a verdict
                    verdict = checking.Verdict(
                        cases[index].name, checking.ERROR, errors.InternalError.exit_code,
                        f"internal error: {type(e).__name__}: {e}", comp=str(cases[index].comp))
                record(index, verdict)
        finally:
            if stop.is_set():
                worker.kill()
            else:
                worker.stop()

    threads = [threading.Thread(target=work, name=f"tffexec-check-{i}", daemon=True)
               for i in range(min(jobs, max(1, len(cases))))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(_POLL_S)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (errors.TerminateSignal)
        stop.set()
        for thread in threads:
            thread.join(_STOP_TIMEOUT_S + 1)
        raise errors.interruption(e, "interrupted; the worker processes were stopped") from None
    with lock:
        for index, case in enumerate(cases):
            if progress.verdicts[index] is None:
                progress.record(index, checking.not_run(case, "not run (--fail-fast)"))
    return list(progress.verdicts)
