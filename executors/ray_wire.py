"""The Ray stack's wire protocol: what travels between the driver and its shard actors.

Why a module of its own: both sides speak it (the driver's `ShardProxy` in
`tffexec.executors.ray_executor`, the actor's `ShardWorker` in `tffexec.factories.ray_worker`,
the pool's `Worker` in `tffexec.factories.ray_pool`), and neither side should import the other.

- An operation is a tuple `(OP_*, value id, ...)`: cheap to build and to pickle. A batch is a list
  of them; `Get(vid, key)` asks for a value back under `key`.
- A computation proto travels once per actor as `(digest, bytes)` and as `(digest, None)`
  afterwards (`ProtoEntry`); a type travels as its serialized proto (`wire_type`).
- A value already in Ray's object store travels as a `SharedValue` (its object reference).
- An error travels as a value (`encode_error`/`decode_error`): the original tffexec error class,
  message, file, path and client index, so exit codes survive the process boundary.
- `Struct` and `SequenceValue` are made picklable here (`register_pickling`, which importing this
  module does on either side).
"""
from __future__ import annotations

import copyreg
import hashlib
import threading
from typing import Any, Optional

from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.formats import sequences

# Operation codes of the wire protocol.
OP_VALUE, OP_CALL, OP_STRUCT, OP_SELECT, OP_RELEASE, OP_GET = range(6)


# -- values across the process boundary ------------------------------------------------------------
def _make_struct(elements):
    return structure.Struct(elements)


def _reduce_struct(value):
    """federated-language's `Struct` does not survive pickling (its __setstate__ recurses)."""
    return _make_struct, (structure.to_elements(value),)


def _make_sequence(element_type, graph_def, elements, policy=None, check=None):
    seq = sequences.SequenceValue(element_type, graph_def=graph_def, elements=elements)
    return seq if policy is None else seq.bind_policy(policy, check)


def _reduce_sequence(value):
    """A sequence travels as its element type and graph or elements, never as a live dataset;
    the receiving side checks its graph again (under its stack's policy, or the one bound)."""
    graph_def = getattr(value, "_graph_def", None)
    elements = getattr(value, "_elements", None)
    if graph_def is None and elements is None:
        elements = value.elements()
    # The policy and checker bound to it travel too (not the mark: the copy is checked again).
    return _make_sequence, (value.element_type, graph_def, elements, *value.binding)


def register_pickling() -> None:
    """Makes tffexec's value types picklable (driver and actors both call this)."""
    copyreg.pickle(structure.Struct, _reduce_struct)
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


#: The `ProtoEntry` of a proto object (serialized and hashed once per object, not per use).
proto_entry = _Interned(ProtoEntry, limit=1024)
_type_bytes = _Interned(lambda t: t.to_proto().SerializeToString(deterministic=True))


def wire_type(type_spec) -> Optional[bytes]:
    """A federated-language type as it travels (serialized once per type object)."""
    return None if type_spec is None else _type_bytes(type_spec)


class SharedValue:
    """A plain value already in Ray's object store, to be embedded in several shards."""

    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref


class Get:
    """A request for a value back from the actor, answered under `key` in the batch's results;
    `delivered` marks it answered, so a replay after a lost actor does not ask again."""

    __slots__ = ("vid", "key", "delivered")

    def __init__(self, vid: int, key: int):
        self.vid, self.key, self.delivered = vid, key, False


def encode_error(error: BaseException) -> tuple:
    """An error as a picklable tuple (a tffexec error keeps its class, file, path and client)."""
    if isinstance(error, errors.TffexecError):
        return (type(error).__name__, error.message, error.file, error.path,
                getattr(error, "client", None))
    return ("InternalError", f"{type(error).__name__}: {error} (in a Ray worker)", None, None, None)


def decode_error(encoded: tuple) -> errors.TffexecError:
    """The tffexec error `encode_error` described (InternalError for an unknown class name)."""
    name, message, file, path, client = encoded
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.TffexecError)):
        cls = errors.InternalError
    error = cls(message, file=file, path=path)
    if client is not None:
        error.client = client
    return error


def first_line(error: BaseException) -> str:
    """The first line of an error's text, whitespace collapsed (Ray's errors span many lines)."""
    text = str(error).strip().splitlines()
    return " ".join(text[0].split()) if text else type(error).__name__
