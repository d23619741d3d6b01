"""Traces a Python function into a `tensorflow` Computation proto, the way TFF 0.87 does.

Why tracing is ours and not TFF's: TFF needs Python < 3.12 and TensorFlow 2.14. This module
builds the same proto with plain TensorFlow on any version tffexec runs on, following TFF's
rules so that one Python function gives the same computation in both:

- graph mode (`tf.Graph`), no `tf.function`: no automatic control dependencies, so a stateful
  op whose result nothing uses does not run (as in TFF);
- a scalar string placeholder `session_token_tensor` (TFF always stamps one);
- parameters: a placeholder per tensor, a `tf.data` dataset per sequence (from a variant
  placeholder), a `Struct` of those per struct;
- variables created while tracing (recorded through `tf.variable_creator_scope`) and table
  initialisers are run by the computation's `initialize_op`;
- calling another `tensorflow` computation inside the function imports its graph (its
  initialize op joins this one's), as TFF's tracing context does;
- results: tensors (variables are read), datasets, sparse and ragged tensors (as TFF: named
  structs of their component tensors), and Python structures: lists/tuples are
  unnamed structs; dicts, namedtuples, attrs classes and named `Struct`s are named structs.
  The Python container is kept on the result type, so calling the computation gives the same
  container back.

TensorFlow is imported only when something is traced (`tffexec.tf_runtime`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2
from google.protobuf import any_pb2

#: The name TFF gives the session token placeholder.
SESSION_TOKEN_NAME = "session_token_tensor"


def _tf():
    from tffexec import tf_runtime  # noqa: PLC0415

    return tf_runtime.tensorflow()


def spec_of_type(type_spec: fl.Type) -> Any:
    """The `tf.TypeSpec` structure of a sequence element type (named structs -> dicts)."""
    tf = _tf()
    if isinstance(type_spec, fl.StructType):
        items = list(type_spec.items())
        container = getattr(type_spec, "python_container", None)
        if items and all(name for name, _ in items):
            specs = {name: spec_of_type(t) for name, t in items}
            if container is not None and container is not dict and not issubclass(container, dict):
                if attrs.has(container) or hasattr(container, "_fields"):
                    return container(**specs)
            return specs
        return tuple(spec_of_type(t) for _, t in items)
    if isinstance(type_spec, fl.TensorType):
        dtype = tf.string if np.dtype(type_spec.dtype).kind in "SUO" else type_spec.dtype
        return tf.TensorSpec(type_spec.shape, dtype)
    raise TypeError(f"a sequence element cannot be of type {type_spec}")


def type_of_spec(spec: Any) -> fl.Type:
    """The federated-language type of a `tf.TypeSpec` structure (a dataset's element_spec)."""
    tf = _tf()
    if isinstance(spec, tf.TensorSpec):
        dtype = np.str_ if spec.dtype == tf.string else spec.dtype.as_numpy_dtype
        shape = spec.shape.as_list() if spec.shape.rank is not None else None
        return fl.TensorType(dtype, shape)
    if isinstance(spec, tf.data.DatasetSpec):
        return fl.SequenceType(type_of_spec(spec.element_spec))
    if hasattr(spec, "_asdict"):
        return fl.StructWithPythonType([(k, type_of_spec(v)) for k, v in spec._asdict().items()],
                                       type(spec))
    if attrs.has(type(spec)):
        return fl.StructWithPythonType(
            [(k, type_of_spec(v)) for k, v in attrs.asdict(spec, recurse=False).items()],
            type(spec))
    if isinstance(spec, dict):
        return fl.StructWithPythonType([(k, type_of_spec(v)) for k, v in spec.items()], type(spec))
    if isinstance(spec, (list, tuple)):
        return fl.StructWithPythonType([type_of_spec(v) for v in spec], type(spec))
    raise TypeError(f"no federated-language type for the dataset element spec {spec!r}")


def _stamp_parameter(type_spec: fl.Type, name: str,
                     binding: computation_pb2.TensorFlow.Binding) -> Any:
    """Placeholders for a parameter of `type_spec`; fills `binding` and returns the Python value."""
    tf = _tf()
    if isinstance(type_spec, fl.TensorType):
        dtype = tf.string if np.dtype(type_spec.dtype).kind in "SUO" else type_spec.dtype
        placeholder = tf.compat.v1.placeholder(dtype, shape=type_spec.shape, name=name)
        binding.tensor.tensor_name = placeholder.name
        return placeholder
    if isinstance(type_spec, fl.StructType):
        binding.struct.SetInParent()
        members = []
        for member_name, member_type in type_spec.items():
            members.append((member_name, _stamp_parameter(
                member_type, f"{name}_{member_name}", binding.struct.element.add())))
        return structure.Struct(members)
    if isinstance(type_spec, fl.SequenceType):
        with tf.device("/device:cpu:0"):
            variant = tf.compat.v1.placeholder(tf.variant, shape=[], name=name)
            binding.sequence.variant_tensor_name = variant.name
            return tf.data.experimental.from_variant(variant, spec_of_type(type_spec.element))
    raise TypeError(f"a tensorflow computation cannot take a parameter of type {type_spec}")


class _Parts:
    """A composite tensor's component tensors, bound as a named struct as TFF binds them.

    No Python container: federated-language cannot rebuild a `tf.SparseTensor` from its parts,
    so calling the computation gives the named struct of component arrays.
    """

    def __init__(self, members: list):
        self.members = members


def _named_members(value: Any) -> Optional[tuple[list, Optional[type]]]:
    """(name, member) pairs and the container of a named Python structure, else None."""
    if isinstance(value, structure.Struct):
        return list(structure.iter_elements(value)), None
    if isinstance(value, _Parts):
        return value.members, None
    if hasattr(value, "_asdict") and isinstance(value, tuple):
        return list(value._asdict().items()), type(value)
    if attrs.has(type(value)):
        return list(attrs.asdict(value, recurse=False).items()), type(value)
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"a dict returned by a tensorflow computation needs str keys, "
                                f"not {key!r}")
        return list(value.items()), type(value)
    return None


def _capture_result(value: Any, binding: computation_pb2.TensorFlow.Binding) -> fl.Type:
    """Binds a traced result into `binding`; returns its type (with Python containers)."""
    tf = _tf()
    named = _named_members(value)
    if named is not None:
        members, container = named
        types = [(name, _capture_result(member, binding.struct.element.add()))
                 for name, member in members]
        binding.struct.SetInParent()
        if container is None:
            return fl.StructType(types)
        return fl.StructWithPythonType(types, container)
    if isinstance(value, (list, tuple)):
        binding.struct.SetInParent()
        types = [_capture_result(member, binding.struct.element.add()) for member in value]
        return fl.StructWithPythonType(types, type(value))
    if isinstance(value, tf.SparseTensor):  # as TFF: a named struct of its three tensors
        return _capture_result(_Parts([
            ("indices", value.indices), ("values", value.values),
            ("dense_shape", value.dense_shape)]), binding)
    if isinstance(value, tf.RaggedTensor):
        return _capture_result(_Parts([
            ("flat_values", value.flat_values),
            ("nested_row_splits", value.nested_row_splits)]), binding)
    if isinstance(value, tf.data.Dataset):
        element_type = type_of_spec(value.element_spec)
        with tf.device("/device:cpu:0"):
            variant = tf.identity(tf.data.experimental.to_variant(value))
        binding.sequence.variant_tensor_name = variant.name
        return fl.SequenceType(element_type)
    if isinstance(value, tf.Variable):
        tensor = value.read_value()
    elif tf.is_tensor(value):
        tensor = tf.identity(value)
    else:
        try:
            tensor = tf.constant(value)
        except (TypeError, ValueError) as e:
            raise TypeError(f"a tensorflow computation cannot return a {type(value).__name__}: "
                            f"{e}") from None
    binding.tensor.tensor_name = tensor.name
    dtype = np.str_ if tensor.dtype == tf.string else tensor.dtype.as_numpy_dtype
    shape = tensor.shape.as_list() if tensor.shape.rank is not None else None
    return fl.TensorType(dtype, shape)


def _members(value: Any) -> list:
    """The members of a Python structure, in order (Struct, dict, attrs, tuple, list)."""
    if isinstance(value, structure.Struct):
        return [member for _, member in structure.iter_elements(value)]
    if isinstance(value, dict):
        return list(value.values())
    if attrs.has(type(value)):
        return list(attrs.astuple(value, recurse=False))
    return list(value)


def _feed(binding: computation_pb2.TensorFlow.Binding, value: Any, input_map: dict) -> None:
    """Maps the placeholders of an inner computation's parameter to the outer graph's values."""
    tf = _tf()
    kind = binding.WhichOneof("binding")
    if kind == "struct":
        for member_binding, member in zip(binding.struct.element, _members(value), strict=True):
            _feed(member_binding, member, input_map)
    elif kind == "sequence":
        input_map[binding.sequence.variant_tensor_name] = tf.data.experimental.to_variant(value)
    elif kind == "tensor":
        input_map[binding.tensor.tensor_name] = value


def _result_names(binding: computation_pb2.TensorFlow.Binding) -> list[str]:
    kind = binding.WhichOneof("binding")
    if kind == "struct":
        return [name for member in binding.struct.element for name in _result_names(member)]
    if kind == "sequence":
        return [binding.sequence.variant_tensor_name]
    return [binding.tensor.tensor_name]


def _rebuild(type_spec: fl.Type, tensors: Any) -> Any:
    """The inner computation's result as Python values of the outer graph."""
    tf = _tf()
    if isinstance(type_spec, fl.StructType):
        return structure.Struct([(name, _rebuild(member, tensors))
                                 for name, member in type_spec.items()])
    if isinstance(type_spec, fl.SequenceType):
        return tf.data.experimental.from_variant(next(tensors), spec_of_type(type_spec.element))
    return next(tensors)


class _InliningContext(fl.framework.SyncContext):
    """Calling a `tensorflow` computation while tracing another one imports its graph (as TFF).

    The inner computation's initialize op joins the outer one's (`init_ops`).
    """

    def __init__(self, session_token: Any):
        self.session_token = session_token
        self.init_ops: list = []

    def invoke(self, comp: Any, arg: Any) -> Any:
        tf = _tf()
        proto = comp.to_proto()
        if proto.WhichOneof("computation") != "tensorflow":
            raise TypeError("only tensorflow computations can be called inside a tensorflow "
                            f"computation, not a {proto.WhichOneof('computation')} one")
        inner = proto.tensorflow
        input_map: dict = {}
        if inner.session_token_tensor_name and self.session_token is not None:
            input_map[inner.session_token_tensor_name] = self.session_token
        if inner.HasField("parameter"):
            _feed(inner.parameter, arg, input_map)
        names = _result_names(inner.result) + ([inner.initialize_op] if inner.initialize_op else [])
        imported = tf.compat.v1.import_graph_def(
            tf.compat.v1.GraphDef.FromString(inner.graph_def.value), input_map=input_map,
            return_elements=names, name="subcomputation")
        if inner.initialize_op:
            self.init_ops.append(imported.pop())
        result = _rebuild(comp.type_signature.result, iter(imported))
        return fl.framework.type_to_py_container(result, comp.type_signature.result)


def trace(fn: Callable[..., Any], parameter_type: Optional[fl.Type], *,
          session_token: bool = True) -> tuple[computation_pb2.Computation, fl.FunctionType]:
    """Traces `fn` (no argument, or one of `parameter_type`) into a `tensorflow` computation.

    Returns the proto and its function type, whose result keeps the Python containers `fn`
    returned (the proto's type cannot say them). `session_token=False` leaves out TFF's
    session token placeholder (graphs whose only inputs are the parameter's).
    """
    tf = _tf()
    proto = computation_pb2.Computation()
    graph = tf.Graph()
    created: list = []

    def record(next_creator, **kwargs):
        variable = next_creator(**kwargs)
        created.append(variable)
        return variable

    with graph.as_default():
        token = (tf.compat.v1.placeholder(tf.string, shape=(), name=SESSION_TOKEN_NAME)
                 if session_token else None)
        inlining = _InliningContext(token)
        with tf.variable_creator_scope(record), \
                fl.framework.get_context_stack().install(inlining):
            if parameter_type is None:
                result = fn()
            else:
                result = fn(_stamp_parameter(parameter_type, "arg", proto.tensorflow.parameter))
        if result is None:
            raise fl.framework.ComputationReturnedNoneError(fn)
        initializers = []
        if created:
            initializers.append(tf.compat.v1.initializers.variables(created))
        initializers.extend(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.TABLE_INITIALIZERS))
        initializers.extend(inlining.init_ops)
        if initializers:
            proto.tensorflow.initialize_op = tf.group(*initializers, name="initializers").name
        result_type = _capture_result(result, proto.tensorflow.result)
    if token is not None:
        proto.tensorflow.session_token_tensor_name = token.name
    proto.tensorflow.graph_def.CopyFrom(any_pb2.Any(
        type_url="type.googleapis.com/tensorflow.GraphDef",
        value=graph.as_graph_def().SerializeToString(deterministic=True)))
    function_type = fl.FunctionType(parameter_type, result_type)
    proto.type.CopyFrom(function_type.to_proto())
    return proto, function_type
