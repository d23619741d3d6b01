"""The reference-resolving executor: interprets the compositional part of TFF's AST.

Lambda (closures over a scope), block (sequential let), reference, call, struct and selection are
handled here; every other node kind (tensorflow, intrinsic, placement, literal, data, xla) is
embedded in the child executor, as are calls of the child's functions. The interpreter is a
dispatch table over node kinds, in the style of JAX's `eval_jaxpr`.

Depth. Protobuf refuses messages nested about 100 levels deep (a computation about 50 AST levels);
evaluation uses a few Python frames per AST level, far below the interpreter's recursion limit,
and a test evaluates the deepest computation protobuf accepts.

Errors raised while evaluating a node get the node's path in the AST prepended
(e.g. `result.block.local[2](x).call.argument`), so the user can find the failing node.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

import federated_language
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.executors import base

_DELEGATED_KINDS = frozenset({"tensorflow", "intrinsic", "placement", "literal", "data", "xla"})


class Scope:
    """Bindings of one lambda parameter or one block; `parent` is the enclosing scope.

    A block's locals share one frame; re-binding a name already in the frame opens a new frame,
    so closures created earlier keep seeing the earlier value (let* semantics).
    """

    __slots__ = ("bindings", "parent")

    def __init__(self, bindings: dict, parent: Optional["Scope"]):
        self.bindings = bindings
        self.parent = parent

    def lookup(self, name: str):
        scope = self
        while scope is not None:
            value = scope.bindings.get(name)
            if value is not None:
                return value
            scope = scope.parent
        raise errors.ComputationError(f"reference to unbound name {name!r}")


class Closure:
    """A lambda together with the scope it was created in."""

    __slots__ = ("comp", "scope")

    def __init__(self, comp: computation_pb2.Computation, scope: Optional[Scope]):
        self.comp = comp
        self.scope = scope


def _lambda_children(node, bound: frozenset) -> list:
    lam = getattr(node, "lambda")
    return [(lam.result, bound | {lam.parameter_name} if lam.parameter_name else bound)]


def _block_children(node, bound: frozenset) -> list:
    children, inner = [], bound
    for local in node.block.local:  # each local sees the names bound before it
        children.append((local.value, inner))
        inner = inner | {local.name}
    children.append((node.block.result, inner))
    return children


def _call_children(node, bound: frozenset) -> list:
    children = [(node.call.function, bound)]
    if node.call.HasField("argument"):
        children.append((node.call.argument, bound))
    return children


#: Per node kind: its sub-computations, each with the names bound where it stands. Kinds not
#: listed (references, and the leaves this layer delegates) have none.
_SCOPED_CHILDREN = {
    "lambda": _lambda_children,
    "block": _block_children,
    "call": _call_children,
    "struct": lambda node, bound: [(e.value, bound) for e in node.struct.element],
    "selection": lambda node, bound: [(node.selection.source, bound)],
}


def free_names(comp: computation_pb2.Computation) -> list[str]:
    """Names referenced in `comp` but not bound inside it (iterative walk, no recursion)."""
    free: dict[str, None] = {}
    stack = [(comp, frozenset())]  # (node, the names bound at that point)
    while stack:
        node, bound = stack.pop()
        kind = node.WhichOneof("computation")
        if kind == "reference":
            if node.reference.name not in bound:
                free[node.reference.name] = None
            continue
        children = _SCOPED_CHILDREN.get(kind)
        if children is not None:
            stack.extend(children(node, bound))
    return list(free)


class ReferenceResolvingExecutor(base.StructLayer):
    """Resolves lambdas, blocks, references, calls, structs and selections; delegates the rest."""

    def __init__(self, child: base.SyncExecutor):
        self._child = child
        self._lock = threading.Lock()
        # Caches keyed by id(proto); the proto is stored too so the id cannot be reused.
        self._types: dict[int, tuple[Any, Any]] = {}
        self._free: dict[int, tuple[Any, list[str]]] = {}
        self._dispatch = {
            "lambda": self._eval_lambda,
            "block": self._eval_block,
            "reference": self._eval_reference,
            "call": self._eval_call,
            "struct": self._eval_struct,
            "selection": self._eval_selection,
        }

    @property
    def child(self) -> base.SyncExecutor:
        return self._child

    def close(self) -> None:
        self._child.close()

    # -- caches -------------------------------------------------------------------------
    def _type_of(self, comp: computation_pb2.Computation):
        hit = self._types.get(id(comp))
        if hit is not None and hit[0] is comp:
            return hit[1]
        type_spec = federated_language.Type.from_proto(comp.type)
        with self._lock:
            self._types[id(comp)] = (comp, type_spec)
        return type_spec

    def _free_names(self, comp: computation_pb2.Computation) -> list[str]:
        hit = self._free.get(id(comp))
        if hit is not None and hit[0] is comp:
            return hit[1]
        names = free_names(comp)
        with self._lock:
            self._free[id(comp)] = (comp, names)
        return names

    # -- the interpreter ------------------------------------------------------------------
    def evaluate(self, comp: computation_pb2.Computation, scope: Optional[Scope]) -> base.ExecValue:
        """Evaluates one AST node in `scope`."""
        kind = comp.WhichOneof("computation")
        handler = self._dispatch.get(kind)
        if handler is not None:
            return handler(comp, scope)
        if kind in _DELEGATED_KINDS:
            return self.wrap(self._child.value(comp, self._type_of(comp)))
        raise errors.ComputationError(
            f"unknown computation node kind {kind!r}; expected one of "
            f"{sorted(set(self._dispatch) | _DELEGATED_KINDS)}")

    def _sub(self, comp, scope, segment: str) -> base.ExecValue:
        try:
            return self.evaluate(comp, scope)
        except errors.TffexecError as e:
            e.path = f"{segment}.{e.path}" if e.path else segment
            e.args = (e.one_line(),)
            raise

    def _eval_lambda(self, comp, scope):
        return base.ExecValue(Closure(comp, scope), self._type_of(comp), self)

    def _eval_reference(self, comp, scope):
        if scope is None:
            raise errors.ComputationError(f"reference to unbound name {comp.reference.name!r}")
        return scope.lookup(comp.reference.name)

    def _eval_block(self, comp, scope):
        frame = Scope({}, scope)
        for i, local in enumerate(comp.block.local):
            value = self._sub(local.value, frame, f"block.local[{i}]({local.name})")
            if local.name in frame.bindings:
                frame = Scope({}, frame)
            frame.bindings[local.name] = value
        return self._sub(comp.block.result, frame, "block.result")

    def _eval_call(self, comp, scope):
        function = self._sub(comp.call.function, scope, "call.function")
        argument = None
        if comp.call.HasField("argument"):
            argument = self._sub(comp.call.argument, scope, "call.argument")
        return self.call(function, argument)

    def _eval_struct(self, comp, scope):
        elements = [
            (e.name or None, self._sub(e.value, scope, f"struct[{i}]"))
            for i, e in enumerate(comp.struct.element)
        ]
        return self.struct(elements)

    def _eval_selection(self, comp, scope):
        source = self._sub(comp.selection.source, scope, "selection.source")
        return self.selection(source, comp.selection.index)

    # -- values of this executor ------------------------------------------------------------
    def _apply(self, closure: Closure, argument: Optional[base.ExecValue]) -> base.ExecValue:
        lam = getattr(closure.comp, "lambda")
        if lam.parameter_name:
            if argument is None:
                raise errors.ComputationError(
                    f"function with parameter {lam.parameter_name!r} called without an argument")
            scope = Scope({lam.parameter_name: argument}, closure.scope)
        else:
            if argument is not None:
                raise errors.ComputationError("function without a parameter called with an argument")
            scope = closure.scope
        return self._sub(lam.result, scope, "lambda.result")

    def own_to_child(self, value: base.ExecValue) -> base.ExecValue:
        """A closure goes down as a `ClosureSpec`: its lambda and its free names' values."""
        rep = value.rep
        if isinstance(rep, Closure):
            captured = {}
            for name in self._free_names(rep.comp):
                if rep.scope is None:
                    raise errors.ComputationError(f"reference to unbound name {name!r}")
                captured[name] = self.to_child(rep.scope.lookup(name))
            spec = base.ClosureSpec(rep.comp, captured, value.type_signature)
            return self._child.value(spec, value.type_signature)
        return super().own_to_child(value)

    # -- the executor interface ----------------------------------------------------------------
    def value(self, value: Any, type_spec=None) -> base.ExecValue:
        if isinstance(value, computation_pb2.Computation):
            return self.evaluate(value, None)
        if isinstance(value, base.ClosureSpec):
            # The layer above already converted the captured values into this executor's values
            # (see `base.ClosureSpec`); wrapping them again would hand this executor's values to
            # the child when the closure's body uses them.
            bindings = dict(value.captured)
            return base.ExecValue(Closure(value.comp, Scope(bindings, None)),
                                  value.type_signature, self)
        to_proto = getattr(value, "to_proto", None)
        if callable(to_proto) and not isinstance(value, base.ExecValue):
            return self.evaluate(to_proto(), None)  # a federated-language computation object
        return self.wrap(self._child.value(value, type_spec))

    def call_own(self, function: base.ExecValue, argument: Optional[base.ExecValue]):
        if isinstance(function.rep, Closure):
            return self._apply(function.rep, argument)
        return super().call_own(function, argument)

    def materialize_own(self, value: base.ExecValue):
        if isinstance(value.rep, Closure):
            return value.rep.comp
        return super().materialize_own(value)
