"""`tffexec.save` / `tffexec.load`: computations as files TFF 0.87 and `tffexec run` both read.

Why saving rewrites graphs: a computation traced on today's TensorFlow carries ops and attrs
TF 2.14 (TFF 0.87's) refuses; `tffexec.formats.tf214_compat` strips the harmless ones (defaults,
hints) from every `tensorflow` computation inside, and from the dataset graphs of sequence values
written by `tffexec.save_value`, and refuses the rest naming them, so a saved file either loads
in TFF 0.87 or is not written at all.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Union

import federated_language as fl
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.formats import atomic
from tffexec.formats import loading
from tffexec.formats import tf214_compat
from tffexec.formats.sequences import SequenceValue


def computation_proto(comp: Any) -> computation_pb2.Computation:
    """The `Computation` proto of a federated-language computation (or a proto, unchanged)."""
    if isinstance(comp, computation_pb2.Computation):
        return comp
    if isinstance(comp, fl.framework.ConcreteComputation):
        return comp.to_proto()
    if type(comp).__name__ == "PolymorphicComputation":
        raise errors.ArgumentError("cannot save a computation without a type: give its "
                                   "decorator the parameter types")
    raise errors.ArgumentError(f"cannot save a {type(comp).__name__}: expected a "
                               "federated-language computation or a Computation proto")


def _tensorflow_parts(message: Any):
    """Every `TensorFlow` message inside a computation proto (lambdas, blocks, calls, ...)."""
    if isinstance(message, computation_pb2.TensorFlow):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        repeated = (field.is_repeated if hasattr(field, "is_repeated")  # protobuf >= 6
                    else field.label == field.LABEL_REPEATED)
        if repeated:
            for item in value:
                yield from _tensorflow_parts(item)
        else:
            yield from _tensorflow_parts(value)


def compatible_computation(comp: Any) -> tuple[computation_pb2.Computation, list[str]]:
    """A copy of `comp`'s proto that TF 2.14 can import, and the `Op.attr`s stripped."""
    proto = computation_pb2.Computation()
    proto.CopyFrom(computation_proto(comp))
    stripped: set[str] = set()
    for i, part in enumerate(_tensorflow_parts(proto)):
        data, removed = tf214_compat.make_compatible(part.graph_def.value,
                                                     f"tensorflow computation #{i + 1}")
        part.graph_def.value = data
        stripped.update(removed)
    return proto, sorted(stripped)


def compatible_value(value: Any) -> Any:
    """`value` with each sequence's dataset graph made TF 2.14-importable (datasets -> graphs)."""
    import sys  # noqa: PLC0415

    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(value, tf.data.Dataset):
        value = SequenceValue.from_dataset(value)
    if isinstance(value, SequenceValue):
        if not value.has_graph_def and value.is_materialized:
            return value  # a list of elements: no graph to check
        data, removed = tf214_compat.make_compatible(value.graph_def(), "sequence")
        return value if not removed else SequenceValue(value.element_type, data)
    if isinstance(value, structure.Struct):
        return structure.Struct([(name, compatible_value(member))
                                 for name, member in structure.iter_elements(value)])
    if isinstance(value, dict):
        return type(value)((k, compatible_value(v)) for k, v in value.items())
    if isinstance(value, list):
        return [compatible_value(v) for v in value]
    return value


def save(comp: Any, path: Union[str, os.PathLike]) -> list[str]:
    """Writes `comp` as a serialized `Computation` that TFF 0.87 and `tffexec run` load.

    The file is written atomically, only after the whole computation passed the TF 2.14 check.
    Returns the `Op.attr`s that were stripped (holding defaults or hints).

    Raises:
      tffexec.errors.ArgumentError: `comp` is not a typed computation, uses ops or attributes
        TF 2.14 lacks (named), or the file cannot be written.
    """
    label = str(path)
    try:
        proto, stripped = compatible_computation(comp)
    except errors.ArgumentError as e:
        raise e.with_file(label) from None
    atomic.write(pathlib.Path(path), proto.SerializeToString(deterministic=True))
    return stripped


def load(source: Union[str, os.PathLike, bytes]) -> fl.framework.ConcreteComputation:
    """Reads a serialized `Computation` (a path or its bytes) as a callable computation.

    Calling it runs on tffexec (installed as the default context if no other one is), and it
    can be used inside `@federated_language.federated_computation` like any computation.
    """
    from tffexec import context  # noqa: PLC0415

    if isinstance(source, str):
        source = pathlib.Path(source)
    proto = loading.load_computation(source)
    context.ensure_installed()
    return fl.framework.ConcreteComputation(
        computation_proto=proto, context_stack=fl.framework.get_context_stack())
