"""Progress and activity reports from the executors, for whoever listens (the CLI's progress bar,
`--verbose` logging). Executors never print: they call `report`, which costs one list check when
nobody listens.

Listeners are process-wide (client work runs on pool threads, where context variables set by the
caller are not visible) and are called from whichever thread does the work, so they must be
thread-safe.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Callable, Iterator

_lock = threading.Lock()
_listeners: list[Callable[["Event"], None]] = []


@dataclasses.dataclass(frozen=True)
class Event:
    """`done` of `total` units of `task` finished (e.g. 250 of 1000 clients of federated_map).

    `done == 0` announces a task; `done == total` ends it. `key` tells concurrent tasks of the same
    name apart.
    """

    task: str
    done: int
    total: int
    key: int = 0


def listening() -> bool:
    return bool(_listeners)


def report(task: str, done: int, total: int, key: int = 0) -> None:
    if not _listeners:
        return
    event = Event(task, done, total, key)
    for listener in list(_listeners):
        listener(event)


@contextlib.contextmanager
def listen(listener: Callable[[Event], None]) -> Iterator[None]:
    """Calls `listener` with every `Event` while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


# -- execution paths -------------------------------------------------------------------------------
_paths: dict[str, int] = {}


def count_path(path: str) -> None:
    """Counts one client-graph call that took `path` (e.g. "tensor loop", "tf.data")."""
    with _lock:
        _paths[path] = _paths.get(path, 0) + 1


def path_counts() -> dict[str, int]:
    """Calls per path since the process started (or the last `reset_paths`)."""
    with _lock:
        return dict(_paths)


def reset_paths() -> None:
    with _lock:
        _paths.clear()
