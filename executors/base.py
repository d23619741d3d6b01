"""The executor interface tffexec's layers share, on top of federated-language's.

federated-language's `Executor` is asynchronous (`await ex.create_call(...)`). TensorFlow calls
block and client parallelism comes from threads (the threaded stack), so coroutines would only add
overhead on the per-client path. Each tffexec executor therefore implements a small synchronous
core (`value`, `call`, `struct`, `selection`, `materialize`) and inherits the asynchronous
federated-language methods, which just call it. Layers talk to each other through the synchronous
core; federated-language's execution contexts talk to the top layer through the async methods.
"""
from __future__ import annotations

import abc
from typing import Any, Iterable, Optional

import federated_language
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.formats.columns import ClientColumns


class ExecValue(federated_language.framework.ExecutorValue):
    """A value embedded in one executor: that executor's representation plus its type.

    `rep` is meaningful only to the executor that made the value (its `owner`).
    """

    __slots__ = ("rep", "_type", "owner")

    def __init__(self, rep: Any, type_spec, owner: "SyncExecutor"):
        self.rep = rep
        self._type = type_spec
        self.owner = owner

    @property
    def type_signature(self):
        t = self._type
        if type(t) is _StructTypeOf:
            t = self._type = t.resolve()
        return t

    def element_type(self, index: int):
        """The type of element `index` of a struct value, without building the struct's type."""
        t = self._type
        if type(t) is _StructTypeOf:
            return t.elements[index][1].type_signature
        return self.type_signature[index]

    def wrapped(self, rep: Any, owner: "SyncExecutor") -> "ExecValue":
        """A value of `owner` (a layer above) of this value's type; a struct type not built
        yet stays unbuilt (each layer wraps every value its child makes, and building struct
        types on every wrap cost as much as the per-client calls of a small graph)."""
        return ExecValue(rep, self._type, owner)

    @property
    def reference(self):
        return self.rep

    async def compute(self):
        return self.owner.materialize(self)

    def __repr__(self) -> str:
        return f"ExecValue({type(self.rep).__name__}, {self._type}, {type(self.owner).__name__})"


class SyncExecutor(federated_language.framework.Executor, abc.ABC):
    """An executor with a synchronous core; the async interface delegates to it."""

    @abc.abstractmethod
    def value(self, value: Any, type_spec=None) -> ExecValue:
        """Embeds a Python value, a computation proto or a closure."""

    @abc.abstractmethod
    def call(self, function: ExecValue, argument: Optional[ExecValue] = None) -> ExecValue:
        """Calls an embedded function on an embedded argument."""

    @abc.abstractmethod
    def struct(self, elements: list[tuple[Optional[str], ExecValue]]) -> ExecValue:
        """Builds a struct of embedded values; element names may be None."""

    @abc.abstractmethod
    def selection(self, source: ExecValue, index: int) -> ExecValue:
        """Selects element `index` of an embedded struct."""

    @abc.abstractmethod
    def materialize(self, value: ExecValue) -> Any:
        """Returns the value in tffexec's Python representation (see `tffexec.formats`)."""

    def close(self) -> None:  # noqa: B027 - most layers hold nothing
        """Releases resources; layers with children close them."""

    # federated-language's asynchronous interface.
    async def create_value(self, value, type_spec=None):
        if type_spec is not None:
            type_spec = federated_language.to_type(type_spec)
        return self.value(value, type_spec)

    async def create_call(self, comp, arg=None):
        return self.call(comp, arg)

    async def create_struct(self, elements):
        return self.struct(_named_elements(elements))

    async def create_selection(self, source, index):
        return self.selection(source, index)


def _named_elements(elements) -> list[tuple[Optional[str], ExecValue]]:
    """Accepts what federated-language passes (Struct, dict, list) as (name, value) pairs."""
    if isinstance(elements, structure.Struct):
        return structure.to_elements(elements)
    if isinstance(elements, dict):
        return list(elements.items())
    return [(None, e) for e in elements]


class _StructTypeOf:
    """The not-yet-built StructType of a struct of executor values.

    Building a federated-language StructType costs tens of microseconds (types are interned),
    and most structs made during execution (e.g. `<accumulator, client value>` pairs) never
    have their type looked at, so it is built on first use.
    """

    __slots__ = ("elements",)

    def __init__(self, elements):
        self.elements = elements

    def resolve(self):
        return federated_language.StructType([(n, v.type_signature) for n, v in self.elements])


def struct_type(elements: Iterable[tuple[Optional[str], ExecValue]]):
    """The type of a struct of executor values (built lazily; see `_StructTypeOf`)."""
    return _StructTypeOf(list(elements))


def check_client_list(value, type_spec, num_clients: int) -> None:
    """A `{T}@CLIENTS` value given as data must be a list with one member per client."""
    if not isinstance(value, (list, tuple, ClientColumns)):
        raise errors.ArgumentError(
            f"a value of type {type_spec} must be a list with one member per client")
    if len(value) != num_clients:
        raise errors.ArgumentError(
            f"the executor was configured for {num_clients} clients, but "
            f"{len(value)} values were provided for {type_spec}")


class StructRep:
    """A struct kept by an executor as its own values (they may be closures or placed values),
    used by the layers whose structs cannot always be handed to their child."""

    __slots__ = ("elements",)

    def __init__(self, elements: list[tuple[Optional[str], ExecValue]]):
        self.elements = elements

    def element(self, index: int, source: ExecValue) -> ExecValue:
        """Element `index`; `source` (the struct's value) names the type in the error only, as
        building a struct's type costs more than the selection itself."""
        if not 0 <= index < len(self.elements):
            raise errors.ComputationError(
                f"selection [{index}] out of range for {source.type_signature}")
        return self.elements[index][1]


class StructLayer(SyncExecutor):
    """A layer that keeps structs of its own values (`StructRep`) and hands the values it does
    not interpret to one layer below, wrapped in a representation of class `child_rep`.

    The reference-resolving, federating and composing layers differ only in what their own
    representations mean (closures, placed values, intrinsics); selecting from a struct, calling
    or materializing a child's value, and the errors for everything else are the same, so they
    live here once. A layer that keeps its child's values as they are (`child_rep` is ExecValue,
    the default) inherits `wrap`, `to_child` and the `child_*` hooks and adds only what its own
    representations do: `own_to_child`, `call_own`, `materialize_own`. The composing layer, whose
    child values sit on a server stack (`Unplaced`), overrides the `child_*` hooks.
    """

    child_rep: type = ExecValue

    def struct(self, elements: list[tuple[Optional[str], ExecValue]]) -> ExecValue:
        return ExecValue(StructRep(list(elements)), struct_type(elements), self)

    def selection(self, source: ExecValue, index: int) -> ExecValue:
        rep = source.rep
        if isinstance(rep, StructRep):
            return rep.element(index, source)
        if isinstance(rep, self.child_rep):
            return self.child_selection(source, index)
        raise errors.ComputationError(
            f"cannot select [{index}] from {source.type_signature}: it is not a struct")

    def call(self, function: ExecValue, argument: Optional[ExecValue] = None) -> ExecValue:
        if isinstance(function.rep, self.child_rep):
            return self.child_call(function, argument)
        return self.call_own(function, argument)

    def materialize(self, value: ExecValue) -> Any:
        rep = value.rep
        if isinstance(rep, StructRep):
            return structure.Struct([(n, self.materialize(v)) for n, v in rep.elements])
        if isinstance(rep, self.child_rep):
            return self.child_materialize(value)
        return self.materialize_own(value)

    # Defaults for a layer whose `child_rep` is ExecValue (its child is `self.child`).
    child: SyncExecutor

    def wrap(self, child_value: ExecValue) -> ExecValue:
        """A value of the layer below, as this layer's value."""
        return child_value.wrapped(child_value, self)

    def to_child(self, value: ExecValue) -> ExecValue:
        """The layer below's version of one of this layer's values (a struct element-wise)."""
        rep = value.rep
        if isinstance(rep, ExecValue):
            return rep
        if isinstance(rep, StructRep):
            return self.child.struct([(n, self.to_child(v)) for n, v in rep.elements])
        return self.own_to_child(value)

    def own_to_child(self, value: ExecValue) -> ExecValue:
        """The layer below's version of one of this layer's own representations."""
        raise errors.InternalError(f"unexpected representation {type(value.rep).__name__}")

    def child_selection(self, source: ExecValue, index: int) -> ExecValue:
        """Selects from a value that wraps a child's struct."""
        return self.wrap(self.child.selection(source.rep, index))

    def child_call(self, function: ExecValue, argument: Optional[ExecValue]) -> ExecValue:
        """Calls a function that wraps a child's function."""
        child_argument = self.to_child(argument) if argument is not None else None
        return self.wrap(self.child.call(function.rep, child_argument))

    def child_materialize(self, value: ExecValue) -> Any:
        """Materializes a value that wraps a child's value."""
        return self.child.materialize(value.rep)

    def call_own(self, function: ExecValue, argument: Optional[ExecValue]) -> ExecValue:
        """Calls one of this layer's own function representations (none by default)."""
        raise errors.ComputationError(
            f"cannot call a value of type {function.type_signature}: it is not a function")

    def materialize_own(self, value: ExecValue) -> Any:
        """Materializes one of this layer's own representations (not a struct, not a child's)."""
        raise errors.InternalError(f"unexpected representation {type(value.rep).__name__}")


class ClosureSpec:
    """A lambda plus the values of its free names, handed from one layer to the one below.

    A reference-resolving executor passes a closure down as the lambda's proto and its captured
    values, each already converted into the receiving layer's values; the receiving layer converts
    them once more for its own child, until a reference-resolving executor turns the spec back
    into a closure it can call. Only names free in the lambda are captured.
    """

    __slots__ = ("comp", "captured", "type_signature")

    def __init__(self, comp, captured: dict, type_signature):
        self.comp = comp
        self.captured = captured
        self.type_signature = type_signature


class IntrinsicRep:
    """An intrinsic embedded in a layer that implements it (see `tffexec.intrinsics`), or a
    placement literal (`placement:<uri>`): called through that layer's handler table."""

    __slots__ = ("uri",)

    def __init__(self, uri: str):
        self.uri = uri


def call_intrinsic(table: dict, executor: SyncExecutor, function: ExecValue,
                   argument: Optional[ExecValue]) -> ExecValue:
    """Calls the handler that `table` (URI -> handler) holds for the intrinsic value `function`;
    a placement literal (or any URI the table lacks) cannot be called."""
    uri = function.rep.uri
    handler = table.get(uri)
    if handler is None:
        raise errors.ComputationError(f"{uri} cannot be called")
    return handler(executor, uri, argument, function.type_signature)


def intrinsic_proto(uri: str, type_spec) -> computation_pb2.Computation:
    """The `intrinsic` computation of `uri` at `type_spec` (how a layer hands one to another)."""
    return computation_pb2.Computation(type=type_spec.to_proto(),
                                       intrinsic=computation_pb2.Intrinsic(uri=uri))


def identity_proto(type_spec) -> computation_pb2.Computation:
    """`(x -> x)` of `type_spec` (the report function of partial aggregates)."""
    function_type = federated_language.FunctionType(type_spec, type_spec)
    result = computation_pb2.Computation(type=type_spec.to_proto(),
                                         reference=computation_pb2.Reference(name="x"))
    comp = computation_pb2.Computation(type=function_type.to_proto())
    getattr(comp, "lambda").parameter_name = "x"
    getattr(comp, "lambda").result.CopyFrom(result)
    return comp
