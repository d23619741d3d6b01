"""Bounds calls of graphs that dequeue from TensorFlow's in-memory queues.

A `QueueDequeueV2` on an empty, open queue waits for an enqueue that may never come, and the
dequeue ops' own `timeout_ms` attribute is not implemented by TensorFlow (it refuses any value
but -1). So a call of a graph holding a dequeue op runs under a `CancellationManager` and a timer
cancels it after `Policy.max_queue_wait` seconds: TensorFlow's queue kernels register with the
call's cancellation manager, so the blocked dequeue returns `CancelledError` and the call fails
with one line (exit 6) instead of hanging. Graphs without dequeue ops are called as before.

TensorFlow keeps the active cancellation manager in a process-wide global that its function call
reads when the call starts, so bounded calls take `_CANCELLATION_LOCK`: two of them never overlap
(one would clear the other's manager). Other calls that start meanwhile may see the manager; it is
only cancelled when a queue call overruns, which fails the run anyway.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable, TypeVar

from tffexec import errors
from tffexec import tf_runtime
from tffexec.checks import allowlist

_CANCELLATION_LOCK = threading.Lock()
T = TypeVar("T")


def has_dequeue(nodes: Iterable) -> bool:
    """Whether any of the NodeDefs is a blocking queue dequeue."""
    return any(node.op in allowlist.QUEUE_DEQUEUE_OPS for node in nodes)


def call_bounded(call: Callable[[], T], seconds: float) -> T:
    """Runs `call()` (one TensorFlow function call) and cancels it after `seconds`.

    Raises `ExecutionError` naming the bound when the timer fired before the call returned.
    """
    from tensorflow.python.eager import cancellation  # noqa: PLC0415 - TF loads lazily

    tf = tf_runtime.tensorflow()
    manager = cancellation.CancellationManager()
    fired = threading.Event()

    def cancel() -> None:
        fired.set()
        manager.start_cancel()

    with _CANCELLATION_LOCK:
        timer = threading.Timer(seconds, cancel)
        timer.daemon = True
        timer.start()
        try:
            with cancellation.CancellationManagerContext(manager):
                return call()
        except tf.errors.CancelledError:
            if not fired.is_set():
                raise
            raise errors.ExecutionError(
                f"a TensorFlow queue dequeue waited past --max-queue-wait {seconds:g} s (the "
                "queue stayed empty; raise --max-queue-wait if the graph is only slow)") from None
        finally:
            timer.cancel()
