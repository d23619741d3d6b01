"""The one seam through which the federating executor does per-client work.

The federating executor never loops over clients itself: it asks a `ClientWork` to call one
function on N arguments (`map`) or to fold N client values into an accumulator (`fold`). With one
client thread (`--threads 1`) a map is a plain loop; otherwise its contiguous chunks of clients
run on a thread pool (by default on every in-process stack of a multi-core machine), except where
the calls' results depend on their order (`client_order`). A fold stays in client order on every
stack (see `ClientWork.fold`). A batched implementation can replace the loop by one vectorised
TensorFlow call without touching the intrinsics.

Errors. A failure in one client's work names the client (its global index, so composed stacks
report the same index as a flat one) and the intrinsic, and keeps its class (and so its exit
code): a TensorFlow failure stays an `ExecutionError` (exit 6). Exceptions that are not tffexec
errors are bugs and propagate unchanged. A failing task never leaves the caller waiting: the
threaded implementation waits for every task of the call, then raises the first client's error.
"""
from __future__ import annotations

import abc
import concurrent.futures
import functools
import itertools
import logging
import math
import os
import threading
import time
from typing import Callable, Optional, Sequence

from tffexec import errors
from tffexec import tf_runtime
from tffexec.executors import activity
from tffexec.executors import base
from tffexec.executors import batch as batch_lib
from tffexec.executors import batch_lambda
from tffexec.executors import client_order
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_batch
from tffexec.executors import tf_vectorised

_task_keys = itertools.count(1)
_LOG = logging.getLogger("tffexec")


class ClientWork(abc.ABC):
    """Per-client work of one federating executor, preserving client order in results.

    Attributes:
      batching: whether `map_batched`/`fold_batched` can ever succeed; the federating executor
        then holds CLIENTS values as columns (`Batch`es) where it can.
      parallel: whether `run_tasks` runs its tasks in parallel.
      threads: how many tasks run at once.
    """

    batching: bool = False
    parallel: bool = False
    threads: int = 1

    @abc.abstractmethod
    def map(self, executor: base.SyncExecutor, function: base.ExecValue,
            arguments: Sequence[Optional[base.ExecValue]], *, intrinsic: str,
            first_client: int = 0) -> list[base.ExecValue]:
        """`[executor.call(function, a) for a in arguments]`; `arguments[i]` is client
        `first_client + i`'s value (None calls a no-argument function)."""

    def fold(self, executor: base.SyncExecutor, zero: base.ExecValue,
             accumulate: base.ExecValue, members: Sequence[base.ExecValue], *, intrinsic: str,
             first_client: int = 0) -> base.ExecValue:
        """`accumulate` folded over the members from `zero`, one client after another in client
        order, on the calling thread, on every stack.

        TFF's runtime folds `federated_aggregate` in client order and never calls `merge`, and a
        `merge` need not be associative with `accumulate` (a string join shows where partial
        folds were merged), so no client work splits the fold: the threaded stack's parallelism
        is in the maps that compute the members. Only the layers that must merge (the composing
        stack's children, Ray's shards) call `merge`, on the partial results of whole children.
        """
        accumulator = [zero]

        def step(member: base.ExecValue) -> None:
            accumulator[0] = executor.call(
                accumulate, executor.struct([(None, accumulator[0]), (None, member)]))

        in_client_order(step, members, intrinsic=intrinsic, first_client=first_client)
        return accumulator[0]

    def map_batched(self, function: base.ExecValue, batch: batch_lib.Batch, result_type, *,
                    intrinsic: str) -> Optional[batch_lib.Batch]:
        """`function` applied to every client of `batch` at once, as a Batch of `result_type`;
        None when it cannot be (the caller then uses `map`)."""
        return None

    def map_members_batched(self, executor: base.SyncExecutor, function: base.ExecValue,
                            arguments: Sequence[Optional[base.ExecValue]], *, intrinsic: str,
                            first_client: int = 0) -> Optional[batch_lib.Batch]:
        """`map` over members that cannot be columns (e.g. datasets), its results as a Batch
        where it can do better than `map`; None when it cannot (nothing has run then)."""
        return None

    def fold_batched(self, zero_leaves: list, accumulate: base.ExecValue,
                     batch: batch_lib.Batch, *, intrinsic: str) -> Optional[list]:
        """The in-order fold of `accumulate` over the clients of `batch` from `zero_leaves`, as
        the accumulator's leaves; None when it cannot be (the caller then uses `fold`)."""
        return None

    def run_tasks(self, tasks: list[Callable[[], object]]) -> list:
        """Runs independent tasks (in parallel where `parallel`); their results in order."""
        return [task() for task in tasks]

    def close(self) -> None:  # noqa: B027 - most implementations hold nothing
        """Releases threads or other resources."""


def client_error(error: errors.TffexecError, client: int, intrinsic: str) -> errors.TffexecError:
    """`error` with the client index and intrinsic prepended to its message (same class)."""
    if error.client is None:
        error.client = client
        error.message = f"client {client} in {intrinsic}: {error.message}"
        error.args = (error.one_line(),)
    return error


def in_client_order(step: Callable[[object], None], items: Sequence, *, intrinsic: str,
                    first_client: int = 0) -> None:
    """Calls `step` on each client's item, one after another on the calling thread, reporting
    progress; a failing client's error names it (see `client_error`)."""
    total = len(items)
    key = next(_task_keys)
    activity.report(intrinsic, 0, total, key)
    for i, item in enumerate(items):
        try:
            with activity.client_call():
                step(item)
        except errors.TffexecError as e:
            raise client_error(e, first_client + i, intrinsic) from None
        if activity.listening() and (i + 1) % 64 == 0:
            activity.report(intrinsic, i + 1, total, key)
    activity.report(intrinsic, total, total, key)


def map_in_order(executor: base.SyncExecutor, function: base.ExecValue,
                 arguments: Sequence[Optional[base.ExecValue]], *, intrinsic: str,
                 first_client: int = 0) -> list[base.ExecValue]:
    """`ClientWork.map` one client after another on the calling thread."""
    results: list[base.ExecValue] = []
    in_client_order(lambda argument: results.append(executor.call(function, argument)),
                    arguments, intrinsic=intrinsic, first_client=first_client)
    return results


class SequentialClientWork(ClientWork):
    """One client after another on the calling thread (`--threads 1`, or a one-core machine)."""

    def map(self, executor, function, arguments, *, intrinsic, first_client=0):
        return map_in_order(executor, function, arguments, intrinsic=intrinsic,
                            first_client=first_client)


class ThreadedClientWork(ClientWork):
    """A map's contiguous chunks of clients run as tasks on a pool of `threads` threads (a fold
    stays the in-order pass of `ClientWork.fold`, as TFF's).

    TensorFlow releases the GIL while its kernels run, so chunks of clients overlap for real.
    `clients_per_task` (the CLI's `--clients-per-thread`) defaults to the clients divided evenly
    over the threads: one task per thread, the least scheduling overhead.

    A map whose results would depend on the order of its calls (a stateful random op continuing
    one stream, a print: see `client_order`) runs in client order on the calling thread instead,
    so `--seed` reproduces a run whatever the thread count.

    `parallel_tasks` says whether `run_tasks` (the chunks of batched calls) also uses the pool:
    the threaded stack's choice. The local stack keeps batched calls one after another, each with
    all of TensorFlow's intra-op threads, and runs only per-client maps on the pool.

    Per-client functions are unplaced (they contain no federated intrinsics), so a task never
    waits for another task of the pool: tasks cannot deadlock, however many runs share the pool.
    """

    def __init__(self, threads: Optional[int] = None, clients_per_task: Optional[int] = None,
                 *, parallel_tasks: bool = True):
        self.threads = threads or tf_runtime.cores()
        self.clients_per_task = clients_per_task
        self.parallel = parallel_tasks
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        self._told: set = set()  # (intrinsic, op) already said under -v

    def _executor_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.threads, thread_name_prefix="tffexec-client")
        return self._pool

    def _chunks(self, total: int) -> list[range]:
        size = self.clients_per_task or max(1, math.ceil(total / self.threads))
        return [range(start, min(start + size, total)) for start in range(0, total, size)]

    def run_tasks(self, tasks: list[Callable[[], object]]) -> list:
        """Runs independent tasks (on the pool, in parallel, where `parallel`); their results
        in order."""
        return self._run(tasks) if self.parallel else super().run_tasks(tasks)

    def _run(self, tasks: list[Callable[[], object]]) -> list:
        """Runs the tasks on the pool (the last one on the calling thread) and waits for all."""
        if len(tasks) == 1:
            return [tasks[0]()]
        pool = self._executor_pool()
        futures = [pool.submit(task) for task in tasks[:-1]]
        results: list = []
        first_error: Optional[BaseException] = None
        try:
            last = tasks[-1]()
        except BaseException as e:  # noqa: BLE001 - re-raised below, after the pool's tasks end
            last, first_error = None, e
        # Wait for every task (never leave one running against the caller's values), then raise
        # the error of the lowest-numbered failing chunk, as a sequential loop would.
        errors_by_task: list[Optional[BaseException]] = []
        for future in futures:
            try:
                results.append(future.result())
                errors_by_task.append(None)
            except BaseException as e:  # noqa: BLE001
                results.append(None)
                errors_by_task.append(e)
        errors_by_task.append(first_error)
        results.append(last)
        for error in errors_by_task:
            if error is not None:
                raise error
        return results

    def _in_order(self, function: base.ExecValue, total: int, intrinsic: str) -> bool:
        """Whether this map runs in client order on the calling thread (one client or thread,
        or calls whose results depend on their order: `client_order`)."""
        if total <= 1 or self.threads <= 1:
            return True
        why = client_order.reason(function)
        if why is None:
            return False
        if (intrinsic, why) not in self._told:
            self._told.add((intrinsic, why))
            _LOG.info("client threads: a %s runs its clients in client order on one thread: "
                      "its function holds %s", intrinsic, why)
        return True

    def map(self, executor, function, arguments, *, intrinsic, first_client=0):
        total = len(arguments)
        if self._in_order(function, total, intrinsic):
            return map_in_order(executor, function, arguments, intrinsic=intrinsic,
                                first_client=first_client)
        key = next(_task_keys)
        done = [0]
        done_lock = threading.Lock()
        activity.report(intrinsic, 0, total, key)

        def task(chunk: range):
            def run():
                out = []
                with activity.client_call():
                    for i in chunk:
                        try:
                            out.append(executor.call(function, arguments[i]))
                        except errors.TffexecError as e:
                            raise client_error(e, first_client + i, intrinsic) from None
                if activity.listening():
                    with done_lock:
                        done[0] += len(chunk)
                        activity.report(intrinsic, done[0], total, key)
                return out
            return run

        parts = self._run([task(chunk) for chunk in self._chunks(total)])
        activity.report(intrinsic, total, total, key)
        return [value for part in parts for value in part]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class BatchingClientWork(ClientWork):
    """Client work that runs `tensorflow` computations once for all clients where it can.

    `map_batched`/`fold_batched` take the clients' values as a `Batch` (columns) and return the
    result as a Batch (or an accumulator), or None when the function cannot be batched (a lambda,
    a stateful or non-vectorisable graph, a TensorFlow error that the per-client path must
    attribute to a client); the federating executor then takes the per-client path, which is
    `inner` (sequential or threaded). `--no-batch` builds stacks without this layer.

    `leaf` is the stack's TensorFlow executor, handed over by the stack builder: batched calls
    run there, and only functions of that leaf (or lambdas over them) are batched.
    """

    batching = True

    #: Clients in the first vectorised call of a function (nothing is known of its cost yet):
    #: small enough that a chunk's intermediates stay in cache (a 1 000-client batch of 64x64
    #: matmuls ran 2x slower than per-client calls); later chunks are sized from its time.
    CHUNK = 128
    #: At most this many bytes of client inputs in one call (the stacked leaves' rows).
    CHUNK_BYTES = 128 * 2**20
    #: A chunk is grown until one call takes about this long: cheap functions then run all
    #: their clients in one call (per-call overhead ~0.1-0.4 ms vanishes), expensive ones keep
    #: cache-sized chunks.
    TARGET_CHUNK_S = 0.05

    def __init__(self, inner: ClientWork, leaf: tensorflow_executor.TensorFlowExecutor,
                 chunk: Optional[int] = None):
        self.inner = inner
        self.leaf = leaf
        self.parallel = inner.parallel
        self.chunk = chunk or int(os.environ.get("TFFEXEC_BATCH_CHUNK", 0)) or self.CHUNK
        self._chunk_sizes: dict = {}  # function -> chunk size that proved worth it
        self.functions = tf_batch.BatchedFunctions(leaf)
        self._lambdas = batch_lambda.LambdaBatcher(self.functions, leaf)
        self.training = tf_vectorised.VectorisedTraining(leaf) if tf_vectorised.enabled() else None

    def map(self, executor, function, arguments, *, intrinsic, first_client=0):
        return self.inner.map(executor, function, arguments, intrinsic=intrinsic,
                              first_client=first_client)

    def map_members_batched(self, executor, function, arguments, *, intrinsic,
                            first_client=0) -> Optional[batch_lib.Batch]:
        """Clients that train over datasets of one structure, one vectorised call per bucket
        (`tf_vectorised`), the others per client; the results as columns, or None."""
        if self.training is None:
            return None
        return self.training.map(
            executor, self.functions.function_of(function), arguments,
            lambda start, stop: self.inner.map(executor, function, arguments[start:stop],
                                               intrinsic=intrinsic,
                                               first_client=first_client + start))

    def run_tasks(self, tasks: list[Callable[[], object]]) -> list:
        return self.inner.run_tasks(tasks)

    def map_batched(self, function: base.ExecValue, batch, result_type, *, intrinsic: str):
        leaf_function = self.functions.function_of(function)
        if leaf_function is not None:
            apply = functools.partial(self.functions.map, leaf_function)
            chunk_key = leaf_function.graph_function
        else:
            closure = batch_lambda.closure_of(function)
            if closure is None:
                return None
            apply = functools.partial(self._lambdas.map, *closure)
            chunk_key = id(closure[1].comp)  # protos are unhashable; a stale id only costs speed
        key = next(_task_keys)
        activity.report(intrinsic, 0, batch.count, key)
        cap = self._byte_cap(batch)
        size = min(cap, self._chunk_sizes.get(chunk_key, self.chunk))
        if not any(batch.stacked) or batch.count <= size:
            began, traces = time.perf_counter(), self.functions.traces
            result = apply(batch, result_type)
            if result is not None and any(batch.stacked) and traces == self.functions.traces:
                self._learn(chunk_key, batch.count, time.perf_counter() - began, cap)
        else:
            parts = (self._chunks_in_parallel(apply, batch, result_type, size, chunk_key, cap)
                     if self.inner.parallel else
                     self._chunks_in_turn(apply, batch, result_type, size, chunk_key, cap))
            result = None if parts is None else batch_lib.Batch.concat(parts)
        if result is not None:
            activity.count_path(activity.BATCHED, batch.count)
            activity.report(intrinsic, batch.count, batch.count, key)
        return result

    def _byte_cap(self, batch) -> int:
        """The most clients of `batch` whose stacked inputs fit in CHUNK_BYTES."""
        per_client = sum(leaf.nbytes // max(1, batch.count)
                         for leaf, stacked in zip(batch.leaves, batch.stacked) if stacked)
        return max(1, self.CHUNK_BYTES // max(1, per_client))

    def _learn(self, chunk_key, clients: int, seconds: float, cap: int) -> int:
        """Records what a call of `clients` clients took; the size for the next chunk.

        Sized by time within a byte cap, not by doubling a count: a full chunk that took less
        than half of TARGET_CHUNK_S makes the next one as large as TARGET_CHUNK_S allows at its
        time per client, so a cheap map reaches one call for all its clients after a call or
        two, and an expensive one keeps cache-sized chunks. Sizes only grow (timings on a busy
        machine are noisy; a size that once ran fast enough is kept).
        """
        size = self._chunk_sizes.get(chunk_key, self.chunk)
        if clients >= size and seconds < self.TARGET_CHUNK_S / 2:
            grown = min(cap, int(self.TARGET_CHUNK_S * clients / max(seconds, 1e-9)))
            if grown > size:
                self._chunk_sizes[chunk_key] = grown
                return grown
        return min(size, cap)

    def _chunks_in_turn(self, apply, batch, result_type, size, chunk_key, cap):
        parts, start = [], 0
        while start < batch.count:
            part = batch.slice(start, min(start + size, batch.count))
            began, traces = time.perf_counter(), self.functions.traces
            result = apply(part, result_type)
            if result is None:
                return None
            parts.append(result)
            start += part.count
            if traces == self.functions.traces:  # tracing time says nothing of the cost
                size = self._learn(chunk_key, part.count, time.perf_counter() - began, cap)
        return parts

    def _chunks_in_parallel(self, apply, batch, result_type, size, chunk_key, cap):
        chunks = [batch.slice(start, min(start + size, batch.count))
                  for start in range(0, batch.count, size)]
        began, traces = time.perf_counter(), self.functions.traces
        parts = self.inner.run_tasks([functools.partial(apply, chunk, result_type)
                                      for chunk in chunks])
        # The chunks ran side by side: one chunk took about the wall time over the rounds of
        # chunks the threads went through.
        rounds = -(-len(chunks) // max(1, self.inner.threads))
        if traces == self.functions.traces:
            self._learn(chunk_key, size, (time.perf_counter() - began) / max(1, rounds), cap)
        return None if any(p is None for p in parts) else parts

    def fold_batched(self, zero_leaves: list, accumulate: base.ExecValue, batch, *,
                     intrinsic: str):
        leaf_function = self.functions.function_of(accumulate)
        if leaf_function is None:
            return None
        key = next(_task_keys)
        activity.report(intrinsic, 0, batch.count, key)
        result = self.functions.fold(leaf_function, zero_leaves, batch)
        if result is not None:
            activity.count_path(activity.BATCHED, batch.count)
            activity.report(intrinsic, batch.count, batch.count, key)
        return result

    def close(self) -> None:
        self.inner.close()
