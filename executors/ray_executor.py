"""Shards of clients held by long-lived Ray actors, driven through the executor interface.

The Ray stack is TFF's composing stack with its children in other processes:

    ReferenceResolving
     └─ RayComposing(server = in-process unplaced stack)
          ├─ ShardProxy ──► ShardWorker actor: ReferenceResolving ─ Federating(clients a..b)
          ├─ ShardProxy ──► ShardWorker actor: ...
          └─ ...

`ComposingExecutor` talks to its children only through the `SyncExecutor` interface, handing them
plain values, computation protos, `ClosureSpec`s of child values and intrinsic protos. A
`ShardProxy` implements that interface for a shard living in an actor:

- Values stay in the actor. `value`/`call`/`struct`/`selection` allocate an id on the driver and
  return at once with a handle; the operation is queued. Queued operations travel to the actor in
  one batch when a result is needed (`fetch`), so a whole round of maps and aggregations usually
  costs one or two actor calls per shard, and all shards work at the same time: the composing
  executor submits every shard's batch before waiting for any (`RayComposingExecutor.partials`).
  Only what the composing executor materialises comes back: partial aggregates, or the clients'
  values when the computation returns them.
- Handles release their actor-side value when they become garbage (a release is queued and sent
  with the next batch); closing the stack drops the shard.
- Errors travel like values: an operation that fails in the actor poisons its result, later
  operations on it fail the same way, and `fetch` raises the original tffexec error (with its
  client index and exit code).
- An actor that dies is not a computation error. The proxy keeps the operations sent since its
  last quiet point (no live handle), so it moves the shard to another actor of the pool and
  replays them there, a bounded number of times (`StackConfig.shard_retries`); then it gives up
  with `EngineUnavailable` (exit 7). It never raises federated-language's `RetryableError`, which
  the execution context would retry forever.
- A shard's slice of client columns (`ClientColumns`, one array per leaf) of at least
  `COLUMNS_PUT_BYTES` is `ray.put` too and travels as its object reference: the actor reads the
  arrays from the object store without a copy (read-only views), and a replay after a lost actor
  resends the reference, not the bytes. Smaller slices ride inline with the operations.
- A broadcast value is `ray.put` once per call and the object reference handed to every shard
  (`RayComposingExecutor.share`); computation protos are sent to each actor once and named by
  digest afterwards.

Where the rest lives: the operations, pickling and error encoding both sides share are
`tffexec.executors.ray_wire`; the actor's side (`ShardWorker`) is `tffexec.factories.ray_worker`,
and the pool that starts and replaces actors (and its per-actor `Worker` handles) is
`tffexec.factories.ray_pool`: this module is the driver's side only, and imports neither.

Ray is imported only by the functions that need it (the stack is built only for `--stack ray`).
"""
from __future__ import annotations

import collections
import itertools
import threading
from typing import Any, Optional

import federated_language
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.executors import base
from tffexec.executors import composing_executor
from tffexec.executors import ray_wire
from tffexec.executors.ray_wire import OP_CALL, OP_RELEASE, OP_SELECT, OP_STRUCT, OP_VALUE
from tffexec.formats.columns import ClientColumns

#: Client columns of at least this many bytes go to a shard through Ray's object store.
COLUMNS_PUT_BYTES = 64 * 2**10


class Shard:
    """A contiguous block of clients, its pool slot, and its key in the actors."""

    __slots__ = ("key", "num_clients", "first_client", "slot")

    def __init__(self, key: str, num_clients: int, first_client: int, slot: int):
        self.key, self.num_clients, self.first_client, self.slot = (
            key, num_clients, first_client, slot)

    @property
    def spec(self) -> tuple:
        return self.key, self.num_clients, self.first_client

    def describe(self) -> str:
        last = self.first_client + self.num_clients - 1
        return f"clients {self.first_client}..{last}" if self.num_clients else "no clients"


class RemoteRef:
    """The driver's handle to a value in an actor; queues its release when it becomes garbage."""

    __slots__ = ("id", "_garbage")

    def __init__(self, vid: int, garbage: collections.deque):
        self.id = vid
        self._garbage = garbage

    def __del__(self):
        try:
            self._garbage.append(self.id)  # deque.append is atomic: no lock in a finalizer
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class Pending:
    """A value being fetched from a shard: `result()` waits for it (and recovers lost actors)."""

    __slots__ = ("proxy", "get", "ref", "generation", "handle")

    def __init__(self, proxy: "ShardProxy", get: ray_wire.Get, ref, generation: int, handle):
        self.proxy, self.get, self.ref, self.generation = proxy, get, ref, generation
        self.handle = handle  # keeps the value (and so the operations that made it) alive

    def result(self):
        return self.proxy._wait(self)


def gather(pendings: list[Pending]) -> list:
    """The results of fetches submitted together (all shards work while the first is awaited)."""
    return [p.result() for p in pendings]


#: Operations kept per shard for replaying it on another actor after a loss (see `_flush`).
MAX_REPLAY_LOG = 5_000


class ShardProxy(base.SyncExecutor):
    """A shard in an actor of `pool`, behind the executor interface (see the module docstring)."""

    def __init__(self, pool, shard: Shard, *, retries: int):
        self.pool = pool
        self.shard = shard
        self.num_clients = shard.num_clients
        self._retries = retries
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._get_keys = itertools.count(1)
        self._garbage: collections.deque = collections.deque()
        self._live = 0
        self._buffer: list = []  # operations not yet sent
        self._log: list = []  # operations sent since the last quiet point (replayed on loss)
        self._worker = None  # where this epoch's operations go (the pool's slot, or a stand-in)
        self._moves = 0  # losses recovered in this epoch
        self._generation = 0
        self._replay_ref = None
        self._workers_seen: set = set()
        self._closed = False

    # -- bookkeeping ---------------------------------------------------------------------------
    def _handle(self, vid: int, type_spec) -> base.ExecValue:
        return base.ExecValue(RemoteRef(vid, self._garbage), type_spec, self)

    def _id_of(self, value: base.ExecValue) -> int:
        rep = value.rep
        if not isinstance(rep, RemoteRef) or value.owner is not self:
            raise errors.InternalError(f"a value of another executor was passed to {self.shard.key}")
        return rep.id

    def _queue(self, make_op) -> int:
        with self._lock:
            self._drain_garbage()
            vid = next(self._ids)
            self._live += 1
            self._buffer.append(make_op(vid))
        return vid

    def _drain_garbage(self) -> None:
        released = []
        while True:
            try:
                released.append(self._garbage.popleft())
            except IndexError:
                break
        if released:
            self._live -= len(released)
            self._buffer.append((OP_RELEASE, released))

    # -- the executor interface ----------------------------------------------------------------
    def value(self, value: Any, type_spec=None) -> base.ExecValue:
        if isinstance(value, computation_pb2.Computation):
            if type_spec is None:
                type_spec = federated_language.Type.from_proto(value.type)
            kind, payload, wire_type = "proto", ray_wire.proto_entry(value), None
        elif isinstance(value, base.ClosureSpec):
            type_spec = value.type_signature
            kind = "closure"
            payload = (ray_wire.proto_entry(value.comp),
                       {n: self._id_of(v) for n, v in value.captured.items()})
            wire_type = ray_wire.wire_type(type_spec)
        elif isinstance(value, ray_wire.SharedValue):
            kind, payload, wire_type = "ref", value.ref, ray_wire.wire_type(type_spec)
        elif isinstance(value, ClientColumns) and value.nbytes >= COLUMNS_PUT_BYTES:
            kind, payload, wire_type = "ref", self.pool.put(value), ray_wire.wire_type(type_spec)
        else:
            kind, payload, wire_type = "plain", value, ray_wire.wire_type(type_spec)
        vid = self._queue(lambda v: (OP_VALUE, v, kind, payload, wire_type))
        return self._handle(vid, type_spec)

    def call(self, function: base.ExecValue, argument: Optional[base.ExecValue] = None):
        fn = self._id_of(function)
        arg = self._id_of(argument) if argument is not None else None
        vid = self._queue(lambda v: (OP_CALL, v, fn, arg))
        return self._handle(vid, getattr(function.type_signature, "result", None))

    def struct(self, elements):
        pairs = [(n, self._id_of(v)) for n, v in elements]
        vid = self._queue(lambda v: (OP_STRUCT, v, pairs))
        return self._handle(vid, base.struct_type(elements))

    def selection(self, source: base.ExecValue, index: int):
        src = self._id_of(source)
        vid = self._queue(lambda v: (OP_SELECT, v, src, index))
        try:
            element_type = source.element_type(index)
        except Exception:  # noqa: BLE001 - the actor reports a bad selection
            element_type = None
        return self._handle(vid, element_type)

    def materialize(self, value: base.ExecValue):
        return self.fetch(value).result()

    def fetch(self, value: base.ExecValue) -> Pending:
        """Sends the queued operations and asks for `value`, without waiting for it."""
        vid = self._id_of(value)
        get = ray_wire.Get(vid, next(self._get_keys))
        with self._lock:
            self._buffer.append(get)
            ref = self._flush()
            generation = self._generation
        return Pending(self, get, ref, generation, value)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._workers_seen = list(self._workers_seen), set()
            self._buffer, self._log = [], []
        for worker in workers:
            self.pool.drop_shard(worker, self.shard.key)

    # -- sending, waiting, recovering ----------------------------------------------------------
    def _flush(self):
        """Sends the buffer as one batch (lock held); returns the batch's result reference."""
        self._drain_garbage()
        ops, self._buffer = self._buffer, []
        if self._worker is None:
            self._worker = self.pool.worker(self.shard.slot)
            self._moves = 0
        worker = self._worker
        self._workers_seen.add(worker)
        ref = worker.submit(self.shard.spec, ops)
        if self._live == 0:
            # A quiet point: no handle is alive, so nothing sent so far can be needed again.
            self._log = []
            self._worker = None
        elif self._log is not None:
            self._log.extend(ops)
            if len(self._log) > MAX_REPLAY_LOG:
                # A handle that stays alive for many calls (e.g. across training rounds) would
                # keep every operation since it was made: past the bound, a loss in this epoch is
                # reported (exit 7) instead of replayed, and the driver's memory stays flat.
                self._log = None
        return ref

    def _wait(self, pending: Pending):
        ray = self.pool.ray
        for _ in range(self._retries + 2):  # every loss moves the shard or gives up: bounded
            try:
                results = ray.get(pending.ref)
            except self.pool.lost_errors as e:
                self._recover(pending, e)
                continue
            except ray.exceptions.RayError as e:
                raise errors.EngineUnavailable(
                    f"Ray failed while running {self.shard.describe()}: "
                    f"{ray_wire.first_line(e)}") from None
            ok, payload = results[pending.get.key]
            pending.get.delivered = True
            pending.handle = None
            if ok:
                return payload
            raise ray_wire.decode_error(payload)
        raise self._gave_up(RuntimeError("the shard was lost repeatedly"))

    def _recover(self, pending: Pending, cause: BaseException) -> None:
        """Moves the shard to another actor and replays this epoch's operations there."""
        with self._lock:
            if pending.generation == self._generation:
                lost = self._worker
                self.pool.note_loss(lost)
                if self._moves >= self._retries:
                    raise self._gave_up(cause) from None
                if self._log is None:
                    raise self._gave_up(cause) from None
                self._moves += 1
                self.pool.retries += 1
                self._worker = self.pool.another_worker(lost)
                self._workers_seen.add(self._worker)
                replay = [op for op in self._log
                          if not (isinstance(op, ray_wire.Get) and op.delivered)]
                self._generation += 1
                self._replay_ref = self._worker.submit(self.shard.spec, replay, reset=True)
            pending.ref, pending.generation = self._replay_ref, self._generation

    def _gave_up(self, cause: BaseException) -> errors.EngineUnavailable:
        retried = f"after {self._retries} retr{'y' if self._retries == 1 else 'ies'} on other " \
                  "actors" if self._retries else "(retries disabled)"
        return errors.EngineUnavailable(
            f"a Ray actor died while running {self.shard.describe()} {retried}: "
            f"{ray_wire.first_line(cause)}; check the workers' memory and the cluster "
            "(`ray status`), or use more actors with fewer clients each")


class RayComposingExecutor(composing_executor.ComposingExecutor):
    """The composing executor over shard proxies.

    Two differences from the in-process composing executor, both about moving data: a value
    embedded in every shard (a broadcast) goes into Ray's object store once per call, and the
    children's results are fetched together (every shard's batch is submitted before waiting
    for any), so shards run in parallel.
    """

    def __init__(self, server: base.SyncExecutor, children: list, pool, **kwargs):
        super().__init__(server, children, **kwargs)
        self.pool = pool

    def share(self, value: Any) -> Any:
        return ray_wire.SharedValue(self.pool.put(value))

    def partials(self, uri: str, type_spec, argument) -> list:
        results = self.forward(uri, type_spec, argument)
        return gather([child.executor.fetch(result)
                       for child, result in zip(self.children, results)])

    def materialize(self, value: base.ExecValue):
        rep = value.rep
        if isinstance(rep, composing_executor.ClientsRep) and not rep.all_equal:
            members: list = []
            for part in gather([child.executor.fetch(v)
                                for child, v in zip(self.children, rep.values)]):
                members.extend(part)
            return members
        return super().materialize(value)
