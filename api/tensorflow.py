"""`tffexec.tensorflow`: builds a `tensorflow` Computation proto from a Python function, no TFF.

An authoring helper, not a wire format: it lives in the API package (the seed of the authoring
API), and `tffexec.formats` stays bytes <-> values.

TFF serializes TensorFlow functions as a GraphDef plus parameter/result bindings. This module
does the same with plain TensorFlow graph-mode tracing, so tests and users can make small
computations (and compose them with federated-language's `federated_computation` tracing)
on a machine where TFF cannot be installed. TensorFlow is imported only when it is called.

Python structure of arguments and results: tensors; lists/tuples are unnamed structs; dicts
are named structs (insertion order); a `tf.data.Dataset` is a sequence.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import federated_language
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2
from google.protobuf import any_pb2


def _tf():
    from tffexec import tf_runtime  # noqa: PLC0415

    return tf_runtime.tensorflow()


def _placeholders(type_spec, binding: computation_pb2.TensorFlow.Binding, prefix: str):
    tf = _tf()
    if isinstance(type_spec, federated_language.StructType):
        elements = []
        for i, (name, member) in enumerate(type_spec.items()):
            child = binding.struct.element.add()
            elements.append((name, _placeholders(member, child, f"{prefix}_{i}")))
        if all(name for name, _ in elements) and elements:
            return {name: v for name, v in elements}
        return [v for _, v in elements]
    if isinstance(type_spec, federated_language.SequenceType):
        variant = tf.compat.v1.placeholder(tf.variant, shape=[], name=prefix)
        binding.sequence.variant_tensor_name = variant.name
        return tf.data.experimental.from_variant(variant, _element_spec(type_spec.element))
    if isinstance(type_spec, federated_language.TensorType):
        placeholder = tf.compat.v1.placeholder(type_spec.dtype, shape=type_spec.shape, name=prefix)
        binding.tensor.tensor_name = placeholder.name
        return placeholder
    raise TypeError(f"a tensorflow computation cannot take {type_spec}")


def _element_spec(type_spec):
    tf = _tf()
    if isinstance(type_spec, federated_language.StructType):
        items = list(type_spec.items())
        if items and all(name for name, _ in items):
            return {name: _element_spec(t) for name, t in items}
        return tuple(_element_spec(t) for _, t in items)
    return tf.TensorSpec(type_spec.shape, type_spec.dtype)


def _bind_result(value, binding: computation_pb2.TensorFlow.Binding):
    """Binds a traced result; returns its type."""
    tf = _tf()
    if isinstance(value, dict):
        elements = []
        for name, v in value.items():
            elements.append((name, _bind_result(v, binding.struct.element.add())))
        return federated_language.StructType(elements)
    if isinstance(value, (list, tuple)):
        return federated_language.StructType(
            [(None, _bind_result(v, binding.struct.element.add())) for v in value])
    if isinstance(value, tf.data.Dataset):
        variant = tf.identity(tf.data.experimental.to_variant(value))
        binding.sequence.variant_tensor_name = variant.name
        return federated_language.SequenceType(_type_of_spec(value.element_spec))
    tensor = tf.identity(tf.convert_to_tensor(value))
    binding.tensor.tensor_name = tensor.name
    return federated_language.TensorType(tensor.dtype.as_numpy_dtype, tensor.shape.as_list()
                                         if tensor.shape.rank is not None else None)


def _type_of_spec(spec):
    if isinstance(spec, dict):
        return federated_language.StructType([(k, _type_of_spec(v)) for k, v in spec.items()])
    if isinstance(spec, (list, tuple)):
        return federated_language.StructType([(None, _type_of_spec(v)) for v in spec])
    return federated_language.TensorType(spec.dtype.as_numpy_dtype, spec.shape.as_list())


def tensorflow_computation(fn: Callable[..., Any], parameter_type=None) -> computation_pb2.Computation:
    """Traces `fn` into a `tensorflow` computation of type (parameter_type -> inferred result)."""
    tf = _tf()
    parameter_type = federated_language.to_type(parameter_type) if parameter_type is not None else None
    proto = computation_pb2.Computation()
    graph = tf.Graph()
    with graph.as_default():
        if parameter_type is None:
            result = fn()
        else:
            result = fn(_placeholders(parameter_type, proto.tensorflow.parameter, "arg"))
        result_type = _bind_result(result, proto.tensorflow.result)
        initializers = []
        if tf.compat.v1.global_variables():
            initializers.append(tf.compat.v1.global_variables_initializer())
        if tf.compat.v1.tables_initializer().control_inputs:
            initializers.append(tf.compat.v1.tables_initializer())
        if initializers:
            proto.tensorflow.initialize_op = tf.group(*initializers, name="tffexec_init").name
    graph_def = graph.as_graph_def()
    proto.tensorflow.graph_def.CopyFrom(any_pb2.Any(
        type_url="type.googleapis.com/tensorflow.GraphDef",
        value=graph_def.SerializeToString(deterministic=True)))
    function_type = federated_language.FunctionType(parameter_type, result_type)
    proto.type.CopyFrom(function_type.to_proto())
    return proto


def as_computation(proto: computation_pb2.Computation):
    """A federated-language computation object wrapping `proto`, usable inside traced code."""
    return federated_language.framework.ConcreteComputation(
        computation_proto=proto,
        context_stack=federated_language.framework.get_context_stack())


__all__ = ["tensorflow_computation", "as_computation", "structure"]
