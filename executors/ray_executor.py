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
- A broadcast value is `ray.put` once per call and the object reference handed to every shard
  (`RayComposingExecutor.share`); computation protos are sent to each actor once and named by
  digest afterwards.

Ray is imported only by the functions that need it (the stack is built only for `--stack ray`).
"""
from __future__ import annotations

import collections
import copyreg
import hashlib
import itertools
import os
import threading
from typing import Any, Optional

import federated_language
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.executors import base
from tffexec.executors import composing_executor

# Operation codes of the wire protocol (tuples: cheap to build and to pickle).
OP_VALUE, OP_CALL, OP_STRUCT, OP_SELECT, OP_RELEASE, OP_GET = range(6)


# -- values across the process boundary ------------------------------------------------------------
def _make_struct(elements):
    return structure.Struct(elements)


def _reduce_struct(value):
    """federated-language's `Struct` does not survive pickling (its __setstate__ recurses)."""
    return _make_struct, (structure.to_elements(value),)


def _make_sequence(element_type, graph_def, elements):
    from tffexec.formats import sequences  # noqa: PLC0415

    return sequences.SequenceValue(element_type, graph_def=graph_def, elements=elements)


def _reduce_sequence(value):
    """A sequence travels as its element type and graph or elements, never as a live dataset;
    the receiving stack checks its graph under its own policy again."""
    graph_def = getattr(value, "_graph_def", None)
    elements = getattr(value, "_elements", None)
    if graph_def is None and elements is None:
        elements = value.elements()
    return _make_sequence, (value.element_type, graph_def, elements)


def register_pickling() -> None:
    """Makes tffexec's value types picklable (driver and actors both call this)."""
    copyreg.pickle(structure.Struct, _reduce_struct)
    from tffexec.formats import sequences  # noqa: PLC0415

    copyreg.pickle(sequences.SequenceValue, _reduce_sequence)


register_pickling()


class _Interned:
    """Bounded memo of `id(obj) -> (obj, key)`; holding `obj` keeps the id from being reused."""

    def __init__(self, make, limit: int = 4096):
        self._make = make
        self._limit = limit
        self._memo: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, obj):
        hit = self._memo.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        key = self._make(obj)
        with self._lock:
            if len(self._memo) >= self._limit:
                self._memo.clear()
            self._memo[id(obj)] = (obj, key)
        return key


class ProtoEntry:
    """A computation proto and its content digest: sent once per actor, then named by digest."""

    __slots__ = ("digest", "proto", "_bytes")

    def __init__(self, proto: computation_pb2.Computation):
        self.proto = proto
        self._bytes = proto.SerializeToString(deterministic=True)
        self.digest = hashlib.sha256(self._bytes).digest()

    @property
    def data(self) -> bytes:
        return self._bytes


_proto_entry = _Interned(ProtoEntry, limit=1024)
_type_bytes = _Interned(lambda t: t.to_proto().SerializeToString(deterministic=True))


def _wire_type(type_spec) -> Optional[bytes]:
    return None if type_spec is None else _type_bytes(type_spec)


class SharedValue:
    """A plain value already in Ray's object store, to be embedded in several shards."""

    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref


def encode_error(error: BaseException) -> tuple:
    if isinstance(error, errors.TffexecError):
        return (type(error).__name__, error.message, error.file, error.path,
                getattr(error, "client", None))
    return ("InternalError", f"{type(error).__name__}: {error} (in a Ray worker)", None, None, None)


def decode_error(encoded: tuple) -> errors.TffexecError:
    name, message, file, path, client = encoded
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.TffexecError)):
        cls = errors.InternalError
    error = cls(message, file=file, path=path)
    if client is not None:
        error.client = client
    return error


# -- the actor -------------------------------------------------------------------------------------
class _Failed:
    """An actor-side value whose operation failed: using it fails the same way."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


class _Poisoned(Exception):
    def __init__(self, failed: _Failed):
        super().__init__()
        self.failed = failed


class _Shard:
    """One shard's stack and the values the driver holds handles to."""

    def __init__(self, stack: base.SyncExecutor):
        self.stack = stack
        self.values: dict[int, Any] = {}

    def get(self, vid: int):
        value = self.values.get(vid)
        if value is None:
            raise errors.InternalError(f"Ray worker: unknown value {vid} (released too early?)")
        if isinstance(value, _Failed):
            raise _Poisoned(value)
        return value


class ShardWorker:
    """The body of a Ray actor: local (or threaded) tffexec stacks for any number of shards.

    One actor lives as long as the factory's pool and serves every client count: importing
    TensorFlow and each graph happens once per actor, not once per call or per client. All shards
    of the actor share one unplaced stack (one TensorFlow executor and its graph cache). The
    actor runs one batch at a time (Ray keeps a caller's calls in submission order), so the
    operations of a shard apply in the order the driver queued them.
    """

    def __init__(self, config, intra_op_threads: Optional[int]):
        """`config` describes the in-process stack each shard gets (local, or threaded when
        --threads is given); `intra_op_threads` sizes TensorFlow's pool to the actor's CPUs."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        register_pickling()
        from tffexec import tf_runtime  # noqa: PLC0415
        from tffexec.factories import stacks  # noqa: PLC0415

        self._config = config
        if intra_op_threads is not None:
            tf_runtime.request_threads(intra_op_threads, None)
        leaf = stacks.leaf_executor(config)
        self._unplaced = stacks.unplaced_stack(config, leaf)
        self._work = stacks.client_work(config, leaf)
        self._shards: dict[str, _Shard] = {}
        self._protos: dict[bytes, computation_pb2.Computation] = {}
        self._types: dict[bytes, Any] = {}

    def ready(self) -> dict:
        """Imports TensorFlow (once per actor) and says where the actor runs."""
        from tffexec import tf_runtime  # noqa: PLC0415

        tf_runtime.tensorflow()
        if self._config.device is not None:
            tf_runtime.check_device(self._config.device)
        return {"pid": os.getpid()}

    def stats(self) -> dict:
        return {"pid": os.getpid(), "shards": len(self._shards),
                "values": sum(len(s.values) for s in self._shards.values()),
                "protos": len(self._protos)}

    def drop_shard(self, key: str) -> None:
        self._shards.pop(key, None)

    def run_batch(self, spec: tuple, ops: list, reset: bool = False) -> dict:
        """Applies `ops` to shard `spec` = (key, num_clients, first_client); returns the
        results of its `get` operations as {get key: (True, value) | (False, error)}."""
        key, num_clients, first_client = spec
        shard = None if reset else self._shards.get(key)
        if shard is None:
            shard = self._shards[key] = _Shard(self._shard_stack(num_clients, first_client))
        for op in ops:  # register every proto first: a failing op must not lose one
            if op[0] == OP_VALUE and op[2] in ("proto", "closure"):
                self._proto(op[3] if op[2] == "proto" else op[3][0])
        results = {}
        for op in ops:
            code = op[0]
            if code == OP_GET:
                results[op[2]] = self._get(shard, op[1])
            elif code == OP_RELEASE:
                for vid in op[1]:
                    shard.values.pop(vid, None)
            else:
                try:
                    result = self._apply(shard, op)
                except _Poisoned as e:
                    result = e.failed
                except Exception as e:  # noqa: BLE001 - travels to the driver as a value
                    result = _Failed(e)
                shard.values[op[1]] = result
        return results

    def _shard_stack(self, num_clients: int, first_client: int) -> base.SyncExecutor:
        from tffexec.executors import federating_executor  # noqa: PLC0415
        from tffexec.executors import reference_resolving_executor as rre  # noqa: PLC0415

        return rre.ReferenceResolvingExecutor(federating_executor.FederatingExecutor(
            self._unplaced, num_clients, client_work=self._work, first_client=first_client,
            owns_child=False))

    def _type(self, data: Optional[bytes]):
        if data is None:
            return None
        hit = self._types.get(data)
        if hit is None:
            from federated_language.proto import computation_pb2 as pb  # noqa: PLC0415

            hit = self._types[data] = federated_language.Type.from_proto(pb.Type.FromString(data))
        return hit

    def _proto(self, wire: tuple) -> computation_pb2.Computation:
        digest, data = wire
        proto = self._protos.get(digest)
        if proto is None:
            if data is None:
                raise errors.InternalError("Ray worker: a computation was named before it was sent")
            # One proto object per digest: the stacks' caches are keyed by proto identity.
            proto = self._protos[digest] = computation_pb2.Computation.FromString(data)
        return proto

    def _apply(self, shard: _Shard, op: tuple):
        code, stack = op[0], shard.stack
        if code == OP_VALUE:
            _, _, kind, payload, type_data = op
            type_spec = self._type(type_data)
            if kind == "plain":
                return stack.value(payload, type_spec)
            if kind == "ref":
                import ray  # noqa: PLC0415

                return stack.value(ray.get(payload), type_spec)
            if kind == "proto":
                return stack.value(self._proto(payload), type_spec)
            proto_wire, captured = payload  # "closure"
            spec = base.ClosureSpec(self._proto(proto_wire),
                                    {n: shard.get(v) for n, v in captured.items()}, type_spec)
            return stack.value(spec, type_spec)
        if code == OP_CALL:
            _, _, fn, arg = op
            return stack.call(shard.get(fn), shard.get(arg) if arg is not None else None)
        if code == OP_STRUCT:
            return stack.struct([(n, shard.get(v)) for n, v in op[2]])
        if code == OP_SELECT:
            return stack.selection(shard.get(op[2]), op[3])
        raise errors.InternalError(f"Ray worker: unknown operation {code}")

    def _get(self, shard: _Shard, vid: int) -> tuple:
        try:
            return True, shard.stack.materialize(shard.get(vid))
        except _Poisoned as e:
            return False, encode_error(e.failed.error)
        except Exception as e:  # noqa: BLE001 - travels to the driver as a value
            return False, encode_error(e)


# -- the driver's side -----------------------------------------------------------------------------
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


class Worker:
    """One actor of the pool, as the driver sees it: the handle, and the computation protos this
    actor already holds (the rest of the protocol is stateless on this side)."""

    def __init__(self, slot: int, actor, ready_ref):
        self.slot = slot
        self.actor = actor
        self.ready_ref = ready_ref
        self.started = False  # ready() returned: TensorFlow is imported, the actor answers
        self.dead = False
        self._known: set[bytes] = set()
        self._lock = threading.Lock()

    def submit(self, spec: tuple, ops: list, reset: bool = False):
        """Sends one batch; returns the reference to its results. Encoding and submission
        happen under one lock, so a proto is named by digest only after the batch that carries
        its bytes was submitted (the actor runs batches in submission order)."""
        with self._lock:
            return self.actor.run_batch.remote(spec, [self._encode(op) for op in ops], reset)

    def _encode(self, op):
        if isinstance(op, _Get):
            return OP_GET, op.vid, op.key
        if op[0] == OP_VALUE and op[2] == "proto":
            return OP_VALUE, op[1], "proto", self._proto(op[3]), op[4]
        if op[0] == OP_VALUE and op[2] == "closure":
            entry, captured = op[3]
            return OP_VALUE, op[1], "closure", (self._proto(entry), captured), op[4]
        return op

    def _proto(self, entry: ProtoEntry) -> tuple:
        if entry.digest in self._known:
            return entry.digest, None
        self._known.add(entry.digest)
        return entry.digest, entry.data


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


class _Get:
    __slots__ = ("vid", "key", "delivered")

    def __init__(self, vid: int, key: int):
        self.vid, self.key, self.delivered = vid, key, False


class Pending:
    """A value being fetched from a shard: `result()` waits for it (and recovers lost actors)."""

    __slots__ = ("proxy", "get", "ref", "generation", "handle")

    def __init__(self, proxy: "ShardProxy", get: _Get, ref, generation: int, handle):
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
            kind, payload, wire_type = "proto", _proto_entry(value), None
        elif isinstance(value, base.ClosureSpec):
            type_spec = value.type_signature
            kind = "closure"
            payload = (_proto_entry(value.comp),
                       {n: self._id_of(v) for n, v in value.captured.items()})
            wire_type = _wire_type(type_spec)
        elif isinstance(value, SharedValue):
            kind, payload, wire_type = "ref", value.ref, _wire_type(type_spec)
        else:
            kind, payload, wire_type = "plain", value, _wire_type(type_spec)
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
        get = _Get(vid, next(self._get_keys))
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
                    f"{_first_line(e)}") from None
            ok, payload = results[pending.get.key]
            pending.get.delivered = True
            pending.handle = None
            if ok:
                return payload
            raise decode_error(payload)
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
                replay = [op for op in self._log if not (isinstance(op, _Get) and op.delivered)]
                self._generation += 1
                self._replay_ref = self._worker.submit(self.shard.spec, replay, reset=True)
            pending.ref, pending.generation = self._replay_ref, self._generation

    def _gave_up(self, cause: BaseException) -> errors.EngineUnavailable:
        retried = f"after {self._retries} retr{'y' if self._retries == 1 else 'ies'} on other " \
                  "actors" if self._retries else "(retries disabled)"
        return errors.EngineUnavailable(
            f"a Ray actor died while running {self.shard.describe()} {retried}: "
            f"{_first_line(cause)}; check the workers' memory and the cluster "
            "(`ray status`), or use more actors with fewer clients each")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return " ".join(text[0].split()) if text else type(error).__name__


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
        return SharedValue(self.pool.put(value))

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
