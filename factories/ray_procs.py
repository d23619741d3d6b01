"""The processes of a Ray cluster tffexec started, found and stopped by process id.

Why: `ray.shutdown()` stops the GCS and the raylet it started, but the raylet's workers, agents
and log monitors may linger for seconds after it; and after Ctrl-C, SIGTERM or `--timeout` the
CLI leaves with `os._exit` while a worker thread may still be inside Ray, where calling
`ray.shutdown()` is unsafe (Ray ends the process when it is used after a shutdown). An embedded
cluster is made of this process's descendants (the driver starts the GCS and the raylet, the
raylet starts workers and agents), so the pool records them by pid (with each process's start
time, so a reused pid is never signalled). On close, `stop` ends whatever of them outlived
`ray.shutdown()` (SIGTERM, then SIGKILL after a short grace); on a hard exit, `kill` ends them
all at once. A cluster tffexec joined (`--address`) is never recorded, so never touched.

Reads Linux's /proc (no psutil); elsewhere nothing is recorded and `ray.shutdown()` is all.
"""
from __future__ import annotations

import os
import pathlib
import signal
import time
from typing import Iterable, Optional

_PROC = pathlib.Path("/proc")

#: A process, as (pid, start time in clock ticks since boot): a pid alone may be reused.
Proc = tuple[int, int]


def _stat(pid: int) -> Optional[tuple[int, int, str]]:
    """(parent pid, start time, state) of `pid`, or None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(roots: Iterable[int] = ()) -> set[Proc]:
    """The live processes below `roots` (default: this process), at any depth."""
    stack = list(roots) or [os.getpid()]
    if not _PROC.is_dir():
        return set()
    children: dict[int, list[Proc]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None and info[2] != "Z":
                children.setdefault(info[0], []).append((int(entry.name), info[1]))
    found: set[Proc] = set()
    while stack:
        for proc in children.get(stack.pop(), ()):
            if proc not in found:
                found.add(proc)
                stack.append(proc[0])
    return found


def tree(procs: set[Proc]) -> set[Proc]:
    """`procs` still running and everything they started since (workers a raylet spawned)."""
    live = alive(procs)
    return live | descendants(pid for pid, _ in live) if live else set()


def alive(procs: set[Proc]) -> set[Proc]:
    """Those of `procs` still running (a zombie has ended; a reused pid is another process)."""
    live = set()
    for pid, started in procs:
        info = _stat(pid)
        if info is not None and info[1] == started and info[2] != "Z":
            live.add((pid, started))
    return live


def kill(procs: set[Proc]) -> None:
    """SIGKILL to each of `procs` still running, without waiting (for a process about to
    `os._exit`: the kernel ends them within milliseconds)."""
    for pid, _ in alive(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def stop(procs: set[Proc], grace_s: float = 0.5) -> set[Proc]:
    """SIGTERM to each of `procs` still running, SIGKILL to those left after `grace_s`; returns
    those still running after that (normally none)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.5)):
        live = alive(procs)
        for pid, _ in live:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait_s
        while live and time.monotonic() < deadline:
            time.sleep(0.02)
            live = alive(live)
        if not live:
            return set()
    return alive(procs)
