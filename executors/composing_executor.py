"""The composing executor: clients split over child stacks, partial aggregates merged.

TFF's composing stack (tff-runtime-facts.md §2): each child is a federating-capable stack that
holds a contiguous block of the clients; the composing executor forwards per-client intrinsics to
every child as intrinsic calls, and for aggregations it lets every child aggregate its own block
and folds the children's partial results on the server side, with the computation's own `merge`
for `federated_aggregate`. Children may themselves be composing executors (levels of at most
`max_fanout` children), or, later, proxies for stacks in other processes: the composing executor
talks to them only through the executor interface and hands them plain values and computation
protos, never its own objects.

Value representations here:
- `Unplaced`: a value of the server stack, plus where it came from (a computation proto, a
  closure, or data) so that it can be re-embedded in each child once (cached per child);
- `ServerRep`: a SERVER value, one member in the server stack;
- `ClientsRep`: a CLIENTS value, one value per child (each a CLIENTS value of that child);
- `StructRep` and `IntrinsicRep`, as in the federating executor.

The intrinsics' composing rules are registered beside their federating handlers
(`federated_intrinsics.COMPOSE`).
"""
from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any, Optional

import federated_language
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import intrinsics
from tffexec.executors import base
from tffexec.executors import federated_intrinsics
from tffexec.executors import numeric
from tffexec.executors.base import IntrinsicRep, StructRep
from tffexec.formats.columns import ClientColumns


@dataclasses.dataclass(frozen=True)
class Child:
    """A child stack and the block of clients it holds."""

    executor: base.SyncExecutor
    num_clients: int
    first_client: int


class Unplaced:
    __slots__ = ("server_value", "source", "python", "in_child", "lock")

    def __init__(self, server_value=None, source=None, python=None):
        self.server_value = server_value  # the server stack's value (built lazily from source)
        self.source = source  # Computation proto, ClosureSpec of composing values, or None (data)
        self.python = python  # the plain value when known (saves materialising it again)
        self.in_child: dict[int, base.ExecValue] = {}
        self.lock = threading.Lock()


class ServerRep:
    __slots__ = ("member",)

    def __init__(self, member: base.ExecValue):
        self.member = member


class ClientsRep:
    __slots__ = ("values", "all_equal")

    def __init__(self, values: list, all_equal: bool):
        self.values = values
        self.all_equal = all_equal


class ComposingExecutor(base.StructLayer):
    """Forwards client work to child stacks and merges their partial aggregates.

    Attributes:
      transfers: how many values were embedded in children, by kind ("broadcast" for all-equal
        CLIENTS values, "function", "data", "server"): a broadcast reaches each child once,
        whatever its client count.
    """

    def __init__(self, server: base.SyncExecutor, children: list[Child], *,
                 owns_server: bool = False, closables: tuple = ()):
        if not children:
            raise errors.InternalError("a composing executor needs at least one child")
        self.server = server
        self.children = list(children)
        self.num_clients = sum(c.num_clients for c in children)
        self.transfers: collections.Counter = collections.Counter()
        self._transfers_lock = threading.Lock()
        self._owns_server = owns_server
        self._closables = closables

    def close(self) -> None:
        for child in self.children:
            child.executor.close()
        if self._owns_server:
            self.server.close()
        for closable in self._closables:
            closable.close()

    def share(self, value: Any) -> Any:
        """A plain value about to be embedded in every child, in the form the children take.

        In-process children take the value itself; children in other processes override this to
        ship it once (e.g. into an object store) rather than once per child."""
        return value

    def _count(self, kind: str) -> None:
        with self._transfers_lock:
            self.transfers[kind] += 1

    # -- moving values between the server stack and the children ------------------------------
    def in_server(self, value: base.ExecValue) -> base.ExecValue:
        """An unplaced value of this executor as a value of the server stack."""
        rep = value.rep
        if isinstance(rep, Unplaced):
            if rep.server_value is None:
                with rep.lock:
                    if rep.server_value is None:
                        source = rep.source
                        if isinstance(source, base.ClosureSpec):
                            captured = {n: self.in_server(v) for n, v in source.captured.items()}
                            source = base.ClosureSpec(source.comp, captured, source.type_signature)
                        rep.server_value = self.server.value(source, value.type_signature)
            return rep.server_value
        if isinstance(rep, StructRep):
            return self.server.struct([(n, self.in_server(v)) for n, v in rep.elements])
        if isinstance(rep, (ServerRep, ClientsRep)):
            raise errors.ComputationError(
                f"a federated value ({value.type_signature}) is used where an unplaced value is "
                "expected")
        raise errors.ComputationError(f"intrinsic {rep.uri} cannot be passed as an unplaced value")

    def _plain(self, value: base.ExecValue):
        rep = value.rep
        if rep.python is None:
            rep.python = self.server.materialize(self.in_server(value))
        return rep.python

    def in_child(self, value: base.ExecValue, index: int) -> base.ExecValue:
        """This executor's value as a value of child `index` (embedded once per child)."""
        rep = value.rep
        child = self.children[index].executor
        if isinstance(rep, ClientsRep):
            return rep.values[index]
        if isinstance(rep, StructRep):
            return child.struct([(n, self.in_child(v, index)) for n, v in rep.elements])
        if isinstance(rep, Unplaced):
            hit = rep.in_child.get(index)
            if hit is not None:
                return hit
            source = rep.source
            if isinstance(source, computation_pb2.Computation):
                self._count("function")
                embedded = child.value(source, value.type_signature)
            elif isinstance(source, base.ClosureSpec):
                self._count("function")
                captured = {n: self.in_child(v, index) for n, v in source.captured.items()}
                embedded = child.value(
                    base.ClosureSpec(source.comp, captured, source.type_signature),
                    value.type_signature)
            else:
                self._count("data")
                embedded = child.value(self._plain(value), value.type_signature)
            with rep.lock:
                rep.in_child[index] = embedded
            return embedded
        if isinstance(rep, ServerRep):
            self._count("server")
            return child.value(self.server.materialize(rep.member), value.type_signature)
        if isinstance(rep, IntrinsicRep):
            return child.value(base.intrinsic_proto(rep.uri, value.type_signature),
                               value.type_signature)
        raise errors.InternalError(f"unexpected representation {type(rep).__name__}")

    def forward(self, uri: str, type_spec, argument: Optional[base.ExecValue]) -> list:
        """Calls intrinsic `uri` (of function type `type_spec`) in every child on its part of
        `argument`; returns the children's results."""
        proto = base.intrinsic_proto(uri, type_spec)
        results = []
        for index, child in enumerate(self.children):
            function = child.executor.value(proto, type_spec)
            child_argument = self.in_child(argument, index) if argument is not None else None
            results.append(child.executor.call(function, child_argument))
        return results

    def partials(self, uri: str, type_spec, argument) -> list:
        """The children's SERVER results of intrinsic `uri`, as plain values."""
        return [child.executor.materialize(result) for child, result in
                zip(self.children, self.forward(uri, type_spec, argument))]

    def clients(self, values: list, type_spec) -> base.ExecValue:
        return base.ExecValue(ClientsRep(values, type_spec.all_equal), type_spec, self)

    def at_server(self, member: base.ExecValue, type_spec) -> base.ExecValue:
        return base.ExecValue(ServerRep(member), type_spec, self)

    def plain_at_server(self, python_value, type_spec) -> base.ExecValue:
        return self.at_server(self.server.value(python_value, type_spec.member), type_spec)

    def unplaced(self, server_value: base.ExecValue) -> base.ExecValue:
        return server_value.wrapped(Unplaced(server_value), self)

    def server_member(self, value: base.ExecValue) -> base.ExecValue:
        """A SERVER value (or a struct of them) as one value of the server stack (a zip)."""
        rep = value.rep
        if isinstance(rep, ServerRep):
            return rep.member
        if isinstance(rep, StructRep):
            return self.server.struct([(n, self.server_member(v)) for n, v in rep.elements])
        raise errors.ComputationError(
            f"federated_zip_at_server expects SERVER values, found {value.type_signature}")

    # -- the executor interface ----------------------------------------------------------
    def value(self, value: Any, type_spec=None) -> base.ExecValue:
        if isinstance(value, computation_pb2.Computation):
            if type_spec is None:
                type_spec = federated_language.Type.from_proto(value.type)
            kind = value.WhichOneof("computation")
            if kind == "intrinsic" and value.intrinsic.uri == intrinsics.GENERIC_ZERO:
                return self._zero(type_spec)
            if kind == "intrinsic" and value.intrinsic.uri in federated_intrinsics.COMPOSE:
                return base.ExecValue(IntrinsicRep(value.intrinsic.uri), type_spec, self)
            if kind == "placement":
                return base.ExecValue(IntrinsicRep("placement:" + value.placement.uri), type_spec,
                                      self)
            return base.ExecValue(Unplaced(source=value), type_spec, self)
        if isinstance(value, base.ClosureSpec):
            return base.ExecValue(Unplaced(source=value), value.type_signature, self)
        if type_spec is None:
            raise errors.InternalError("the composing executor needs a type to embed a value")
        return self._ingest(value, type_spec)

    def _zero(self, type_spec) -> base.ExecValue:
        if isinstance(type_spec, federated_language.FederatedType):
            if type_spec.placement is federated_language.CLIENTS:
                proto = base.intrinsic_proto(intrinsics.GENERIC_ZERO, type_spec)
                return self.clients([c.executor.value(proto, type_spec) for c in self.children],
                                    type_spec)
            return self.plain_at_server(numeric.zeros(type_spec.member), type_spec)
        zero = numeric.zeros(type_spec)
        return base.ExecValue(Unplaced(self.server.value(zero, type_spec), python=zero), type_spec,
                              self)

    def _ingest(self, value, type_spec) -> base.ExecValue:
        if isinstance(type_spec, federated_language.FederatedType):
            if type_spec.placement is not federated_language.CLIENTS:
                return self.at_server(self.server.value(value, type_spec.member), type_spec)
            if type_spec.all_equal:
                # One embedding per child, whatever its client count (how broadcasts travel).
                shared = self.share(value)
                values = []
                for child in self.children:
                    self._count("broadcast")
                    values.append(child.executor.value(shared, type_spec))
                return self.clients(values, type_spec)
            base.check_client_list(value, type_spec, self.num_clients)
            offset = self.children[0].first_client
            return self.clients(
                [c.executor.value(_client_slice(value, c.first_client - offset, c.num_clients),
                                  type_spec)
                 for c in self.children], type_spec)
        if isinstance(type_spec, federated_language.StructType) and \
                federated_language.framework.type_contains(
                    type_spec, lambda t: isinstance(t, federated_language.FederatedType)):
            elements = [(name, self._ingest(v, t)) for (name, t), (_, v) in
                        zip(type_spec.items(), structure.iter_elements(value))]
            return self.struct(elements)
        return base.ExecValue(Unplaced(self.server.value(value, type_spec), python=value),
                              type_spec, self)

    child_rep = Unplaced

    def call_own(self, function: base.ExecValue, argument: Optional[base.ExecValue]):
        if isinstance(function.rep, IntrinsicRep):
            return base.call_intrinsic(federated_intrinsics.COMPOSE, self, function, argument)
        return super().call_own(function, argument)

    def child_call(self, function: base.ExecValue, argument: Optional[base.ExecValue]):
        server_argument = self.in_server(argument) if argument is not None else None
        return self.unplaced(self.server.call(self.in_server(function), server_argument))

    def child_selection(self, source: base.ExecValue, index: int):
        return self.unplaced(self.server.selection(self.in_server(source), index))

    def child_materialize(self, value: base.ExecValue):
        return self.server.materialize(self.in_server(value))

    def materialize_own(self, value: base.ExecValue):
        rep = value.rep
        if isinstance(rep, ServerRep):
            return self.server.materialize(rep.member)
        if isinstance(rep, ClientsRep):
            if rep.all_equal:
                return self.children[0].executor.materialize(rep.values[0])
            members: list = []
            for child, child_value in zip(self.children, rep.values):
                members.extend(child.executor.materialize(child_value))
            return members
        raise errors.ComputationError(f"cannot return intrinsic {rep.uri} as a value")


def _client_slice(value, start: int, count: int):
    """Clients start..start+count-1 of a `{T}@CLIENTS` value: a view of client columns, or a
    list of the members."""
    part = value[start:start + count]
    return part if isinstance(part, ClientColumns) else list(part)
