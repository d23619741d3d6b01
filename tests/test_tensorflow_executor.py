"""One test per behaviour of the leaf `TensorFlowExecutor` (and the `GraphFunction`s it runs).

Graphs are made with `tffexec.tensorflow` (real TensorFlow tracing, no TFF);
string-valued results are traced by a small local helper.
"""
from __future__ import annotations

import threading

import federated_language as fl
import numpy as np
import pytest
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2 as pb
from google.protobuf import any_pb2

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_function
from tffexec.formats import arrays
from tffexec.formats import sequences
from tffexec import tensorflow as tfc

tf = pytest.importorskip("tensorflow")

I32 = fl.TensorType(np.int32)
F32 = fl.TensorType(np.float32)
STR = fl.TensorType(np.str_)


# -- helpers ---------------------------------------------------------------------------------------
def string_computation(fn, parameter_shape, result_shape) -> pb.Computation:
    """A `tensorflow` computation from strings to strings (`fn` maps the placeholder)."""
    graph = tf.Graph()
    proto = pb.Computation()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.string, parameter_shape, name="arg")
        y = tf.identity(fn(x))
    proto.tensorflow.parameter.tensor.tensor_name = x.name
    proto.tensorflow.result.tensor.tensor_name = y.name
    proto.tensorflow.graph_def.CopyFrom(any_pb2.Any(
        type_url="type.googleapis.com/tensorflow.GraphDef",
        value=graph.as_graph_def().SerializeToString(deterministic=True)))
    proto.type.CopyFrom(fl.FunctionType(fl.TensorType(np.str_, parameter_shape),
                                        fl.TensorType(np.str_, result_shape)).to_proto())
    return proto


def call(executor, comp, arg=None):
    """Embeds `comp` and `arg` in the leaf executor, calls, and materializes the result."""
    fn = executor.value(comp)
    argument = None
    if arg is not None:
        argument = executor.value(arg, fl.Type.from_proto(comp.type).parameter)
    return executor.materialize(executor.call(fn, argument))


@pytest.fixture
def ex():
    executor = tensorflow_executor.TensorFlowExecutor()
    yield executor
    executor.close()


def variable_graph() -> pb.Computation:
    """x -> a variable starting at 0, incremented by x twice, read: always 2x if stateless."""

    def fn(x):
        v = tf.Variable(0.0, name="v")
        with tf.control_dependencies([v.assign_add(x)]):
            with tf.control_dependencies([v.assign_add(x)]):
                return v.read_value() + tf.zeros([])

    return tfc.tensorflow_computation(fn, np.float32)


def table_graph() -> pb.Computation:
    """Looks four string keys up in a static hash table (default -1)."""

    def fn(keys):
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(["a", "b", "c"]),
                                                tf.constant([1, 2, 3], tf.int64)),
            default_value=tf.constant(-1, tf.int64))
        return table.lookup(keys)

    return tfc.tensorflow_computation(fn, fl.TensorType(np.str_, [4]))


# -- tensors -----------------------------------------------------------------------------------------
def test_scalar_in_scalar_out_keeps_dtype_and_shape(ex):
    result = call(ex, tfc.tensorflow_computation(lambda a: a * 3, np.int32), np.int32(5))
    assert isinstance(result, np.ndarray) and result.shape == () and result.dtype == np.int32
    assert result == 15


def test_shaped_tensor_in_shaped_tensor_out(ex):
    comp = tfc.tensorflow_computation(lambda a: tf.transpose(a) + 1.0,
                                      fl.TensorType(np.float32, [2, 3]))
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = call(ex, comp, value)
    assert result.shape == (3, 2) and result.dtype == np.float32
    np.testing.assert_array_equal(result, value.T + 1)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16, np.float64, np.bool_])
def test_dtypes_are_preserved(ex, dtype):
    comp = tfc.tensorflow_computation(lambda a: tf.identity(a), fl.TensorType(dtype, [2]))
    value = np.array([1, 0], dtype=dtype)
    result = call(ex, comp, value)
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, value)


def test_string_scalar_in_and_out_as_object_bytes(ex):
    comp = string_computation(lambda s: tf.strings.join([s, "!"]), [], [])
    result = call(ex, comp, np.array("héllo".encode(), dtype=object))
    assert result.dtype == object and result.shape == ()
    assert result.item() == "héllo!".encode()


def test_string_tensor_in_and_out_as_object_bytes(ex):
    comp = string_computation(lambda s: tf.strings.upper(s), [3], [3])
    result = call(ex, comp, np.array([b"a", b"bc", b""], dtype=object))
    assert result.dtype == object
    assert list(result) == [b"A", b"BC", b""]


def test_no_argument_computation(ex):
    assert call(ex, tfc.tensorflow_computation(lambda: np.int32(7))) == 7


def test_literal_node_is_a_value(ex):
    comp = pb.Computation()
    comp.type.CopyFrom(fl.TensorType(np.int32, [2]).to_proto())
    comp.literal.value.CopyFrom(arrays.array_to_proto(np.array([4, 5], np.int32))
                                if hasattr(arrays, "array_to_proto")
                                else fl.array_to_proto(np.array([4, 5], np.int32)))
    value = ex.value(comp)
    np.testing.assert_array_equal(ex.materialize(value), [4, 5])


# -- structs -------------------------------------------------------------------------------------------
def test_named_struct_parameter_and_result_keep_names(ex):
    t = fl.StructType([("x", np.int32), ("y", fl.TensorType(np.float32, [2]))])
    comp = tfc.tensorflow_computation(lambda s: {"sum": tf.cast(s["x"], tf.float32) + s["y"],
                                                 "x": s["x"]}, t)
    result = call(ex, comp, structure.Struct([("x", np.int32(1)),
                                              ("y", np.array([0.5, 1.5], np.float32))]))
    assert [n for n, _ in structure.iter_elements(result)] == ["sum", "x"]
    np.testing.assert_array_equal(result.sum, np.array([1.5, 2.5], np.float32))
    assert result.x == 1


def test_unnamed_struct_parameter_and_result(ex):
    comp = tfc.tensorflow_computation(lambda s: (s[1], s[0]), fl.StructType([np.int32, np.float32]))
    result = call(ex, comp, structure.Struct([(None, np.int32(1)), (None, np.float32(2.0))]))
    assert [n for n, _ in structure.iter_elements(result)] == [None, None]
    assert result[0] == np.float32(2.0) and result[1] == 1


def test_nested_struct_result(ex):
    comp = tfc.tensorflow_computation(lambda a: {"outer": {"inner": a, "twice": [a, a]}}, np.int32)
    result = call(ex, comp, np.int32(3))
    assert result.outer.inner == 3 and [int(v) for v in result.outer.twice] == [3, 3]


def test_empty_struct_result_from_a_zero_output_graph(ex):
    comp = tfc.tensorflow_computation(lambda a: [], np.int32)
    result = call(ex, comp, np.int32(1))
    assert isinstance(result, structure.Struct) and len(result) == 0


def test_empty_struct_parameter(ex):
    comp = tfc.tensorflow_computation(lambda s: tf.constant(4), fl.StructType([]))
    assert call(ex, comp, structure.Struct([])) == 4


def test_struct_and_selection_of_leaf_values(ex):
    a = ex.value(np.int32(1), I32)
    b = ex.value(np.float32(2), F32)
    pair = ex.struct([("a", a), (None, b)])
    assert ex.materialize(ex.selection(pair, 1)) == np.float32(2)
    assert [n for n, _ in structure.iter_elements(ex.materialize(pair))] == ["a", None]


def test_selection_out_of_range_is_computation_error(ex):
    pair = ex.struct([(None, ex.value(np.int32(1), I32))])
    with pytest.raises(errors.ComputationError, match="out of range"):
        ex.selection(pair, 1)


def test_selection_from_a_tensor_is_computation_error(ex):
    with pytest.raises(errors.ComputationError, match="cannot select"):
        ex.selection(ex.value(np.int32(1), I32), 0)


# -- sequences -------------------------------------------------------------------------------------------
def test_sequence_parameter_is_a_dataset(ex):
    comp = tfc.tensorflow_computation(lambda ds: ds.reduce(np.int64(0), lambda s, x: s + x),
                                      fl.SequenceType(np.int64))
    seq = sequences.SequenceValue(fl.TensorType(np.int64), elements=[np.int64(v) for v in (1, 2, 3)])
    assert call(ex, comp, seq) == 6


def test_sequence_result_is_a_sequence_value(ex):
    comp = tfc.tensorflow_computation(lambda n: tf.data.Dataset.range(n).map(lambda x: x * 2),
                                      np.int64)
    result = call(ex, comp, np.int64(3))
    assert isinstance(result, sequences.SequenceValue)
    assert [int(e) for e in result.elements()] == [0, 2, 4]


# -- state: variables and hash tables -----------------------------------------------------------------------
def test_variable_graph_runs_its_initializer_on_every_call(ex):
    comp = variable_graph()
    assert comp.tensorflow.initialize_op
    fn = ex.value(comp)
    results = [float(ex.materialize(ex.call(fn, ex.value(np.float32(x), F32)))) for x in (1, 2, 1)]
    assert results == [2.0, 4.0, 2.0]  # no call sees the previous call's variable value


def test_hash_table_graph_called_repeatedly_gives_the_same_answer(ex):
    comp = table_graph()
    assert comp.tensorflow.initialize_op
    fn = ex.value(comp)
    keys = ex.value(np.array([b"c", b"a", b"zz", b"b"], dtype=object), fl.TensorType(np.str_, [4]))
    for _ in range(20):
        result = ex.materialize(ex.call(fn, keys))
        assert result.dtype == np.int64
        np.testing.assert_array_equal(result, [3, 1, -1, 2])


def test_hash_table_graph_embedded_twice_keeps_working(ex):
    comp = table_graph()
    first = ex.value(comp)
    copy = pb.Computation.FromString(comp.SerializeToString())
    second = ex.value(copy)
    keys = ex.value(np.array([b"a", b"b", b"c", b"d"], dtype=object), fl.TensorType(np.str_, [4]))
    for fn in (first, second, first):
        np.testing.assert_array_equal(ex.materialize(ex.call(fn, keys)), [1, 2, 3, -1])


def _hammer(target, threads: int = 8):
    failures = []
    barrier = threading.Barrier(threads)

    def worker(i):
        try:
            barrier.wait()
            target(i)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            failures.append(repr(e))

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return failures


def test_variable_graph_called_from_many_threads_gives_independent_results(ex):
    fn = ex.value(variable_graph())
    wrong = []

    def target(i):
        for j in range(25):
            x = np.float32(i * 100 + j)
            got = float(ex.materialize(ex.call(fn, ex.value(x, F32))))
            if got != 2 * x:
                wrong.append((float(x), got))

    failures = _hammer(target)
    assert failures == [] and wrong == []


def test_hash_table_graph_called_from_many_threads(ex):
    fn = ex.value(table_graph())
    keys_type = fl.TensorType(np.str_, [4])
    wrong = []

    def target(i):
        keys = ex.value(np.array([b"b", b"x", b"a", b"c"], dtype=object), keys_type)
        for _ in range(15):
            got = ex.materialize(ex.call(fn, keys))
            if list(got) != [2, -1, 1, 3]:
                wrong.append(list(got))

    assert _hammer(target) == [] and wrong == []


@pytest.fixture
def built(monkeypatch) -> list:
    """The GraphFunctions that imported their graph into TensorFlow, one entry per import."""
    imports: list = []
    original = tf_function.GraphFunction._build_instance

    def counting(self):
        imports.append(self)
        return original(self)

    monkeypatch.setattr(tf_function.GraphFunction, "_build_instance", counting)
    return imports


def test_stateless_graph_is_imported_once_for_all_calls(ex, built):
    comp = tfc.tensorflow_computation(lambda a: a + 1, np.int32)
    fn = ex.value(comp)
    for i in range(10):
        ex.call(fn, ex.value(np.int32(i), I32))
    # An equal graph in another proto object shares the imported function too.
    ex.call(ex.value(pb.Computation.FromString(comp.SerializeToString())),
            ex.value(np.int32(0), I32))
    assert len(built) == 1


def test_stateful_graph_reuses_idle_instances(ex, built):
    fn = ex.value(variable_graph())
    for x in range(5):
        ex.call(fn, ex.value(np.float32(x), F32))
    assert len(built) == 1  # sequential calls borrow the same instance


# -- errors ----------------------------------------------------------------------------------------------------
def test_tensorflow_runtime_failure_is_execution_error(ex):
    comp = tfc.tensorflow_computation(lambda a: tf.debugging.check_numerics(a, "bad value"),
                                      np.float32)
    with pytest.raises(errors.ExecutionError, match="bad value"):
        call(ex, comp, np.float32(np.nan))


@pytest.mark.parametrize("kind", ["data", "xla"])
def test_data_and_xla_nodes_are_computation_errors_naming_the_kind(ex, kind):
    comp = pb.Computation()
    comp.type.CopyFrom(I32.to_proto())
    if kind == "data":
        comp.data.uri = "file:///nowhere"
    else:
        comp.xla.hlo_module.type_url = "type.googleapis.com/xla.HloModuleProto"
    with pytest.raises(errors.ComputationError, match=kind):
        ex.value(comp)


def test_compositional_node_at_the_leaf_is_computation_error(ex):
    comp = pb.Computation()
    comp.type.CopyFrom(fl.FunctionType(I32, I32).to_proto())
    getattr(comp, "lambda").parameter_name = "x"
    getattr(comp, "lambda").result.reference.name = "x"
    with pytest.raises(errors.ComputationError, match="'lambda'"):
        ex.value(comp)


def test_graph_def_that_is_not_a_graph_is_computation_error(ex):
    comp = tfc.tensorflow_computation(lambda a: a, np.int32)
    comp.tensorflow.graph_def.value = b"\xff\xff not a graph"
    with pytest.raises(errors.ComputationError, match="GraphDef"):
        ex.value(comp)


def test_binding_to_a_missing_tensor_is_computation_error(ex):
    comp = tfc.tensorflow_computation(lambda a: a, np.int32)
    comp.tensorflow.result.tensor.tensor_name = "no_such_tensor:0"
    with pytest.raises(errors.ComputationError, match="bindings"):
        ex.value(comp)


def test_calling_a_tensor_is_computation_error(ex):
    with pytest.raises(errors.ComputationError, match="not a function"):
        ex.call(ex.value(np.int32(1), I32))


def test_calling_a_function_without_its_argument_is_computation_error(ex):
    fn = ex.value(tfc.tensorflow_computation(lambda a: a, np.int32))
    with pytest.raises(errors.ComputationError, match="without its argument"):
        ex.call(fn)


def test_materializing_a_function_is_computation_error(ex):
    fn = ex.value(tfc.tensorflow_computation(lambda a: a, np.int32))
    with pytest.raises(errors.ComputationError, match="cannot be returned"):
        ex.materialize(fn)


def test_plain_value_needs_a_type(ex):
    with pytest.raises(errors.InternalError):
        ex.value(np.int32(1))


# -- through the whole stack ------------------------------------------------------------------------------------
def test_hash_table_graph_mapped_over_clients_runs_once_per_client():
    comp = tfc.as_computation(table_graph())

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.str_, [4]), fl.CLIENTS))
    def lookup(keys):
        return fl.federated_map(comp, keys)

    result = runner_lib.run(lookup, [["a", "a", "a", "a"], ["c", "b", "q", "a"], ["b"] * 4])
    assert [list(r) for r in result] == [[1] * 4, [3, 2, -1, 1], [2] * 4]


def test_variable_graph_mapped_over_clients_is_stateless_per_client():
    comp = tfc.as_computation(variable_graph())

    @fl.federated_computation(fl.FederatedType(np.float32, fl.CLIENTS))
    def twice(x):
        return fl.federated_map(comp, x)

    assert [float(v) for v in runner_lib.run(twice, [1.0, 5.0, 1.0])] == [2.0, 10.0, 2.0]
