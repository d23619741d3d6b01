"""`tffexec.tensorflow`: write TensorFlow computations without TFF (`computation`).

TFF's last release needs Python < 3.12 and TensorFlow 2.14; this module gives the same authoring
front end on current Python and TensorFlow:

    @tffexec.tensorflow.computation(np.float32, np.float32)
    def add(x, y):
        return x + y

`computation` is federated-language's own `ComputationWrapper` (the class TFF builds
`tff.tensorflow.computation` on) around tffexec's tracer (`tffexec.tf_tracing`), so the
decorator accepts what TFF's accepts: types or none (polymorphic until first called),
several parameters packed into a named struct, Python structures as in TFF, `tf.data`
datasets as sequences. The result is a federated-language computation: use it inside
`@federated_language.federated_computation` (`federated_map`, ...) or call it.

Importing this module installs tffexec as federated-language's default execution context
(`tffexec.install_context()`, unless a context other than federated-language's initial one is
already installed), so calling a computation runs it on tffexec's default stack. TensorFlow is
imported only when a function is traced.

`tensorflow_computation` and `as_computation` are the lower-level pair the test-suite uses to
build bare `Computation` protos.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import context
from tffexec import tf_tracing


def _is_tensorflow_object(obj: object) -> bool:
    """Whether `obj` is a TensorFlow dtype/spec (TensorFlow is then imported already)."""
    return type(obj).__module__.split(".")[0] == "tensorflow" and "tensorflow" in sys.modules


def to_type(spec: Any) -> fl.Type:
    """A federated-language type from a type spec that may hold TensorFlow dtypes and specs.

    Accepts what `federated_language.to_type` does, plus `tf.DType`, `tf.TensorSpec` and
    `tf.data.DatasetSpec`, in any Python structure.
    """
    if _is_tensorflow_object(spec):
        import tensorflow as tf  # noqa: PLC0415 - already imported by whoever made `spec`

        if isinstance(spec, tf.dtypes.DType):
            return fl.TensorType(np.str_ if spec == tf.string else spec.as_numpy_dtype)
        if isinstance(spec, (tf.TensorSpec, tf.data.DatasetSpec)):
            return tf_tracing.type_of_spec(spec)
    if isinstance(spec, (list, tuple)) and not isinstance(spec, fl.Type):
        if hasattr(spec, "_asdict"):
            return fl.StructWithPythonType(
                [(k, to_type(v)) for k, v in spec._asdict().items()], type(spec))
        if len(spec) == 2 and not isinstance(spec, list) and _is_dtype_shape_pair(spec):
            return fl.to_type(spec)
        return fl.StructWithPythonType([to_type(v) for v in spec], type(spec))
    if isinstance(spec, dict):
        return fl.StructWithPythonType([(k, to_type(v)) for k, v in spec.items()], type(spec))
    return fl.to_type(spec)


def _is_dtype_shape_pair(spec: tuple) -> bool:
    """`(np.int32, [2])`: federated-language's tensor shorthand, not a struct of two."""
    try:
        fl.to_type(spec)
    except (TypeError, ValueError):
        return False
    return isinstance(fl.to_type(spec), fl.TensorType)


def infer_type(value: Any) -> fl.Type:
    """The type of an argument a polymorphic computation was called with (datasets included)."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf  # noqa: PLC0415

        if isinstance(value, tf.data.Dataset):
            return fl.SequenceType(tf_tracing.type_of_spec(value.element_spec))
        if isinstance(value, (tf.Tensor, tf.Variable)) and hasattr(value, "numpy"):
            return fl.framework.infer_type(value.numpy())
    if isinstance(value, structure.Struct):
        return fl.StructType([(name, infer_type(member))
                              for name, member in structure.iter_elements(value)])
    if isinstance(value, dict):
        return fl.StructWithPythonType([(k, infer_type(v)) for k, v in value.items()], type(value))
    if isinstance(value, (list, tuple)) and not hasattr(value, "_asdict"):
        return fl.StructWithPythonType([infer_type(v) for v in value], type(value))
    return fl.framework.infer_type(value)


def _is_tensorflow_compatible(type_spec: Optional[fl.Type]) -> bool:
    if type_spec is None:
        return True
    if isinstance(type_spec, fl.StructType):
        return all(_is_tensorflow_compatible(t) for _, t in type_spec.items())
    if isinstance(type_spec, fl.SequenceType):
        return _is_tensorflow_compatible(type_spec.element)
    return isinstance(type_spec, fl.TensorType)


def _wrap(fn: Callable[..., Any], parameter_type: Optional[fl.Type], unpack: Optional[bool],
          name: Optional[str] = None) -> fl.framework.ConcreteComputation:
    """`ComputationWrapper`'s callback: traces `fn` for one concrete parameter type."""
    del name  # only for debugging in federated-language
    if not _is_tensorflow_compatible(parameter_type):
        raise TypeError(f"a tensorflow computation takes only tensors, structs and sequences, "
                        f"not {parameter_type}")
    one_arg = fl.framework.wrap_as_zero_or_one_arg_callable(fn, parameter_type, unpack)
    proto, function_type = tf_tracing.trace(one_arg, parameter_type)
    return fl.framework.ConcreteComputation(
        computation_proto=proto, context_stack=fl.framework.get_context_stack(),
        annotated_type=function_type)


#: The decorator: `@computation`, `@computation(type, ...)` or `computation(fn, type, ...)`.
computation = fl.framework.ComputationWrapper(_wrap, to_type, infer_type)


def tensorflow_computation(fn: Callable[..., Any], parameter_type: Any = None
                           ) -> computation_pb2.Computation:
    """The `Computation` proto of `fn` traced with one parameter of `parameter_type` (or none).

    Lower level than `computation`: `fn` always takes the whole parameter as one argument, and
    the graph has no session token placeholder, so its only inputs are the parameter's (tests
    that call the graph with flat inputs rely on it).
    """
    parameter_type = to_type(parameter_type) if parameter_type is not None else None
    one_arg = fl.framework.wrap_as_zero_or_one_arg_callable(fn, parameter_type, unpack=False) \
        if parameter_type is not None else fn
    return tf_tracing.trace(one_arg, parameter_type, session_token=False)[0]


def as_computation(proto: computation_pb2.Computation) -> fl.framework.ConcreteComputation:
    """A federated-language computation object wrapping `proto`, usable inside traced code."""
    return fl.framework.ConcreteComputation(
        computation_proto=proto, context_stack=fl.framework.get_context_stack())


context.ensure_installed()

__all__ = ["computation", "to_type", "infer_type", "tensorflow_computation", "as_computation",
           "structure"]
