"""Sequence intrinsics and generic operators on unplaced values.

Sits between the unplaced stack's reference-resolving executor and an inner one (as in TFF's C++
stack: RRE -> Sequence -> RRE -> TensorFlow), so the functions passed to `sequence_map` and
`sequence_reduce` may be closures: they are handed down and called on the inner executor.

- `sequence_map(fn, seq)`: fn applied to each element, in order.
- `sequence_reduce(seq, zero, op)`: left fold of op from zero.
- `sequence_sum(seq)`: fold with generic plus from the element type's zero.
- `generic_plus/multiply/divide/zero` on unplaced values, in numpy.

A sequence's elements are read from its dataset graph only when one of these needs them.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import federated_language
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import intrinsics
from tffexec.executors import base
from tffexec.executors.base import IntrinsicRep
from tffexec.executors import numeric


Handler = Callable[["SequenceExecutor", str, base.ExecValue, Any], base.ExecValue]
#: URI -> handler for the intrinsics this layer implements: exactly `tffexec.intrinsics.UNPLACED`
#: (tests/test_intrinsic_registry.py). generic_zero is a constant, embedded in `value`.
HANDLERS: dict[str, Handler] = {}


def handles(*uris: str) -> Callable[[Handler], Handler]:
    """Registers the decorated method for `uris` (each must be an unplaced intrinsic)."""

    def register(fn: Handler) -> Handler:
        for uri in uris:
            intrinsics.require(uri, intrinsics.UNPLACED, "an unplaced")
            HANDLERS[uri] = fn
        return fn

    return register


class SequenceExecutor(base.SyncExecutor):
    """Implements sequence_* and generic_* intrinsics; everything else goes to the child."""

    def __init__(self, child: base.SyncExecutor):
        self._child = child

    def close(self) -> None:
        self._child.close()

    def _wrap(self, child_value: base.ExecValue) -> base.ExecValue:
        return child_value.wrapped(child_value, self)

    def _down(self, value: base.ExecValue) -> base.ExecValue:
        if isinstance(value.rep, base.ExecValue):
            return value.rep
        raise errors.ComputationError(
            f"intrinsic {value.rep.uri} cannot be passed as a value here")

    def value(self, value: Any, type_spec=None) -> base.ExecValue:
        if isinstance(value, computation_pb2.Computation) and value.WhichOneof(
                "computation") == "intrinsic":
            uri = value.intrinsic.uri
            if type_spec is None:
                type_spec = federated_language.Type.from_proto(value.type)
            if uri == intrinsics.GENERIC_ZERO:
                return self._wrap(self._child.value(numeric.zeros(type_spec), type_spec))
            if uri in HANDLERS:
                return base.ExecValue(IntrinsicRep(uri), type_spec, self)
            raise unknown_intrinsic(uri)
        if isinstance(value, base.ClosureSpec):
            captured = {name: self._down(v) for name, v in value.captured.items()}
            value = base.ClosureSpec(value.comp, captured, value.type_signature)
        return self._wrap(self._child.value(value, type_spec))

    def call(self, function: base.ExecValue, argument: Optional[base.ExecValue] = None):
        rep = function.rep
        if isinstance(rep, IntrinsicRep):
            return base.call_intrinsic(HANDLERS, self, function, argument)
        child_arg = self._down(argument) if argument is not None else None
        return self._wrap(self._child.call(rep, child_arg))

    def struct(self, elements):
        return self._wrap(self._child.struct([(n, self._down(v)) for n, v in elements]))

    def selection(self, source: base.ExecValue, index: int):
        return self._wrap(self._child.selection(self._down(source), index))

    def materialize(self, value: base.ExecValue):
        return self._child.materialize(self._down(value))

    # -- intrinsics ----------------------------------------------------------------------------
    def _arg(self, argument: base.ExecValue, index: int) -> base.ExecValue:
        return self._child.selection(self._down(argument), index)

    def _elements(self, sequence_value: base.ExecValue) -> list:
        sequence = self._child.materialize(sequence_value)
        return sequence.elements()

    @handles("sequence_map")
    def _sequence_map(self, uri, argument, type_spec):
        from tffexec.formats import sequences  # noqa: PLC0415

        fn = self._arg(argument, 0)
        source = self._arg(argument, 1)
        element_type = source.type_signature.element
        result_type = type_spec.result
        outputs = [
            self._child.materialize(self._child.call(fn, self._child.value(e, element_type)))
            for e in self._elements(source)
        ]
        result = sequences.SequenceValue(result_type.element, elements=outputs)
        return self._wrap(self._child.value(result, result_type))

    @handles("sequence_reduce")
    def _sequence_reduce(self, uri, argument, type_spec):
        source = self._arg(argument, 0)
        accumulator = self._arg(argument, 1)
        op = self._arg(argument, 2)
        element_type = source.type_signature.element
        for element in self._elements(source):
            pair = self._child.struct([(None, accumulator),
                                       (None, self._child.value(element, element_type))])
            accumulator = self._child.call(op, pair)
        return self._wrap(accumulator)

    @handles("sequence_sum")
    def _sequence_sum(self, uri, argument, type_spec):
        element_type = type_spec.result
        total = numeric.zeros(element_type)
        for element in self._elements(self._down(argument)):
            total = numeric.generic_plus(total, element, element_type, element_type, element_type)
        return self._wrap(self._child.value(total, element_type))

    @handles(*numeric.GENERIC_OPS)
    def _generic(self, uri, argument, type_spec):
        left = self._arg(argument, 0)
        right = self._arg(argument, 1)
        value = numeric.GENERIC_OPS[uri](self._child.materialize(left),
                                         self._child.materialize(right), left.type_signature,
                                         right.type_signature, type_spec.result)
        return self._wrap(self._child.value(value, type_spec.result))


def unknown_intrinsic(uri: str) -> errors.ComputationError:
    """The error for a URI tffexec does not implement (it lists those it does)."""
    return errors.ComputationError(intrinsics.unknown(uri))
