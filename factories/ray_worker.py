"""The body of a Ray actor: tffexec stacks for the shards of clients the driver sends it.

Why in `factories/`: the actor builds stacks (an unplaced stack shared by its shards, and one
flat stack per shard, from the same `factories.stacks` recipes as every other stack), so it sits
beside the other stack builders, above the executors it assembles. It speaks the wire protocol of
`tffexec.executors.ray_wire`; the driver's side is `tffexec.executors.ray_executor`, and
`tffexec.factories.ray_pool` starts and replaces the actors.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import federated_language
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import tf_runtime
from tffexec.executors import base
from tffexec.executors import ray_wire
from tffexec.executors.ray_wire import OP_CALL, OP_GET, OP_RELEASE, OP_SELECT, OP_STRUCT, OP_VALUE
from tffexec.factories import stacks
from tffexec.formats.columns import ClientColumns


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
        ray_wire.register_pickling()
        self._config = config
        if intra_op_threads is not None:
            tf_runtime.request_threads(intra_op_threads, None)
        leaf = stacks.leaf_executor(config)
        self._unplaced = stacks.unplaced_stack(config, leaf)
        self._work = stacks.client_work(config, leaf)
        self._shards: dict[str, _Shard] = {}
        self._protos: dict[bytes, computation_pb2.Computation] = {}
        self._types: dict[bytes, Any] = {}
        self._columns = {"received": 0, "zero_copy": 0}

    def ready(self) -> dict:
        """Imports TensorFlow (once per actor) and says where the actor runs."""
        tf_runtime.tensorflow()
        if self._config.device is not None:
            tf_runtime.check_device(self._config.device)
        return {"pid": os.getpid()}

    def stats(self) -> dict:
        """What the actor holds, and how client columns reached it: `columns_zero_copy` counts
        slices whose arrays are read-only views of Ray's object store (not copied on arrival);
        `members_built` counts per-client members built from columns in this actor."""
        return {"pid": os.getpid(), "shards": len(self._shards),
                "values": sum(len(s.values) for s in self._shards.values()),
                "protos": len(self._protos),
                "columns_received": self._columns["received"],
                "columns_zero_copy": self._columns["zero_copy"],
                "members_built": ClientColumns.members_built}

    def drop_shard(self, key: str) -> None:
        self._shards.pop(key, None)

    def run_batch(self, spec: tuple, ops: list, reset: bool = False) -> dict:
        """Applies `ops` to shard `spec` = (key, num_clients, first_client); returns the
        results of its `get` operations as {get key: (True, value) | (False, error)}."""
        key, num_clients, first_client = spec
        shard = None if reset else self._shards.get(key)
        if shard is None:
            shard = self._shards[key] = _Shard(stacks.flat_stack(
                self._unplaced, num_clients, self._work, first_client=first_client,
                owns_child=False))
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

    def _type(self, data: Optional[bytes]):
        if data is None:
            return None
        hit = self._types.get(data)
        if hit is None:
            hit = self._types[data] = federated_language.Type.from_proto(
                computation_pb2.Type.FromString(data))
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
                import ray  # noqa: PLC0415 - only inside an actor, where Ray is loaded

                return stack.value(self._note_columns(ray.get(payload)), type_spec)
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

    def _note_columns(self, value):
        if isinstance(value, ClientColumns):
            self._columns["received"] += 1
            if all(not leaf.flags.writeable and not leaf.flags.owndata for leaf in value.leaves):
                self._columns["zero_copy"] += 1
        return value

    def _get(self, shard: _Shard, vid: int) -> tuple:
        try:
            return True, shard.stack.materialize(shard.get(vid))
        except _Poisoned as e:
            return False, ray_wire.encode_error(e.failed.error)
        except Exception as e:  # noqa: BLE001 - travels to the driver as a value
            return False, ray_wire.encode_error(e)
