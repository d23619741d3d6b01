"""One test per behaviour of every federated, generic and sequence intrinsic tffexec implements.

Computations are traced with federated-language around small `tensorflow` computations built by
`tffexec.tensorflow`; intrinsics that federated-language's Python API does not
expose (generic_*, secure_modular_sum, mixed all-equal arguments) are written as protos directly.
Expected values follow TFF's runtimes (tff-runtime-facts.md §4) and the TFF-made example cases.
"""
from __future__ import annotations

import ast
import pathlib

import federated_language as fl
import numpy as np
import pytest
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import intrinsics
from tffexec import runner as runner_lib
from tffexec.factories import config as config_lib
from tffexec import tensorflow as tfc

pytestmark = pytest.mark.filterwarnings("ignore:.*federated_value.*:DeprecationWarning")

C, S = fl.CLIENTS, fl.SERVER
I32 = fl.TensorType(np.int32)
F32 = fl.TensorType(np.float32)

# -- helpers -------------------------------------------------------------------------------------
def tf_fn(fn, parameter_type=None):
    """A `tensorflow` computation usable inside federated-language tracing."""
    return tfc.as_computation(tfc.tensorflow_computation(fn, parameter_type))


def clients(t, all_equal=False):
    return fl.FederatedType(t, C, all_equal=all_equal)


def server(t):
    return fl.FederatedType(t, S)


def intrinsic_proto(uri, parameter_type, result_type) -> computation_pb2.Computation:
    """`(x -> uri(x))` written as a proto, so any (even mixed) concrete type can be used."""
    parameter_type = fl.to_type(parameter_type)
    result_type = fl.to_type(result_type)
    fn_type = fl.FunctionType(parameter_type, result_type)
    comp = computation_pb2.Computation()
    comp.type.CopyFrom(fn_type.to_proto())
    lam = getattr(comp, "lambda")
    lam.parameter_name = "x"
    lam.result.type.CopyFrom(result_type.to_proto())
    lam.result.call.function.type.CopyFrom(fn_type.to_proto())
    lam.result.call.function.intrinsic.uri = uri
    lam.result.call.argument.type.CopyFrom(parameter_type.to_proto())
    lam.result.call.argument.reference.name = "x"
    return comp


def map_proto(uri, fn_proto, data_type, result_type) -> computation_pb2.Computation:
    """`(v -> uri(<fn, v>))` for a map-like intrinsic, written as a proto."""
    data_type, result_type = fl.to_type(data_type), fl.to_type(result_type)
    fn_type = fl.Type.from_proto(fn_proto.type)
    arg_type = fl.StructType([fn_type, data_type])
    comp = computation_pb2.Computation()
    comp.type.CopyFrom(fl.FunctionType(data_type, result_type).to_proto())
    lam = getattr(comp, "lambda")
    lam.parameter_name = "v"
    call = lam.result
    call.type.CopyFrom(result_type.to_proto())
    call.call.function.type.CopyFrom(fl.FunctionType(arg_type, result_type).to_proto())
    call.call.function.intrinsic.uri = uri
    call.call.argument.type.CopyFrom(arg_type.to_proto())
    call.call.argument.struct.element.add().value.CopyFrom(fn_proto)
    ref = call.call.argument.struct.element.add().value
    ref.type.CopyFrom(data_type.to_proto())
    ref.reference.name = "v"
    return comp


def constant_proto(uri, value_type) -> computation_pb2.Computation:
    """`( -> uri)` for a non-function intrinsic such as generic_zero."""
    value_type = fl.to_type(value_type)
    comp = computation_pb2.Computation()
    comp.type.CopyFrom(fl.FunctionType(None, value_type).to_proto())
    lam = getattr(comp, "lambda")
    lam.result.type.CopyFrom(value_type.to_proto())
    lam.result.intrinsic.uri = uri
    return comp


def uris(comp) -> set[str]:
    """The intrinsic URIs a traced computation uses."""
    found, stack = set(), [comp.to_proto() if hasattr(comp, "to_proto") else comp]
    while stack:
        node = stack.pop()
        for field, value in node.ListFields():
            if field.name == "intrinsic":
                found.add(value.uri)
            if field.message_type is None:
                continue
            if hasattr(value, "ListFields"):
                stack.append(value)
            else:  # a repeated message field
                stack.extend(value)
    return found


def struct_items(value):
    return [(name, v) for name, v in structure.iter_elements(value)]


# The intrinsics behave the same on every stack: flat with clients batched into columns, flat and
# one client at a time, threaded (maps on several threads, aggregates folded in client order), and
# composed from flat stacks of at most two clients (partial aggregates merged).
STACKS = {
    "local": config_lib.StackConfig(),
    "local-nobatch": config_lib.StackConfig(batch=False),
    "threaded": config_lib.StackConfig(kind="threaded", threads=2, clients_per_thread=1,
                                       batch=False),
    "fanout2": config_lib.StackConfig(max_fanout=2),
}


@pytest.fixture(scope="module", params=list(STACKS))
def runner(request):
    with runner_lib.Runner(STACKS[request.param]) as r:
        yield r


ADD_I32 = tf_fn(lambda a: a[0] + a[1], fl.StructType([np.int32, np.int32]))
DOUBLE_I32 = tf_fn(lambda a: a * 2, np.int32)


# -- the table ------------------------------------------------------------------------------------
def _uris_named_in_tests() -> set[str]:
    """Every intrinsic URI some test function of this module names (as a string literal)."""
    tree = ast.parse(pathlib.Path(__file__).read_text())
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            named |= {c.value for c in ast.walk(node)
                      if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return named


def test_every_intrinsic_has_a_test():
    # Adding an intrinsic to the registry without a test here fails; so does a test for a URI
    # the registry does not know.
    missing = intrinsics.SUPPORTED - _uris_named_in_tests()
    assert missing == set(), f"no test names {sorted(missing)}"


def test_unknown_intrinsic_uri_is_computation_error_naming_it_and_listing_supported(runner):
    comp = intrinsic_proto("federated_frobnicate", clients(I32), server(I32))
    with pytest.raises(errors.ComputationError) as info:
        runner.run(comp, [1, 2])
    message = str(info.value)
    assert "federated_frobnicate" in message
    assert "supported" in message and "federated_sum" in message and "sequence_reduce" in message


# -- value_at / eval_at -----------------------------------------------------------------------------
def test_value_at_server_places_a_named_struct(runner):
    @fl.federated_computation(fl.StructType([("a", np.int32), ("b", fl.TensorType(np.float32, [2]))]))
    def comp(x):
        return fl.federated_value(x, S)

    assert "federated_value_at_server" in uris(comp)
    result = runner.run(comp, {"a": 3, "b": [1.0, 2.0]})
    assert [n for n, _ in struct_items(result)] == ["a", "b"]
    assert result.a == 3 and result.a.dtype == np.int32
    np.testing.assert_array_equal(result.b, np.array([1.0, 2.0], np.float32))


def test_value_at_clients_is_one_all_equal_member(runner):
    @fl.federated_computation(fl.TensorType(np.float32, [2]))
    def comp(x):
        return fl.federated_value(x, C)

    assert "federated_value_at_clients" in uris(comp)
    result = runner.run(comp, [1.5, 2.5], clients=3)
    np.testing.assert_array_equal(result, np.array([1.5, 2.5], np.float32))


def test_value_at_clients_reaches_every_client_when_mapped(runner):
    @fl.federated_computation(I32)
    def comp(x):
        return fl.federated_map(DOUBLE_I32, fl.federated_value(x, C))

    assert [int(v) for v in runner.run(comp, 4, clients=5)] == [8] * 5


def test_value_at_clients_with_zero_clients(runner):
    @fl.federated_computation(I32)
    def comp(x):
        return fl.federated_value(x, C)

    assert runner.run(comp, 7, clients=0) == 7


def test_eval_at_server_calls_the_function_once(runner, leaf_calls):
    five = tf_fn(lambda: np.int32(5))

    @fl.federated_computation()
    def comp():
        return fl.federated_eval(five, S)

    assert "federated_eval_at_server" in uris(comp)
    assert runner.run(comp, clients=3) == 5
    assert len([t for t in leaf_calls if t.parameter is None]) == 1


def test_eval_at_clients_calls_the_function_once_per_client(runner, leaf_calls):
    import tensorflow as tf

    draw = tf_fn(lambda: tf.random.uniform([4], dtype=tf.float32))

    @fl.federated_computation()
    def comp():
        return fl.federated_eval(draw, C)

    assert "federated_eval_at_clients" in uris(comp)
    result = runner.run(comp, clients=3)
    assert len(result) == 3
    assert len([t for t in leaf_calls if t.parameter is None]) == 3
    # Separate calls of a random op: the clients' draws differ.
    assert not np.array_equal(result[0], result[1]) and not np.array_equal(result[1], result[2])


def test_eval_at_clients_with_zero_clients_is_empty(runner, leaf_calls):
    @fl.federated_computation()
    def comp():
        return fl.federated_eval(tf_fn(lambda: np.int32(1)), C)

    assert runner.run(comp, clients=0) == []
    assert leaf_calls == []


# -- broadcast -------------------------------------------------------------------------------------
def test_broadcast_gives_every_client_the_server_value(runner):
    @fl.federated_computation(server(fl.TensorType(np.int32, [2])))
    def comp(x):
        return fl.federated_broadcast(x)

    assert "federated_broadcast" in uris(comp)
    np.testing.assert_array_equal(runner.run(comp, [3, 4], clients=4), [3, 4])


def test_broadcast_then_per_client_map_has_one_member_per_client(runner):
    @fl.federated_computation(server(I32), clients(I32))
    def comp(s, c):
        b = fl.federated_broadcast(s)
        return fl.federated_map(ADD_I32, fl.federated_zip([b, c]))

    result = runner.run(comp, [10, [1, 2, 3]])
    assert [int(v) for v in result] == [11, 12, 13]


def test_broadcast_of_a_string_tensor(runner):
    @fl.federated_computation(server(fl.TensorType(np.str_, [2])))
    def comp(x):
        return fl.federated_broadcast(x)

    result = runner.run(comp, ["héllo", "wörld"], clients=2)
    assert list(result) == ["héllo".encode(), "wörld".encode()]


# -- map / map_all_equal / apply -----------------------------------------------------------------
def test_map_applies_the_function_to_each_client_in_order(runner):
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_map(DOUBLE_I32, x)

    assert "federated_map" in uris(comp)
    assert [int(v) for v in runner.run(comp, [1, 2, 3])] == [2, 4, 6]


def test_map_with_one_client(runner):
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_map(DOUBLE_I32, x)

    result = runner.run(comp, [21])
    assert isinstance(result, list) and len(result) == 1 and result[0] == 42


def test_map_with_zero_clients_is_empty_and_calls_nothing(runner, leaf_calls):
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_map(DOUBLE_I32, x)

    assert runner.run(comp, []) == []
    assert leaf_calls == []


@pytest.mark.parametrize("shape", [[], [3], [2, 2]], ids=["scalar", "vector", "matrix"])
def test_map_keeps_scalar_and_shaped_tensors(runner, shape):
    square = tf_fn(lambda a: a * a, fl.TensorType(np.float32, shape))

    @fl.federated_computation(clients(fl.TensorType(np.float32, shape)))
    def comp(x):
        return fl.federated_map(square, x)

    values = [np.full(shape, 3.0, np.float32), np.full(shape, -2.0, np.float32)]
    result = runner.run(comp, values)
    for got, v in zip(result, values):
        assert got.shape == tuple(shape) and got.dtype == np.float32
        np.testing.assert_array_equal(got, v * v)


def test_map_of_a_named_struct_keeps_names(runner):
    t = fl.StructType([("a", np.int32), ("b", np.float32)])
    swap = tf_fn(lambda s: {"b": s["b"] * 2, "a": s["a"] + 1}, t)

    @fl.federated_computation(clients(t))
    def comp(x):
        return fl.federated_map(swap, x)

    result = runner.run(comp, [{"a": 1, "b": 1.5}, {"a": 2, "b": 2.5}])
    assert [[n for n, _ in struct_items(r)] for r in result] == [["b", "a"], ["b", "a"]]
    assert result[1].a == 3 and result[1].b == np.float32(5.0)


def test_map_of_an_unnamed_struct_has_no_names(runner):
    t = fl.StructType([np.int32, np.int32])
    pair = tf_fn(lambda s: (s[1], s[0]), t)

    @fl.federated_computation(clients(t))
    def comp(x):
        return fl.federated_map(pair, x)

    result = runner.run(comp, [[1, 2], [3, 4]])
    assert [n for n, _ in struct_items(result[0])] == [None, None]
    assert [int(result[1][0]), int(result[1][1])] == [4, 3]


def test_map_all_equal_calls_the_function_once(runner, leaf_calls):
    comp = map_proto("federated_map_all_equal", tfc.tensorflow_computation(lambda a: a * 2, np.int32),
                     clients(I32, all_equal=True), clients(I32, all_equal=True))
    assert runner.run(comp, 5, clients=4) == 10
    # Once per stack: a composed stack of two 2-client stacks calls it in each.
    assert len(leaf_calls) == (2 if runner.config.max_fanout == 2 else 1)


def test_map_of_an_all_equal_value_calls_the_function_per_client(runner, leaf_calls):
    @fl.federated_computation(clients(I32, all_equal=True))
    def comp(x):
        return fl.federated_map(DOUBLE_I32, x)

    assert uris(comp) == {"federated_map"}  # federated-language never emits map_all_equal
    assert [int(v) for v in runner.run(comp, 5, clients=3)] == [10, 10, 10]
    # Per client, as TFF does; batched, a stateless graph on a shared value runs once.
    assert len(leaf_calls) == (0 if runner.config.batch else 3)


def test_apply_runs_the_function_on_the_server_value(runner):
    @fl.federated_computation(server(I32))
    def comp(x):
        return fl.federated_map(DOUBLE_I32, x)

    assert "federated_apply" in uris(comp)
    assert runner.run(comp, 21, clients=0) == 42


# -- zip --------------------------------------------------------------------------------------------
def test_zip_at_clients_pairs_members_per_client(runner):
    @fl.federated_computation(clients(I32), clients(F32))
    def comp(a, b):
        return fl.federated_zip([a, b])

    assert "federated_zip_at_clients" in uris(comp)
    result = runner.run(comp, [[1, 2], [0.5, 1.5]])
    assert [(int(r[0]), float(r[1])) for r in result] == [(1, 0.5), (2, 1.5)]


def test_zip_at_clients_of_a_nested_named_struct(runner):
    t = fl.StructType([("a", clients(I32)),
                       ("b", fl.StructType([("c", clients(F32)),
                                            ("d", clients(fl.TensorType(np.float32, [2])))]))])

    @fl.federated_computation(t)
    def comp(x):
        return fl.federated_zip(x)

    result = runner.run(comp, {"a": [1, 2], "b": {"c": [0.5, 1.5], "d": [[1, 2], [3, 4]]}})
    assert len(result) == 2
    assert [n for n, _ in struct_items(result[1])] == ["a", "b"]
    assert [n for n, _ in struct_items(result[1].b)] == ["c", "d"]
    assert result[1].a == 2 and result[1].b.c == np.float32(1.5)
    np.testing.assert_array_equal(result[1].b.d, np.array([3, 4], np.float32))


def test_zip_at_clients_with_zero_clients_is_empty(runner):
    @fl.federated_computation(clients(I32), clients(I32))
    def comp(a, b):
        return fl.federated_zip([a, b])

    assert runner.run(comp, [[], []]) == []


def test_zip_at_clients_of_all_equal_and_per_client_values(runner):
    arg_type = fl.StructType([clients(I32, all_equal=True), clients(I32)])
    comp = intrinsic_proto("federated_zip_at_clients", arg_type,
                           clients(fl.StructType([np.int32, np.int32])))
    result = runner.run(comp, [9, [1, 2, 3]])
    assert [(int(r[0]), int(r[1])) for r in result] == [(9, 1), (9, 2), (9, 3)]


def test_zip_at_server_builds_the_struct_on_the_server(runner):
    @fl.federated_computation(server(I32), server(fl.TensorType(np.float32, [2])))
    def comp(a, b):
        return fl.federated_zip({"a": a, "b": b})

    assert "federated_zip_at_server" in uris(comp)
    result = runner.run(comp, [3, [1.0, 2.0]], clients=0)
    assert [n for n, _ in struct_items(result)] == ["a", "b"]
    assert result.a == 3
    np.testing.assert_array_equal(result.b, np.array([1.0, 2.0], np.float32))


# -- sum --------------------------------------------------------------------------------------------
def _sum_comp(member_type):
    @fl.federated_computation(clients(member_type))
    def comp(x):
        return fl.federated_sum(x)

    return comp


def test_sum_of_int32_scalars(runner):
    result = runner.run(_sum_comp(I32), [1, 2, 3, 4])
    assert result == 10 and result.dtype == np.int32


def test_sum_of_shaped_float32_tensors(runner):
    result = runner.run(_sum_comp(fl.TensorType(np.float32, [2, 2])),
                        [np.ones((2, 2)), np.full((2, 2), 2.5)])
    assert result.dtype == np.float32 and result.shape == (2, 2)
    np.testing.assert_array_equal(result, np.full((2, 2), 3.5, np.float32))


def test_sum_with_one_client_is_its_value(runner):
    assert runner.run(_sum_comp(I32), [17]) == 17


def test_sum_over_zero_clients_is_zeros(runner):
    result = runner.run(_sum_comp(fl.TensorType(np.float32, [2])), [])
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [0.0, 0.0])


def test_sum_of_a_named_struct_keeps_names_and_dtypes(runner):
    t = fl.StructType([("count", np.int64), ("total", fl.TensorType(np.float64, [2]))])
    result = runner.run(_sum_comp(t), [{"count": 2**40, "total": [1e300, 1.0]},
                                       {"count": 1, "total": [1e300, -3.0]}])
    assert [n for n, _ in struct_items(result)] == ["count", "total"]
    assert result.count == 2**40 + 1 and result.count.dtype == np.int64
    np.testing.assert_array_equal(result.total, [2e300, -2.0])


def test_sum_of_an_unnamed_struct(runner):
    t = fl.StructType([np.int32, np.float32])
    result = runner.run(_sum_comp(t), [[1, 0.25], [2, 0.5]])
    assert [n for n, _ in struct_items(result)] == [None, None]
    assert result[0] == 3 and result[1] == np.float32(0.75)


def test_sum_of_empty_structs_is_an_empty_struct(runner):
    result = runner.run(_sum_comp(fl.StructType([])), [[], [], []])
    assert isinstance(result, structure.Struct) and len(result) == 0


def test_sum_of_int32_wraps_around_like_tensorflow(runner):
    result = runner.run(_sum_comp(I32), [2**31 - 1, 1])
    assert result == -(2**31) and result.dtype == np.int32


def _sequential_float32_sum(values):
    total = np.float32(0)
    for v in values:
        total = np.float32(total + np.float32(v))
    return total


# Scalars of very different magnitudes: the order of float32 additions shows in the result.
_RNG = np.random.default_rng(7)
MANY_FLOATS = [float(np.float32(v)) for v in
               _RNG.standard_normal(40) * 10.0 ** _RNG.integers(-3, 6, 40)]


def _skip_when_composed(runner):
    if runner.config.max_fanout is not None:
        pytest.skip("a composed stack adds its children's partial sums (equal within rounding)")


def test_sum_of_float32_scalars_adds_clients_one_after_another(runner):
    _skip_when_composed(runner)
    result = runner.run(_sum_comp(F32), MANY_FLOATS)
    assert result.dtype == np.float32
    assert result == _sequential_float32_sum(MANY_FLOATS)  # bit for bit, like TFF's fold


def test_sum_of_strings_is_rejected_when_traced():
    # federated-language refuses to build it; tffexec never sees such a computation from TFF.
    with pytest.raises(TypeError):
        _sum_comp(fl.TensorType(np.str_))


# -- mean / weighted mean ------------------------------------------------------------------------
def test_mean_of_float32_values(runner):
    @fl.federated_computation(clients(fl.TensorType(np.float32, [2])))
    def comp(x):
        return fl.federated_mean(x)

    assert "federated_mean" in uris(comp)
    result = runner.run(comp, [[1.0, 2.0], [2.0, 4.0], [6.0, 0.0]])
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, [3.0, 2.0])


def test_mean_of_float32_scalars_divides_the_sequential_sum(runner):
    _skip_when_composed(runner)
    @fl.federated_computation(clients(F32))
    def comp(x):
        return fl.federated_mean(x)

    expected = np.float32(_sequential_float32_sum(MANY_FLOATS) / np.float32(len(MANY_FLOATS)))
    assert runner.run(comp, MANY_FLOATS) == expected


def test_mean_of_a_struct_keeps_each_dtype(runner):
    t = fl.StructType([("a", fl.TensorType(np.float32, [2])), ("b", np.float64)])

    @fl.federated_computation(clients(t))
    def comp(x):
        return fl.federated_mean(x)

    result = runner.run(comp, [{"a": [1.0, 2.0], "b": 0.1}, {"a": [2.0, 3.0], "b": 0.2}])
    assert result.a.dtype == np.float32 and result.b.dtype == np.float64
    np.testing.assert_allclose(result.a, [1.5, 2.5])
    assert result.b == pytest.approx(0.15, rel=1e-15)


def test_mean_over_zero_clients_is_nan(runner):
    @fl.federated_computation(clients(F32))
    def comp(x):
        return fl.federated_mean(x)

    result = runner.run(comp, [])
    assert result.dtype == np.float32 and np.isnan(result)


def test_weighted_mean_of_float64_values_with_int_weights(runner):
    @fl.federated_computation(clients(fl.TensorType(np.float64)), clients(I32))
    def comp(x, w):
        return fl.federated_mean(x, w)

    assert "federated_weighted_mean" in uris(comp)
    result = runner.run(comp, [[1.5, 2.5, 4.0], [1, 0, 3]])
    assert result.dtype == np.float64
    assert result == (1.5 * 1 + 4.0 * 3) / 4


def test_weighted_mean_of_float32_values_with_int_weights_stays_float32(runner):
    @fl.federated_computation(clients(fl.TensorType(np.float32, [2])), clients(I32))
    def comp(x, w):
        return fl.federated_mean(x, w)

    result = runner.run(comp, [[[1.0, 2.0], [3.0, 4.0]], [3, 1]])
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, [1.5, 2.5])


def test_weighted_mean_of_a_struct_weights_every_tensor(runner):
    t = fl.StructType([("a", fl.TensorType(np.float32, [2])), ("b", np.float32)])

    @fl.federated_computation(clients(t), clients(F32))
    def comp(x, w):
        return fl.federated_mean(x, w)

    result = runner.run(comp, [[{"a": [1.0, 0.0], "b": 2.0}, {"a": [3.0, 4.0], "b": 6.0}],
                               [1.0, 3.0]])
    np.testing.assert_allclose(result.a, [2.5, 3.0])
    assert result.b == pytest.approx(5.0)


def test_weighted_mean_over_zero_clients_is_nan(runner):
    @fl.federated_computation(clients(fl.TensorType(np.float64)), clients(I32))
    def comp(x, w):
        return fl.federated_mean(x, w)

    assert np.isnan(runner.run(comp, [[], []]))


# -- min / max ------------------------------------------------------------------------------------
#: Per intrinsic: its numpy twin and the dtype extreme it gives over zero clients (its identity).
MIN_MAX = {"federated_min": (np.min, "max"), "federated_max": (np.max, "min")}


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
@pytest.mark.parametrize("uri", ["federated_min", "federated_max"])
def test_min_and_max_are_elementwise_over_clients(runner, dtype, uri):
    @fl.federated_computation(clients(fl.TensorType(dtype, [3])))
    def comp(x):
        return getattr(fl, uri)(x)

    assert uri in uris(comp)
    members = [[3, -1, 5], [2, 7, 5], [4, 0, -6]]
    result = runner.run(comp, members)
    assert result.dtype == dtype
    reduce, _ = MIN_MAX[uri]
    np.testing.assert_array_equal(result, reduce(np.array(members, dtype), axis=0))


@pytest.mark.parametrize("dtype,info", [(np.int32, np.iinfo), (np.float32, np.finfo)])
@pytest.mark.parametrize("uri", ["federated_min", "federated_max"])
def test_min_and_max_over_zero_clients_are_the_dtype_extreme(runner, dtype, info, uri):
    """The min of no clients is the dtype's max (and the max its min): the fold's identity."""
    @fl.federated_computation(clients(fl.TensorType(dtype, [2])))
    def comp(x):
        return getattr(fl, uri)(x)

    _, extreme = MIN_MAX[uri]
    np.testing.assert_array_equal(runner.run(comp, []), [getattr(info(dtype), extreme)] * 2)


def test_min_and_max_of_a_struct(runner):
    t = fl.StructType([("a", fl.TensorType(np.int32, [2])), ("b", np.float32)])

    @fl.federated_computation(clients(t))
    def comp(x):
        return fl.federated_min(x), fl.federated_max(x)

    lo, hi = runner.run(comp, [{"a": [1, 9], "b": 0.5}, {"a": [4, 2], "b": -0.5}])
    np.testing.assert_array_equal(lo.a, [1, 2])
    np.testing.assert_array_equal(hi.a, [4, 9])
    assert (lo.b, hi.b) == (np.float32(-0.5), np.float32(0.5))


# -- secure sums ------------------------------------------------------------------------------------
def test_secure_sum_within_the_bound_is_the_plain_sum(runner):
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_secure_sum(x, 10)

    assert "federated_secure_sum" in uris(comp)
    result = runner.run(comp, [10, 0, 7])
    assert result == 17 and result.dtype == np.int32


def test_secure_sum_bound_violation_names_the_client_and_the_value(runner):
    @fl.federated_computation(clients(fl.TensorType(np.int32, [2])))
    def comp(x):
        return fl.federated_secure_sum(x, 10)

    with pytest.raises(errors.ExecutionError) as info:
        runner.run(comp, [[1, 2], [3, 4], [5, 11]])
    message = str(info.value)
    assert "client 2" in message and "11" in message


def test_secure_sum_negative_client_value_is_rejected(runner):
    # federated-language documents client values as lying in [0, max_input].
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_secure_sum(x, 10)

    with pytest.raises(errors.ExecutionError, match="client 1.*-1"):
        runner.run(comp, [3, -1])


def test_secure_sum_violation_in_tffs_compiled_form_names_the_value(runner):
    # native_comp.pb is TFF's test-context lowering: the bound check is a tf.Assert on each client.
    case = pathlib.Path(__file__).resolve().parents[1] / "examples" / "cases" / "fed_secure_sum_struct"
    comp = computation_pb2.Computation.FromString((case / "native_comp.pb").read_bytes())
    arg = [{"a": 1, "b": [1, 2]}, {"a": 2, "b": [3, 51]}]
    with pytest.raises(errors.ExecutionError, match="larger than maximum.*51"):
        runner.run(comp, arg)
    with pytest.raises(errors.ExecutionError, match="client 1.*51"):
        runner.run(computation_pb2.Computation.FromString((case / "comp.pb").read_bytes()), arg)


def test_secure_sum_with_a_struct_of_bounds(runner):
    t = fl.StructType([("a", np.int32), ("b", fl.TensorType(np.int32, [2]))])

    @fl.federated_computation(clients(t))
    def comp(x):
        return fl.federated_secure_sum(x, {"a": 1, "b": 100})

    result = runner.run(comp, [{"a": 1, "b": [50, 100]}, {"a": 0, "b": [1, 2]}])
    assert result.a == 1
    np.testing.assert_array_equal(result.b, [51, 102])
    with pytest.raises(errors.ExecutionError, match="client 1"):
        runner.run(comp, [{"a": 1, "b": [50, 100]}, {"a": 2, "b": [1, 2]}])


def test_secure_sum_over_zero_clients_is_zero(runner):
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_secure_sum(x, 10)

    assert runner.run(comp, []) == 0


def test_secure_sum_bitwidth_bound_is_two_to_the_bits_minus_one(runner):
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_secure_sum_bitwidth(x, 3)

    assert "federated_secure_sum_bitwidth" in uris(comp)
    assert runner.run(comp, [7, 7, 1]) == 15
    with pytest.raises(errors.ExecutionError, match="client 1.*8"):
        runner.run(comp, [7, 8])


def test_secure_modular_sum_is_the_sum_modulo_the_modulus(runner):
    comp = intrinsic_proto("federated_secure_modular_sum",
                           fl.StructType([clients(fl.TensorType(np.int32, [2])), I32]),
                           server(fl.TensorType(np.int32, [2])))
    result = runner.run(comp, [[[5, 1], [6, 2], [7, 3]], 4])
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, [18 % 4, 6 % 4])


# -- aggregate ----------------------------------------------------------------------------------------
def test_aggregate_folds_clients_in_order_and_applies_report(runner):
    shift_add = tf_fn(lambda a: a[0] * 10 + a[1], fl.StructType([np.int32, np.int32]))

    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_aggregate(x, np.int32(0), shift_add, shift_add, DOUBLE_I32)

    assert "federated_aggregate" in uris(comp)
    assert runner.run(comp, [1, 2, 3]) == 246  # report(((0*10+1)*10+2)*10+3)


def test_aggregate_does_not_call_merge_on_a_flat_stack(runner):
    shift_add = tf_fn(lambda a: a[0] * 10 + a[1], fl.StructType([np.int32, np.int32]))
    poison = tf_fn(lambda a: a[0] * 0 - 1, fl.StructType([np.int32, np.int32]))
    identity = tf_fn(lambda a: a, np.int32)

    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_aggregate(x, np.int32(0), shift_add, poison, identity)

    assert runner.run(comp, [4, 5]) == 45


def test_aggregate_over_zero_clients_reports_the_zero(runner):
    @fl.federated_computation(clients(I32))
    def comp(x):
        return fl.federated_aggregate(x, np.int32(7), ADD_I32, ADD_I32, DOUBLE_I32)

    assert runner.run(comp, []) == 14


def test_aggregate_with_a_struct_accumulator(runner):
    acc_t = fl.StructType([("total", np.float32), ("n", np.int32)])
    accumulate = tf_fn(lambda a: {"total": a[0]["total"] + a[1], "n": a[0]["n"] + 1},
                       fl.StructType([acc_t, np.float32]))
    merge = tf_fn(lambda a: {"total": a[0]["total"] + a[1]["total"], "n": a[0]["n"] + a[1]["n"]},
                  fl.StructType([acc_t, acc_t]))
    report = tf_fn(lambda a: a["total"] / 2.0, acc_t)
    zero = tf_fn(lambda: {"total": np.float32(0), "n": np.int32(0)})

    @fl.federated_computation(clients(F32))
    def comp(x):
        return fl.federated_aggregate(x, zero(), accumulate, merge, report)

    assert runner.run(comp, [1.0, 2.0, 5.0]) == np.float32(4.0)


# -- select ---------------------------------------------------------------------------------------------
def _select_comp(secure: bool, num_keys: int):
    table_t = fl.TensorType(np.float32, [4, 2])
    pick = tf_fn(lambda a: a[0][a[1]], fl.StructType([table_t, np.int32]))

    @fl.federated_computation(clients(fl.TensorType(np.int32, [num_keys])), server(table_t))
    def comp(keys, table):
        max_key = fl.federated_value(np.int32(4), S)
        op = fl.federated_secure_select if secure else fl.federated_select
        return op(keys, max_key, table, pick)

    return comp


TABLE = np.arange(8, dtype=np.float32).reshape(4, 2)


@pytest.mark.parametrize("secure", [False, True], ids=["select", "secure_select"])
def test_select_gives_each_client_the_rows_of_its_keys_in_order(runner, secure):
    comp = _select_comp(secure, 2)
    assert ("federated_secure_select" if secure else "federated_select") in uris(comp)
    result = runner.run(comp, [[[3, 0], [1, 2]], TABLE])
    assert len(result) == 2
    assert [list(e) for e in result[0].elements()] == [[6.0, 7.0], [0.0, 1.0]]
    assert [list(e) for e in result[1].elements()] == [[2.0, 3.0], [4.0, 5.0]]


@pytest.mark.parametrize("secure", [False, True], ids=["select", "secure_select"])
def test_select_with_repeated_keys_repeats_the_element(runner, secure, leaf_calls):
    result = runner.run(_select_comp(secure, 3), [[[2, 2, 0], [0, 2, 2]], TABLE])
    assert [list(e) for e in result[0].elements()] == [[4.0, 5.0], [4.0, 5.0], [0.0, 1.0]]
    assert [list(e) for e in result[1].elements()] == [[0.0, 1.0], [4.0, 5.0], [4.0, 5.0]]
    # Each distinct key is computed once on the server (as TFF's C++ runtime does).
    picks = [t for t in leaf_calls if isinstance(t.parameter, fl.StructType)]
    assert len(picks) == 2


def test_select_with_zero_clients_is_empty(runner):
    assert runner.run(_select_comp(False, 2), [[], TABLE]) == []


# -- generic operators -------------------------------------------------------------------------------
def _generic(uri, operand_type, result_type=None):
    operand_type = fl.to_type(operand_type)
    return intrinsic_proto(uri, fl.StructType([operand_type, operand_type]),
                           result_type or operand_type)


def test_generic_plus_of_int32_tensors(runner):
    t = fl.TensorType(np.int32, [3])
    result = runner.run(_generic("generic_plus", t), [[1, 2, 3], [10, 20, 30]])
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, [11, 22, 33])


def test_generic_plus_of_named_structs_keeps_names(runner):
    t = fl.StructType([("a", np.int32), ("b", fl.TensorType(np.float32, [2]))])
    result = runner.run(_generic("generic_plus", t),
                        [{"a": 1, "b": [0.5, 1.0]}, {"a": 2, "b": [0.25, 2.0]}])
    assert [n for n, _ in struct_items(result)] == ["a", "b"]
    assert result.a == 3
    np.testing.assert_array_equal(result.b, np.array([0.75, 3.0], np.float32))


def test_generic_multiply_of_float32_tensors(runner):
    t = fl.TensorType(np.float32, [2])
    result = runner.run(_generic("generic_multiply", t), [[1.5, -2.0], [2.0, 4.0]])
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [3.0, -8.0])


def test_generic_divide_of_int32_gives_float64(runner):
    comp = _generic("generic_divide", fl.TensorType(np.int32, [3]),
                    fl.TensorType(np.float64, [3]))
    result = runner.run(comp, [[7, 1, -3], [2, 3, 2]])
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, [3.5, 1 / 3, -1.5])


def test_generic_divide_of_float32_stays_float32(runner):
    t = fl.TensorType(np.float32, [2])
    result = runner.run(_generic("generic_divide", t), [[1.0, 3.0], [4.0, 2.0]])
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [0.25, 1.5])


def test_generic_plus_of_server_values(runner):
    result = runner.run(_generic("generic_plus", server(I32)), [2, 40], clients=0)
    assert result == 42


def test_generic_plus_of_per_client_values_is_per_client(runner):
    result = runner.run(_generic("generic_plus", clients(I32)), [[1, 2, 3], [10, 20, 30]])
    assert [int(v) for v in result] == [11, 22, 33]


def test_generic_plus_of_an_all_equal_and_a_per_client_value(runner):
    # Declared as its definition (<T,T> -> T) admits; the all-equal operand is assignable to T.
    comp = _generic("generic_plus", clients(I32))
    mixed = fl.StructType([clients(I32), clients(I32, all_equal=True)]).to_proto()
    comp.type.function.parameter.CopyFrom(mixed)
    getattr(comp, "lambda").result.call.argument.type.CopyFrom(mixed)
    assert [int(v) for v in runner.run(comp, [[1, 2, 3], 100])] == [101, 102, 103]


def test_generic_plus_declared_with_two_different_operand_types_is_refused(runner):
    comp = intrinsic_proto("generic_plus",
                           fl.StructType([clients(I32), clients(I32, all_equal=True)]),
                           clients(I32))
    with pytest.raises(errors.ComputationError, match="generic_plus.*had substitutions"):
        runner.run(comp, [[1, 2, 3], 100])


def test_generic_zero_of_a_struct_with_a_string(runner):
    t = fl.StructType([("a", fl.TensorType(np.float32, [2])), ("b", np.int32), ("s", np.str_)])
    result = runner.run(constant_proto("generic_zero", t))
    np.testing.assert_array_equal(result.a, np.zeros(2, np.float32))
    assert result.a.dtype == np.float32 and result.b == 0 and result.b.dtype == np.int32
    assert result.s == b""


def test_generic_zero_at_clients_is_one_zero_per_client(runner):
    result = runner.run(constant_proto("generic_zero", clients(I32)), clients=3)
    assert [int(v) for v in result] == [0, 0, 0]


def test_generic_zero_at_server(runner):
    result = runner.run(constant_proto("generic_zero", server(fl.TensorType(np.int64, [2]))),
                        clients=0)
    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, [0, 0])


# -- sequences -------------------------------------------------------------------------------------
def test_sequence_map_applies_the_function_to_each_element_in_order(runner):
    @fl.federated_computation(fl.SequenceType(np.int32))
    def comp(seq):
        return fl.sequence_map(DOUBLE_I32, seq)

    assert "sequence_map" in uris(comp)
    result = runner.run(comp, [3, 1, 2])
    assert [int(e) for e in result.elements()] == [6, 2, 4]


def test_sequence_reduce_is_a_left_fold_from_the_zero(runner):
    shift_add = tf_fn(lambda a: a[0] * 10 + a[1], fl.StructType([np.int32, np.int32]))

    @fl.federated_computation(fl.SequenceType(np.int32))
    def comp(seq):
        return fl.sequence_reduce(seq, np.int32(9), shift_add)

    assert "sequence_reduce" in uris(comp)
    assert runner.run(comp, [1, 2, 3]) == 9123


def test_sequence_reduce_of_an_empty_sequence_is_the_zero(runner):
    @fl.federated_computation(fl.SequenceType(np.int32))
    def comp(seq):
        return fl.sequence_reduce(seq, np.int32(5), ADD_I32)

    assert runner.run(comp, []) == 5


def test_sequence_sum_of_int64_elements(runner):
    @fl.federated_computation(fl.SequenceType(np.int64))
    def comp(seq):
        return fl.sequence_sum(seq)

    assert "sequence_sum" in uris(comp)
    result = runner.run(comp, [2**40, 3, -1])
    assert result == 2**40 + 2 and result.dtype == np.int64


def test_sequence_sum_of_named_struct_elements(runner):
    t = fl.StructType([("x", fl.TensorType(np.float32, [2])), ("n", np.int32)])
    comp = intrinsic_proto("sequence_sum", fl.SequenceType(t), t)
    result = runner.run(comp, [{"x": [1.0, 2.0], "n": 1}, {"x": [0.5, 0.5], "n": 2}])
    assert [n for n, _ in struct_items(result)] == ["x", "n"]
    np.testing.assert_array_equal(result.x, np.array([1.5, 2.5], np.float32))
    assert result.n == 3


def test_sequence_sum_of_an_empty_sequence_is_zero(runner):
    comp = intrinsic_proto("sequence_sum", fl.SequenceType(np.float32), F32)
    result = runner.run(comp, [])
    assert result == 0 and result.dtype == np.float32


def test_sequence_reduce_per_client(runner):
    @fl.federated_computation(fl.SequenceType(np.int32))
    def reduce_one(seq):
        return fl.sequence_reduce(seq, np.int32(0), ADD_I32)

    @fl.federated_computation(clients(fl.SequenceType(np.int32)))
    def comp(x):
        return fl.federated_map(reduce_one, x)

    assert [int(v) for v in runner.run(comp, [[1, 2], [], [5]])] == [3, 0, 5]


def test_sequence_map_with_a_federated_computation_as_the_function(runner):
    @fl.federated_computation(I32)
    def plus_one_twice(v):
        return DOUBLE_I32(DOUBLE_I32(v))

    @fl.federated_computation(fl.SequenceType(np.int32))
    def comp(seq):
        return fl.sequence_reduce(fl.sequence_map(plus_one_twice, seq), np.int32(0), ADD_I32)

    assert runner.run(comp, [1, 2, 3]) == 24
