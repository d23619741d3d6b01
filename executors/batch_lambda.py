"""Batching a per-client lambda as a whole.

A function mapped over clients is often a small lambda around `tensorflow` computations (TFF's
compiler writes selections and structs around them; users write `lambda x: f(g(x))`). When its
body has no federated intrinsics — only references, selections, structs, blocks, literals and
calls of `tensorflow` computations or of lambdas — it is evaluated here once for all clients:
the parameter is the clients' `Batch`, values captured from outside are shared by every client,
selections and structs rearrange columns, and each `tensorflow` call is one batched call.
Anything else (an intrinsic, a function-valued result, a graph that cannot be batched) returns
None, and the caller runs the lambda per client.

A short interpreter over an environment, in the style of the reference-resolving executor.
"""
from __future__ import annotations

from typing import Optional

import federated_language
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.executors import base
from tffexec.executors import batch as batch_lib
from tffexec.executors import reference_resolving_executor as rre
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_batch


class _CannotBatch(Exception):
    """This lambda (or a part of it) needs the per-client path."""


class _Shared:
    """A value every client has: a plain value and its type."""

    __slots__ = ("value", "type_spec")

    def __init__(self, value, type_spec):
        self.value = value
        self.type_spec = type_spec


def closure_of(value: base.ExecValue):
    """(reference-resolving executor, Closure) under the layers wrapping `value`, or None."""
    while isinstance(value, base.ExecValue):
        if isinstance(value.rep, rre.Closure):
            return value.owner, value.rep
        value = value.rep
    return None


class LambdaBatcher:
    """Evaluates a per-client lambda over a Batch with batched `tensorflow` calls.

    `functions` batches the graphs of `leaf`, the stack's TensorFlow executor (both handed over
    by the stack builder): the lambda's `tensorflow` computations are embedded there.
    """

    def __init__(self, functions: tf_batch.BatchedFunctions,
                 leaf: tensorflow_executor.TensorFlowExecutor):
        self.functions = functions
        self.leaf = leaf

    def map(self, resolver, closure, batch: batch_lib.Batch, result_type,
            run_chunks=None) -> Optional[batch_lib.Batch]:
        lam = getattr(closure.comp, "lambda")
        if not lam.parameter_name:
            return None
        env = {lam.parameter_name: batch}
        try:
            result = _Evaluation(self.functions, self.leaf, resolver, closure.scope,
                                 batch.count).eval(lam.result, env)
        except _CannotBatch:
            return None
        if isinstance(result, _Shared):
            result = batch_lib.Batch.shared(result.value, result.type_spec, batch.count)
        return result


class _Evaluation:
    """One evaluation of a lambda's body over a batch: a rule per node kind (`_RULES`)."""

    def __init__(self, functions, leaf, resolver, scope, count: int):
        self.functions = functions
        self.leaf = leaf
        self.resolver = resolver
        self.scope = scope
        self.count = count

    def eval(self, comp: computation_pb2.Computation, env: dict):
        kind = comp.WhichOneof("computation")
        rule = _RULES.get(kind)
        if rule is None:
            raise _CannotBatch(kind)
        return rule(self, comp, env)

    def _reference(self, comp, env):
        name = comp.reference.name
        if name in env:
            return env[name]
        if self.scope is None:
            raise _CannotBatch(name)
        try:
            value = self.scope.lookup(name)
        except errors.ComputationError:
            raise _CannotBatch(name) from None
        if isinstance(value.rep, rre.Closure):
            raise _CannotBatch("a captured function")
        return _Shared(self.resolver.materialize(value), value.type_signature)

    def _literal(self, comp, env):
        from tffexec.formats import arrays  # noqa: PLC0415

        return _Shared(arrays.array_from_proto(comp.literal.value),
                       federated_language.Type.from_proto(comp.type))

    def _selection(self, comp, env):
        source = self.eval(comp.selection.source, env)
        index = comp.selection.index
        if isinstance(source, _Shared):
            if not isinstance(source.type_spec, federated_language.StructType):
                raise _CannotBatch("selection from a non-struct")
            return _Shared(source.value[index], source.type_spec[index])
        if not isinstance(source.member_type, federated_language.StructType):
            raise _CannotBatch("selection from a non-struct")
        return source.element(index)

    def _struct(self, comp, env):
        type_spec = federated_language.Type.from_proto(comp.type)
        parts = [(e.name or None, self.eval(e.value, env)) for e in comp.struct.element]
        if all(isinstance(v, _Shared) for _, v in parts):
            return _Shared(structure.Struct([(n, v.value) for n, v in parts]), type_spec)
        return batch_lib.Batch.zip([(n, self._as_batch(v)) for n, v in parts], type_spec)

    def _block(self, comp, env):
        env = dict(env)
        for local in comp.block.local:
            env[local.name] = self.eval(local.value, env)
        return self.eval(comp.block.result, env)

    def _call(self, comp, env):
        function = comp.call.function
        kind = function.WhichOneof("computation")
        argument = self.eval(comp.call.argument, env) if comp.call.HasField("argument") else None
        if kind == "lambda":
            lam = getattr(function, "lambda")
            inner = dict(env)
            if lam.parameter_name:
                if argument is None:
                    raise _CannotBatch("missing argument")
                inner[lam.parameter_name] = argument
            return self.eval(lam.result, inner)
        if kind != "tensorflow":
            raise _CannotBatch(kind)
        leaf_value = self.leaf.value(function)
        function_type = leaf_value.type_signature
        if argument is None or function_type.parameter is None:
            raise _CannotBatch("a call without an argument")
        result = self.functions.map(leaf_value.rep, self._as_batch(argument),
                                    function_type.result)
        if result is None:
            raise _CannotBatch("the graph cannot be batched")
        return result

    def _as_batch(self, value) -> batch_lib.Batch:
        if isinstance(value, batch_lib.Batch):
            return value
        shared = batch_lib.Batch.shared(value.value, value.type_spec, self.count)
        if shared is None:
            raise _CannotBatch("a shared value that is not tensors")
        return shared


# Node kinds the batching interpreter evaluates; any other kind takes the per-client path.
_RULES = {
    "reference": _Evaluation._reference,
    "literal": _Evaluation._literal,
    "selection": _Evaluation._selection,
    "struct": _Evaluation._struct,
    "block": _Evaluation._block,
    "call": _Evaluation._call,
}
