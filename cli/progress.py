"""What the user sees on standard error while a command works: a Rich progress display on a
terminal, log lines with `-v`, nothing otherwise.

Both listen to `tffexec.executors.activity`, where the stages of a run (`tffexec.stages`) and the
executors' client work (per intrinsic: `done` of `total` clients) are reported. Listeners are
called from worker threads, so every method here is thread-safe. Standard output is never touched:
it carries results only.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from tffexec.executors import activity

LOGGER_NAME = "tffexec"


class _Verbosity:
    """-q/-v/--debug as given on the group or the command (click's `ctx.meta` is shared)."""

    QUIET = "tffexec.quiet"
    VERBOSE = "tffexec.verbose"
    DEBUG = "tffexec.debug"


def settings(ctx: Any) -> tuple[bool, int]:
    """(quiet, verbose count) for the current click context."""
    meta = ctx.meta if ctx is not None else {}
    return bool(meta.get(_Verbosity.QUIET)), int(meta.get(_Verbosity.VERBOSE, 0))


def show_progress(quiet: bool) -> bool:
    """Progress only for a person watching: stderr is a terminal and not `--quiet`."""
    try:
        return not quiet and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Reporter:
    """A context manager that shows activity while its block runs.

    Args:
      progress: draw a transient Rich progress display on standard error.
      verbose: 1 logs each task's start and end to standard error; 2 also every progress step.
    """

    def __init__(self, *, progress: bool, verbose: int = 0):
        self._progress_enabled = progress
        self._verbose = verbose
        self._lock = threading.Lock()
        self._progress = None
        self._tasks: dict[tuple[str, int], Any] = {}
        self._started: dict[tuple[str, int], float] = {}
        self._listening = None
        self._logger = logging.getLogger(LOGGER_NAME)
        self._handler: logging.Handler | None = None
        self._terminal = None
        self._paths_before: dict[str, int] = {}

    def __enter__(self) -> "Reporter":
        self._paths_before = activity.path_counts()
        if self._verbose:
            self._handler = logging.StreamHandler(sys.stderr)
            self._handler.setFormatter(logging.Formatter("tffexec: %(message)s"))
            self._logger.addHandler(self._handler)
            self._logger.setLevel(logging.DEBUG)
            self._logger.propagate = False
        if self._progress_enabled:
            from rich.console import Console  # noqa: PLC0415 - only on a terminal
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress,  # noqa: PLC0415
                                       SpinnerColumn, TextColumn, TimeElapsedColumn)

            self._terminal = _own_stderr()
            console = Console(file=self._terminal) if self._terminal else Console(stderr=True)
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=console, transient=True)
            self._progress.start()
        if self._verbose or self._progress is not None:
            self._listening = activity.listen(self.on_event)
            self._listening.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._listening is not None:
            self._listening.__exit__(None, None, None)
            self._listening = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._terminal is not None:
            self._terminal.close()
            self._terminal = None
        if self._handler is not None:
            paths = activity.paths_since(self._paths_before)
            if paths:
                self._logger.info("client graph paths: %s", activity.describe_paths(paths))
            self._logger.removeHandler(self._handler)
            self._handler = None

    def on_event(self, event: activity.Event) -> None:
        """Handles one activity event (called from any thread)."""
        key = (event.task, event.key)
        with self._lock:
            if event.done == 0 or key not in self._started:
                self._started[key] = time.perf_counter()
                if self._verbose:
                    self._logger.info("%s: started%s", event.task, _units(event.total, " to do"))
            if self._progress is not None:
                self._show(key, event)
            finished = event.total > 0 and event.done >= event.total
            if self._verbose >= 2 and not finished and event.done > 0:
                self._logger.debug("%s: %d/%d", event.task, event.done, event.total)
            if finished:
                seconds = time.perf_counter() - self._started.pop(key, time.perf_counter())
                if self._verbose:
                    self._logger.info("%s: done%s in %.3f s", event.task, _units(event.total, ""),
                                      seconds)

    def _show(self, key: tuple[str, int], event: activity.Event) -> None:
        progress = self._progress
        task_id = self._tasks.get(key)
        total = event.total if event.total > 1 else None  # stages: a spinner, no bar
        if task_id is None:
            task_id = progress.add_task(event.task, total=total)
            self._tasks[key] = task_id
        progress.update(task_id, completed=event.done if total else 0)
        if event.total > 0 and event.done >= event.total:
            progress.remove_task(task_id)
            del self._tasks[key]


def _own_stderr():
    """A stream on a duplicate of file descriptor 2, or None.

    Why: while TensorFlow imports, `tf_runtime` points descriptor 2 at /dev/null (to hide its C++
    banner); the display must keep drawing ("importing TensorFlow", which takes seconds) on the
    terminal meanwhile, and a duplicate taken now is not redirected with it.
    """
    try:
        sys.stderr.flush()
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", encoding=sys.stderr.encoding or "utf-8",
                         errors="replace")
    except (OSError, ValueError, AttributeError):
        return None


def _units(total: int, what: str) -> str:
    """` (N to do)` for tasks of many units (clients, runs); nothing for a single stage."""
    return f" ({total}{what})" if total > 1 else ""
