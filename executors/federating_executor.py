"""The federating executor: placements, cardinalities and the federated intrinsics.

A value here is one of
- a child value (unplaced: tensors, structs of tensors, functions, closures handed down);
- `Placed`: a value at SERVER (one member) or at CLIENTS (one member per client, or one shared
  member when all-equal), each member a value of the child executor;
- `StructRep`: a struct that holds placed values;
- `IntrinsicRep`: a federated or generic intrinsic, called through `federated_intrinsics`.

Unplaced work (calls of `tensorflow` computations or closures, sequence intrinsics) runs on the
child. Per-client work goes through the `ClientWork` seam.
"""
from __future__ import annotations

from typing import Any, Optional

import federated_language
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import intrinsics
from tffexec.executors import base
from tffexec.executors import batch as batch_lib
from tffexec.executors.base import IntrinsicRep, StructRep
from tffexec.executors import client_work as client_work_lib
from tffexec.executors import federated_intrinsics
from tffexec.executors import numeric


class Placed:
    """A federated value: its members live in the child executor.

    A CLIENTS value may instead be held as a `Batch` (columns of plain arrays, see
    `executors/batch.py`); its per-client members are then made only if an intrinsic needs them.
    """

    __slots__ = ("placement", "all_equal", "members", "batch")

    def __init__(self, placement, all_equal: bool, members: Optional[list], batch=None):
        self.placement = placement
        self.all_equal = all_equal
        self.members = members
        self.batch = batch


def _member_type(type_spec):
    """The per-client type of a CLIENTS value, or of a struct of them (a zip's argument)."""
    if isinstance(type_spec, federated_language.FederatedType):
        return type_spec.member
    return federated_language.StructType([(n, _member_type(t)) for n, t in type_spec.items()])


class FederatingExecutor(base.StructLayer):
    """Implements placement and every federated intrinsic natively."""

    def __init__(self, child: base.SyncExecutor, num_clients: int, *,
                 client_work: Optional[client_work_lib.ClientWork] = None,
                 first_client: int = 0, owns_child: bool = True):
        """`first_client` is the global index of this executor's first client (in a composed
        stack each child holds a contiguous block of clients); errors name global indices.
        `owns_child`: close the child with this executor (False when children share it)."""
        if num_clients < 0:
            raise errors.ArgumentError(f"the number of clients must be >= 0, got {num_clients}")
        self.child = child
        self.num_clients = num_clients
        self.first_client = first_client
        self.client_work = client_work or client_work_lib.SequentialClientWork()
        self._owns_child = owns_child

    def close(self) -> None:
        if self._owns_child:
            self.child.close()
            self.client_work.close()

    # -- client work: the one place that chooses between columns and members ------------------
    # Each method takes placed values, tries the batched path (one TensorFlow call or one numpy
    # reduction for all clients) and falls back to the members, one client at a time, through
    # the `ClientWork` seam. The handlers in `federated_intrinsics` call only these, so none of
    # them chooses between the two paths (tests/test_batching_decision.py).
    def map_clients(self, function: base.ExecValue, data: Optional[base.ExecValue], result_type,
                    intrinsic: str) -> base.ExecValue:
        """`function` (a child function) applied to every client's member of `data` (None: a
        no-argument function called once per client); the CLIENTS value of `result_type`."""
        if data is not None and data.rep.all_equal and result_type.all_equal:
            # One shared member in, one shared member out: a single call.
            return self.placed(self._map_members(function, data.rep.members, intrinsic),
                               result_type)
        batch = self._map_batch(data)
        if batch is not None:
            result = self.client_work.map_batched(function, batch, result_type.member,
                                                  intrinsic=intrinsic)
            if result is not None:
                return self.placed_batch(result, result_type)
        arguments = [None] * self.num_clients if data is None else self.members(data)
        if data is not None:  # e.g. clients training over their datasets, in buckets
            columns = self.client_work.map_members_batched(
                self.child, function, arguments, intrinsic=intrinsic,
                first_client=self.first_client)
            if columns is not None:
                return self.placed_batch(columns, result_type)
        return self.placed(self._map_members(function, arguments, intrinsic), result_type)

    def _map_batch(self, data: Optional[base.ExecValue]) -> Optional["batch_lib.Batch"]:
        if data is not None:
            return self.batch_of(data)
        if not self.client_work.batching or not self.num_clients:
            return None
        # A no-argument function: a stateless graph gives every client the same value,
        # evaluated once and shared; stateful graphs are not batchable and run per client.
        return batch_lib.Batch(federated_language.StructType([]), self.num_clients, [], [])

    def _map_members(self, function: base.ExecValue, arguments: list, intrinsic: str) -> list:
        return self.client_work.map(self.child, function, arguments, intrinsic=intrinsic,
                                    first_client=self.first_client)

    def fold_clients(self, zero: base.ExecValue, accumulate: base.ExecValue,
                     data: base.ExecValue, intrinsic: str) -> base.ExecValue:
        """The accumulator (a child value): `accumulate` folded over the members of `data` from
        `zero`, in client order, as TFF folds (no partial folds to merge)."""
        zero, accumulate = self.to_child(zero), self.to_child(accumulate)
        batch = self.batch_of(data)
        if batch is not None:
            zero_type = zero.type_signature
            zero_leaves = batch_lib.leaves_of(self.child.materialize(zero), zero_type)
            if zero_leaves is not None:
                folded = self.client_work.fold_batched(zero_leaves, accumulate, batch,
                                                       intrinsic=intrinsic)
                if folded is not None:
                    return self.embed(batch_lib.pack(folded, zero_type), zero_type)
        return self.client_work.fold(self.child, zero, accumulate, self.members(data),
                                     intrinsic=intrinsic, first_client=self.first_client)

    def reduce_clients(self, reduction: "numeric.Reduction", data: list, *args) -> Any:
        """`reduction` of the CLIENTS values `data` (a plain value): its columnar twin over
        their batches when every one is batched, else its per-client form over their members.
        `args` follow the values (the member type, a bound, ...)."""
        if reduction.columnar is not None:
            batches = [self.batch_of(value) for value in data]
            if all(b is not None for b in batches):
                return reduction.columnar(*batches, *args)
        return reduction.per_client(*[self.materialize_members(value) for value in data], *args)

    def zip_clients(self, value: base.ExecValue, result_type) -> base.ExecValue:
        """A struct of CLIENTS values as one CLIENTS value of structs (federated_zip)."""
        batch = self.batch_of(value) if self.num_clients else None
        if batch is not None:  # columns side by side: no per-client structs
            return self.placed_batch(batch_lib.Batch(result_type.member, batch.count,
                                                     batch.leaves, batch.stacked), result_type)
        return self.placed([self.zipped_member(value, i) for i in range(self.num_clients)],
                           result_type)

    def zipped_member(self, value: base.ExecValue, index: int) -> base.ExecValue:
        """Member `index` of a federated value or a struct of them, as one child value."""
        rep = value.rep
        if isinstance(rep, StructRep):
            return self.child.struct([(n, self.zipped_member(v, index)) for n, v in rep.elements])
        if not isinstance(rep, Placed):
            raise errors.ComputationError(
                f"federated_zip expects federated values, found {value.type_signature}")
        return self.members(value)[index]

    # -- helpers used by the intrinsics ---------------------------------------------------
    def placed(self, members: list, type_spec) -> base.ExecValue:
        return base.ExecValue(Placed(type_spec.placement, type_spec.all_equal, members), type_spec,
                              self)

    def placed_batch(self, batch: "batch_lib.Batch", type_spec) -> base.ExecValue:
        return base.ExecValue(Placed(type_spec.placement, False, None, batch), type_spec, self)

    def members(self, value: base.ExecValue) -> list:
        """The members of a placed value, one per client for CLIENTS (shared when all-equal)."""
        rep = value.rep
        if not isinstance(rep, Placed):
            raise errors.ComputationError(f"expected a federated value, found {value.type_signature}")
        if rep.placement is federated_language.CLIENTS and rep.all_equal:
            return rep.members * self.num_clients if rep.members else []
        if rep.members is None:  # a batch: embed each client's value (the per-client path)
            member_type = value.type_signature.member
            rep.members = [self.embed(m, member_type) for m in rep.batch.members()]
        return rep.members

    def batch_of(self, value: base.ExecValue) -> Optional["batch_lib.Batch"]:
        """The value's clients as columns, or None when they are not (or cannot be) batched."""
        if not self.client_work.batching:
            return None
        rep = value.rep
        if isinstance(rep, Placed):
            if rep.batch is not None:
                return rep.batch
            if rep.placement is federated_language.CLIENTS and rep.all_equal and rep.members:
                member = self.child.materialize(rep.members[0])
                return batch_lib.Batch.shared(member, value.type_signature.member,
                                              self.num_clients)
            return None
        if isinstance(rep, StructRep):  # a zip's argument: a struct of CLIENTS values
            parts = [(n, self.batch_of(v)) for n, v in rep.elements]
            if not parts or any(b is None for _, b in parts):
                return None
            return batch_lib.Batch.zip(parts, _member_type(value.type_signature))
        return None

    def own_to_child(self, value: base.ExecValue) -> base.ExecValue:
        """Placed values and intrinsics have no child version: only unplaced values do."""
        rep = value.rep
        if isinstance(rep, Placed):
            raise errors.ComputationError(
                f"a federated value ({value.type_signature}) is used where an unplaced value "
                "is expected")
        raise errors.ComputationError(
            f"intrinsic {rep.uri} cannot be passed as an unplaced value")

    def materialize_members(self, value: base.ExecValue) -> list:
        rep = value.rep
        if isinstance(rep, Placed) and rep.members is None:
            return rep.batch.members()
        return [self.child.materialize(m) for m in self.members(value)]

    def embed(self, python_value, type_spec) -> base.ExecValue:
        return self.child.value(python_value, type_spec)

    unplaced = base.StructLayer.wrap  # a child's value is an unplaced value of this layer

    # -- the executor interface ----------------------------------------------------------
    def value(self, value: Any, type_spec=None) -> base.ExecValue:
        if isinstance(value, computation_pb2.Computation):
            return self._computation(value, type_spec)
        if isinstance(value, base.ClosureSpec):
            captured = {name: self.to_child(v) for name, v in value.captured.items()}
            spec = base.ClosureSpec(value.comp, captured, value.type_signature)
            return self.unplaced(self.child.value(spec, value.type_signature))
        if type_spec is None:
            raise errors.InternalError("the federating executor needs a type to embed a value")
        return self._ingest(value, type_spec)

    def _computation(self, comp, type_spec) -> base.ExecValue:
        if type_spec is None:
            type_spec = federated_language.Type.from_proto(comp.type)
        kind = comp.WhichOneof("computation")
        if kind == "intrinsic":
            uri = comp.intrinsic.uri
            if uri == intrinsics.GENERIC_ZERO:
                return self._zero(type_spec)
            if uri in federated_intrinsics.INTRINSICS:
                return base.ExecValue(IntrinsicRep(uri), type_spec, self)
        if kind == "placement":
            return base.ExecValue(IntrinsicRep("placement:" + comp.placement.uri), type_spec, self)
        return self.unplaced(self.child.value(comp, type_spec))

    def _zero(self, type_spec) -> base.ExecValue:
        if isinstance(type_spec, federated_language.FederatedType):
            member = self.embed(numeric.zeros(type_spec.member), type_spec.member)
            return self.placed([member], type_spec) if type_spec.all_equal else self.placed(
                [member] * self.num_clients, type_spec)
        return self.unplaced(self.embed(numeric.zeros(type_spec), type_spec))

    def _ingest(self, value, type_spec) -> base.ExecValue:
        if isinstance(type_spec, federated_language.FederatedType):
            member_type = type_spec.member
            if type_spec.all_equal:
                return self.placed([self.embed(value, member_type)], type_spec)
            base.check_client_list(value, type_spec, self.num_clients)
            if self.client_work.batching:
                batch = batch_lib.Batch.from_members(value, member_type)
                if batch is not None:
                    return self.placed_batch(batch, type_spec)
            return self.placed([self.embed(v, member_type) for v in value], type_spec)
        if isinstance(type_spec, federated_language.StructType) and federated_language.framework.type_contains(
                type_spec, lambda t: isinstance(t, federated_language.FederatedType)):
            elements = [(name, self._ingest(v, t)) for (name, t), (_, v) in
                        zip(type_spec.items(), structure.iter_elements(value))]
            return self.struct(elements)
        return self.unplaced(self.embed(value, type_spec))

    def call_own(self, function: base.ExecValue, argument: Optional[base.ExecValue]):
        if isinstance(function.rep, IntrinsicRep):
            return base.call_intrinsic(federated_intrinsics.INTRINSICS, self, function, argument)
        return super().call_own(function, argument)

    def struct(self, elements):
        if all(isinstance(v.rep, base.ExecValue) for _, v in elements):
            return self.unplaced(self.child.struct([(n, v.rep) for n, v in elements]))
        return super().struct(elements)

    def materialize_own(self, value: base.ExecValue):
        rep = value.rep
        if isinstance(rep, Placed):
            if rep.members is None:
                return rep.batch.to_columns()  # results stay columnar (formats/columns.py)
            members = [self.child.materialize(m) for m in rep.members]
            if rep.all_equal:
                return members[0] if members else None
            return members
        raise errors.ComputationError(f"cannot return intrinsic {rep.uri} as a value")
