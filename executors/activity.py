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


# -- client graph paths ----------------------------------------------------------------------
#: The ways a client's graph can run (issue 16): several clients in one vectorised call, the
#: graph's dataset reduction compiled as a loop over tensors, a per-client call that feeds a
#: `tf.data` dataset, and a plain per-client call; clients that train together (their datasets
#: reduced in one call vectorised across clients, `tf_vectorised`).
BATCHED = "batched bucket"
VECTORISED = "vectorised bucket"
TENSOR_LOOP = "tensor loop"
TF_DATA = "tf.data"
PER_CLIENT = "per client"
PATHS = (BATCHED, VECTORISED, TENSOR_LOOP, TF_DATA, PER_CLIENT)

_path_lock = threading.Lock()
_path_counts: dict[str, int] = dict.fromkeys(PATHS, 0)
_client_scope = threading.local()


def count_path(path: str, clients: int = 1) -> None:
    """Records that `clients` client graph calls took `path` (one of `PATHS`)."""
    with _path_lock:
        _path_counts[path] = _path_counts.get(path, 0) + clients


def path_counts() -> dict[str, int]:
    """Client graph calls per path since the process started (a snapshot)."""
    with _path_lock:
        return dict(_path_counts)


def paths_since(before: dict[str, int]) -> dict[str, int]:
    """Calls per path since the `path_counts()` snapshot `before`, paths with none left out."""
    now = path_counts()
    return {path: count - before.get(path, 0) for path, count in now.items()
            if count - before.get(path, 0)}


def describe_paths(counts: dict[str, int]) -> str:
    """`counts` as one line, e.g. "batched bucket 100, tf.data 10" ("none" when empty)."""
    return ", ".join(f"{path} {count}" for path, count in counts.items() if count) or "none"


def in_client_call() -> bool:
    """Whether this thread is running one client's work (see `client_call`)."""
    return getattr(_client_scope, "depth", 0) > 0


@contextlib.contextmanager
def client_call() -> Iterator[None]:
    """Marks the block as one client's work on this thread: the graphs it calls count as client
    graph calls (`tf_function` counts them by path)."""
    _client_scope.depth = getattr(_client_scope, "depth", 0) + 1
    try:
        yield
    finally:
        _client_scope.depth -= 1
