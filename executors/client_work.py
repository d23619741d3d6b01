"""The one seam through which the federating executor applies a function to every client.

The federating executor never loops over clients itself: it asks a `ClientWork` to call one
function on N arguments. The local stack's implementation is a plain loop; the threaded stack
runs chunks on a thread pool, and a batched implementation can replace the loop by one
vectorised TensorFlow call without touching the intrinsics.
"""
from __future__ import annotations

from typing import Optional, Protocol, Sequence

from tffexec.executors import base


class ClientWork(Protocol):
    """Runs `executor.call(function, argument)` for every argument, preserving order."""

    def map(self, executor: base.SyncExecutor, function: base.ExecValue,
            arguments: Sequence[Optional[base.ExecValue]]) -> list[base.ExecValue]:
        ...


class SequentialClientWork:
    """One client after another on the calling thread (the local stack)."""

    def map(self, executor, function, arguments):
        return [executor.call(function, argument) for argument in arguments]
