"""One test per behaviour of each executor layer, the lazy factory, `Runner` and the
federated-language execution-context path.

Most computations are written as protos with the small typed builder below, so each test says
exactly which AST it runs; `tensorflow` leaves come from `tffexec.tensorflow`.
"""
from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
import weakref

import federated_language as fl
import numpy as np
import pytest
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2 as pb
from google.protobuf import message as protobuf_message

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec.executors import federating_executor
from tffexec.executors import reference_resolving_executor as rre
from tffexec.executors import sequence_executor
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_function
from tffexec.factories import config as config_lib
from tffexec.factories import executor_factory
from tffexec.factories import stacks
from tffexec.formats import sequences
from tffexec import tensorflow as tfc

C, S = fl.CLIENTS, fl.SERVER
I32 = fl.TensorType(np.int32)


# -- a typed proto builder ----------------------------------------------------------------------------
def _typed(type_spec) -> pb.Computation:
    comp = pb.Computation()
    comp.type.CopyFrom(fl.to_type(type_spec).to_proto())
    return comp


def type_of(comp: pb.Computation):
    return fl.Type.from_proto(comp.type)


def ref(name, type_spec=I32):
    comp = _typed(type_spec)
    comp.reference.name = name
    return comp


def lam(parameter, parameter_type, body):
    comp = _typed(fl.FunctionType(parameter_type, type_of(body)))
    getattr(comp, "lambda").parameter_name = parameter or ""
    getattr(comp, "lambda").result.CopyFrom(body)
    return comp


def call(fn, arg=None):
    comp = _typed(type_of(fn).result)
    comp.call.function.CopyFrom(fn)
    if arg is not None:
        comp.call.argument.CopyFrom(arg)
    return comp


def block(locals_, body):
    comp = _typed(type_of(body))
    for name, value in locals_:
        local = comp.block.local.add()
        local.name = name
        local.value.CopyFrom(value)
    comp.block.result.CopyFrom(body)
    return comp


def struct(*elements, names=None):
    names = names or [None] * len(elements)
    comp = _typed(fl.StructType([(n, type_of(e)) for n, e in zip(names, elements)]))
    comp.struct.SetInParent()  # an empty struct is still a struct node
    for name, element in zip(names, elements):
        e = comp.struct.element.add()
        if name:
            e.name = name
        e.value.CopyFrom(element)
    return comp


def sel(source, index):
    comp = _typed(type_of(source)[index])
    comp.selection.source.CopyFrom(source)
    comp.selection.index = index
    return comp


def intrinsic(uri, fn_type):
    comp = _typed(fn_type)
    comp.intrinsic.uri = uri
    return comp


def federated_map(fn, data, result_type):
    arg = struct(fn, data)
    return call(intrinsic("federated_map", fl.FunctionType(type_of(arg), result_type)), arg)


def tf_proto(fn, parameter_type=None) -> pb.Computation:
    return tfc.tensorflow_computation(fn, parameter_type)


PAIR = fl.StructType([np.int32, np.int32])
ADD = tf_proto(lambda a: a[0] + a[1], PAIR)
PLUS_ONE = tf_proto(lambda a: a + 1, np.int32)
DOUBLE = tf_proto(lambda a: a * 2, np.int32)
SEVEN = tf_proto(lambda: np.int32(7))


def leaf_stack():
    """RRE over a bare TensorFlow executor (no federating layer)."""
    return rre.ReferenceResolvingExecutor(tensorflow_executor.TensorFlowExecutor())


def evaluate(executor, comp, arg=None):
    fn = executor.value(comp)
    argument = None
    if arg is not None:
        argument = executor.value(arg, type_of(comp).parameter)
    return executor.materialize(executor.call(fn, argument))


@pytest.fixture(scope="module")
def runner():
    with runner_lib.Runner() as r:
        yield r


# == ReferenceResolvingExecutor ========================================================================
def test_rre_calls_a_lambda_with_its_argument():
    comp = lam("x", I32, call(DOUBLE, ref("x")))
    assert evaluate(leaf_stack(), comp, np.int32(21)) == 42


def test_rre_block_locals_see_earlier_locals():
    body = block([("a", call(PLUS_ONE, ref("x"))), ("b", call(DOUBLE, ref("a")))], ref("b"))
    assert evaluate(leaf_stack(), lam("x", I32, body), np.int32(4)) == 10


def test_rre_block_rebinding_a_name_shadows_it_for_later_locals_only():
    # let a = x+1, f = (y -> a + y), a = a*2 in <f(0), a>: f keeps seeing the first `a`.
    f = lam("y", I32, call(ADD, struct(ref("a"), ref("y"))))
    body = block([("a", call(PLUS_ONE, ref("x"))), ("f", f), ("a", call(DOUBLE, ref("a")))],
                 struct(call(ref("f", type_of(f)), ref("x")), ref("a")))
    result = evaluate(leaf_stack(), lam("x", I32, body), np.int32(3))
    assert (int(result[0]), int(result[1])) == (4 + 3, 8)


def test_rre_inner_lambda_parameter_shadows_outer_name():
    inner = lam("x", I32, call(DOUBLE, ref("x")))
    comp = lam("x", I32, call(inner, call(PLUS_ONE, ref("x"))))
    assert evaluate(leaf_stack(), comp, np.int32(1)) == 4


def test_rre_closure_returned_from_a_block_keeps_its_scope():
    make = block([("k", call(SEVEN))], lam("y", I32, call(ADD, struct(ref("y"), ref("k")))))
    comp = lam("x", I32, call(make, ref("x")))
    assert evaluate(leaf_stack(), comp, np.int32(5)) == 12


def test_rre_no_argument_lambda():
    comp = lam(None, None, call(SEVEN))
    assert evaluate(leaf_stack(), comp) == 7


def test_rre_named_struct_keeps_names_and_selection_is_by_index():
    s = struct(call(SEVEN), ref("x"), names=["a", "b"])
    comp = lam("x", I32, struct(sel(s, 1), s, names=["picked", "whole"]))
    result = evaluate(leaf_stack(), comp, np.int32(3))
    assert result.picked == 3
    assert [n for n, _ in structure.iter_elements(result.whole)] == ["a", "b"]


def test_rre_unnamed_struct_has_no_names():
    comp = lam("x", I32, struct(ref("x"), call(DOUBLE, ref("x"))))
    result = evaluate(leaf_stack(), comp, np.int32(3))
    assert [n for n, _ in structure.iter_elements(result)] == [None, None]
    assert (int(result[0]), int(result[1])) == (3, 6)


def test_rre_empty_struct_result():
    result = evaluate(leaf_stack(), lam(None, None, struct()))
    assert isinstance(result, structure.Struct) and len(result) == 0


def test_rre_selection_from_a_leaf_struct_value():
    comp = lam("p", PAIR, sel(ref("p", PAIR), 1))
    assert evaluate(leaf_stack(), comp, structure.Struct([(None, np.int32(1)),
                                                          (None, np.int32(2))])) == 2


def test_rre_selection_out_of_range_is_computation_error():
    comp = lam("x", I32, sel(struct(ref("x")), 0))
    getattr(comp, "lambda").result.selection.index = 3
    with pytest.raises(errors.ComputationError, match=r"\[3\] out of range for <int32>"):
        evaluate(leaf_stack(), comp, np.int32(1))


def test_rre_dangling_reference_names_the_ast_path():
    body = block([("a", ref("x")), ("b", call(PLUS_ONE, ref("nope")))], ref("b"))
    with pytest.raises(errors.ComputationError) as info:
        evaluate(leaf_stack(), lam("x", I32, body), np.int32(1))
    message = str(info.value)
    assert "'nope'" in message
    assert "lambda.result.block.local[1](b).call.argument" in message


def test_rre_dangling_reference_in_a_closure_passed_to_federated_map(runner):
    fn = lam("y", I32, call(ADD, struct(ref("y"), ref("nope"))))
    comp = lam("x", fl.FederatedType(I32, C),
               federated_map(fn, ref("x", fl.FederatedType(I32, C)), fl.FederatedType(I32, C)))
    with pytest.raises(errors.ComputationError) as info:
        runner.run(comp, [1, 2])
    message = str(info.value)
    assert "'nope'" in message and "lambda.result" in message


def test_rre_calling_a_non_function_is_computation_error():
    comp = lam("x", I32, ref("x"))
    bad = call(comp, ref("x"))
    bad.call.function.CopyFrom(ref("x", fl.FunctionType(I32, I32)))
    with pytest.raises(errors.ComputationError, match="not a function"):
        evaluate(leaf_stack(), lam("x", I32, bad), np.int32(1))


@pytest.mark.parametrize("kind", ["data", "xla"])
def test_rre_data_and_xla_nodes_are_computation_errors_naming_the_kind(runner, kind):
    node = _typed(I32)
    if kind == "data":
        node.data.uri = "file:///nowhere"
    else:
        node.xla.hlo_module.type_url = "type.googleapis.com/xla.HloModuleProto"
    comp = lam(None, None, node)
    with pytest.raises(errors.ComputationError) as info:
        runner.run(comp)
    assert f"'{kind}'" in str(info.value) or f"`{kind}`" in str(info.value)


def test_rre_free_names_are_computed_without_recursion():
    body = block([("a", ref("x")), ("b", ref("a"))],
                 lam("y", I32, call(ADD, struct(ref("b"), ref("z")))))
    assert set(rre.free_names(body)) == {"x", "z"}


# -- deepest computation protobuf accepts ---------------------------------------------------------------
def _nested_lambdas(n: int) -> pb.Computation:
    """(x0 -> (x1 -> (x2 -> ... x_n)(x1 + 1))(x0 + 1)): n nested lambdas, result x0 + n."""
    inner = ref(f"x{n}")
    for k in range(n, 0, -1):
        inner = call(lam(f"x{k}", I32, inner), call(PLUS_ONE, ref(f"x{k - 1}")))
    return lam("x0", I32, inner)


def _nested_blocks(n: int) -> pb.Computation:
    """(x0 -> let x1 = x0 + 1 in let x2 = x1 + 1 in ... x_n): n nested blocks."""
    inner = ref(f"x{n}")
    for k in range(n, 0, -1):
        inner = block([(f"x{k}", call(PLUS_ONE, ref(f"x{k - 1}")))], inner)
    return lam("x0", I32, inner)


def _deepest_parseable(build) -> tuple[int, bytes]:
    deepest = None
    for n in range(1, 200):
        data = build(n).SerializeToString()
        try:
            pb.Computation.FromString(data)
        except protobuf_message.DecodeError:
            assert deepest is not None, "even one level does not parse"
            return deepest
        deepest = (n, data)
    raise AssertionError("protobuf accepted 200 levels; raise the search bound")


@pytest.mark.parametrize("build", [_nested_lambdas, _nested_blocks], ids=["lambdas", "blocks"])
def test_rre_runs_the_deepest_computation_protobuf_accepts(runner, build):
    n, data = _deepest_parseable(build)
    assert n >= 20  # protobuf's limit is about 100 messages; a lambda level costs 4, a block 2
    comp = pb.Computation.FromString(data)
    try:
        result = runner.run(comp, 5)
    except RecursionError:  # pragma: no cover - the failure this test guards against
        pytest.fail(f"{n} nested levels hit the recursion limit {sys.getrecursionlimit()}")
    assert result == 5 + n


# == FederatingExecutor ================================================================================
def federating(num_clients):
    return federating_executor.FederatingExecutor(
        stacks.unplaced_stack(config_lib.StackConfig()), num_clients)


def test_federating_ingests_one_member_per_client():
    ex = federating(3)
    value = ex.value([np.int32(1), np.int32(2), np.int32(3)], fl.FederatedType(I32, C))
    assert [int(v) for v in ex.materialize(value)] == [1, 2, 3]


def test_federating_all_equal_clients_value_is_one_shared_member():
    ex = federating(4)
    value = ex.value(np.int32(9), fl.FederatedType(I32, C, all_equal=True))
    assert len(value.rep.members) == 1
    assert len(ex.members(value)) == 4
    assert ex.materialize(value) == 9


def test_federating_wrong_number_of_client_values_is_argument_error():
    with pytest.raises(errors.ArgumentError, match="3 clients, but 2 values"):
        federating(3).value([np.int32(1), np.int32(2)], fl.FederatedType(I32, C))


def test_federating_non_list_clients_value_is_argument_error():
    with pytest.raises(errors.ArgumentError, match="one member per client"):
        federating(1).value(np.int32(1), fl.FederatedType(I32, C))


def test_federating_negative_client_count_is_rejected():
    with pytest.raises(errors.ArgumentError):
        federating(-1)


def test_federating_struct_of_placed_values_keeps_placement_per_element():
    t = fl.StructType([("s", fl.FederatedType(I32, S)), ("c", fl.FederatedType(I32, C))])
    ex = federating(2)
    value = ex.value(structure.Struct([("s", np.int32(1)), ("c", [np.int32(2), np.int32(3)])]), t)
    result = ex.materialize(value)
    assert result.s == 1 and [int(v) for v in result.c] == [2, 3]


def test_federating_selection_from_a_struct_of_placed_values_and_out_of_range_names_the_type():
    t = fl.StructType([("s", fl.FederatedType(I32, S)), ("c", fl.FederatedType(I32, C))])
    ex = federating(2)
    value = ex.struct([(n, ex.value(v, member)) for (n, member), v in
                       zip(t.items(), [np.int32(1), [np.int32(2), np.int32(3)]])])
    assert [int(v) for v in ex.materialize(ex.selection(value, 1))] == [2, 3]
    named = r"selection \[2\] out of range for <s=int32@SERVER,c=\{int32\}@CLIENTS>"
    with pytest.raises(errors.ComputationError, match=named):
        ex.selection(value, 2)


def test_federating_unplaced_call_runs_on_the_child():
    ex = federating(0)
    fn = ex.value(DOUBLE)
    assert ex.materialize(ex.call(fn, ex.value(np.int32(4), I32))) == 8


def test_federating_federated_value_passed_to_a_tensorflow_function_is_error():
    t = fl.FederatedType(I32, S)
    comp = lam("x", t, call(DOUBLE, ref("x", t)))
    with pytest.raises(errors.ComputationError, match="federated value|int32@SERVER does not match the parameter type int32"):
        runner_lib.run(comp, 3, clients=0)


def test_federating_closure_capturing_a_block_local_runs_per_client(runner):
    # (x -> let k = 7, f = (y -> y + k) in federated_map(f, x))
    ct = fl.FederatedType(I32, C)
    f = lam("y", I32, call(ADD, struct(ref("y"), ref("k"))))
    body = block([("k", call(SEVEN)), ("f", f)],
                 federated_map(ref("f", type_of(f)), ref("x", ct), ct))
    assert [int(v) for v in runner.run(lam("x", ct, body), [1, 2, 3])] == [8, 9, 10]


def test_federating_closure_capturing_a_lambda_parameter_and_a_block_local(runner):
    # (<x, s> -> let k = s * 2 in federated_map((y -> y + k), x)) with s an unplaced int.
    pt = fl.StructType([("x", fl.FederatedType(I32, C)), ("s", I32)])
    p = ref("p", pt)
    f = lam("y", I32, call(ADD, struct(ref("y"), ref("k"))))
    body = block([("k", call(DOUBLE, sel(p, 1)))],
                 federated_map(f, sel(p, 0), fl.FederatedType(I32, C)))
    result = runner.run(lam("p", pt, body), {"x": [1, 2], "s": 10})
    assert [int(v) for v in result] == [21, 22]


def test_federating_closure_capturing_a_struct_of_closures(runner):
    # let g = (z -> z * 2), h = <g, 5> in federated_map((y -> h[0](y) + h[1]), x)
    ct = fl.FederatedType(I32, C)
    g = lam("z", I32, call(DOUBLE, ref("z")))
    five = tf_proto(lambda: np.int32(5))
    h_type = fl.StructType([type_of(g), I32])
    f = lam("y", I32, call(ADD, struct(call(sel(ref("h", h_type), 0), ref("y")),
                                       sel(ref("h", h_type), 1))))
    body = block([("g", g), ("h", struct(ref("g", type_of(g)), call(five)))],
                 federated_map(f, ref("x", ct), ct))
    assert [int(v) for v in runner.run(lam("x", ct, body), [1, 2])] == [7, 9]


def test_federating_eval_at_clients_of_a_closure_capturing_a_block_local(runner):
    # let k = 7 in federated_eval_at_clients(( -> k * 2))
    ct = fl.FederatedType(I32, C)
    f = lam(None, None, call(DOUBLE, ref("k")))
    body = block([("k", call(SEVEN))],
                 call(intrinsic("federated_eval_at_clients", fl.FunctionType(type_of(f), ct)), f))
    assert [int(v) for v in runner.run(lam(None, None, body), clients=2)] == [14, 14]


def test_sequence_reduce_with_a_closure_capturing_a_block_local(runner):
    # (s -> let k = 7 in sequence_reduce(<s, 0, (a -> a[0] + a[1] + k)>))
    seq_t = fl.SequenceType(I32)
    a = ref("a", PAIR)
    op = lam("a", PAIR, call(ADD, struct(call(ADD, struct(sel(a, 0), sel(a, 1))), ref("k"))))
    zero = tf_proto(lambda: np.int32(0))
    arg = struct(ref("s", seq_t), call(zero), op)
    body = block([("k", call(SEVEN))],
                 call(intrinsic("sequence_reduce", fl.FunctionType(type_of(arg), I32)), arg))
    assert runner.run(lam("s", seq_t, body), [1, 2, 3]) == 1 + 2 + 3 + 3 * 7


# == SequenceExecutor ==================================================================================
def sequence_stack():
    return sequence_executor.SequenceExecutor(leaf_stack())


def test_sequence_executor_passes_non_intrinsics_to_its_child():
    ex = sequence_stack()
    assert ex.materialize(ex.call(ex.value(DOUBLE), ex.value(np.int32(3), I32))) == 6


def test_sequence_executor_reduce_with_a_closure_from_above(runner):
    # The reducer is a lambda (not TensorFlow): it is handed down as a closure.
    seq_t = fl.SequenceType(I32)
    op = lam("a", PAIR, call(ADD, struct(call(DOUBLE, sel(ref("a", PAIR), 0)), sel(ref("a", PAIR), 1))))
    arg = struct(ref("s", seq_t), call(SEVEN), op)
    reduce = call(intrinsic("sequence_reduce", fl.FunctionType(type_of(arg), I32)), arg)
    assert runner.run(lam("s", seq_t, reduce), [1, 2]) == (7 * 2 + 1) * 2 + 2


def test_layers_wrap_a_struct_without_building_its_type_until_asked():
    """Every layer wraps the values its child makes; a struct's type is built only when someone
    looks at it (building it on every wrap cost as much as a small graph's per-client call)."""
    ex = sequence_stack()
    f32 = fl.TensorType(np.float32)
    pair = ex.struct([("a", ex.value(np.int32(1), I32)), (None, ex.value(np.float32(2), f32))])
    for value in (pair, pair.rep):  # the sequence layer's wrap of the RRE's struct
        assert not isinstance(value._type, fl.Type)
    assert pair.type_signature == fl.StructType([("a", I32), (None, f32)])
    assert pair.rep.type_signature == pair.type_signature
    assert ex.materialize(ex.selection(pair, 1)) == np.float32(2)


def test_sequence_executor_unknown_intrinsic_lists_supported():
    ex = sequence_stack()
    with pytest.raises(errors.ComputationError, match="unknown intrinsic 'sequence_frob'.*sequence_sum"):
        ex.value(intrinsic("sequence_frob", fl.FunctionType(fl.SequenceType(I32), I32)))


def test_sequence_executor_map_result_is_a_sequence_value():
    ex = sequence_stack()
    seq_t = fl.SequenceType(I32)
    arg_t = fl.StructType([fl.FunctionType(I32, I32), seq_t])
    fn = ex.value(intrinsic("sequence_map", fl.FunctionType(arg_t, seq_t)))
    arg = ex.struct([(None, ex.value(DOUBLE)),
                     (None, ex.value(sequences.SequenceValue(I32, elements=[np.int32(2)]), seq_t))])
    result = ex.materialize(ex.call(fn, arg))
    assert isinstance(result, sequences.SequenceValue)
    assert [int(e) for e in result.elements()] == [4]


# == factory, Runner ====================================================================================
def test_factory_caches_one_stack_per_client_count():
    factory = executor_factory.LazyExecutorFactory()
    a = factory.create_executor({C: 2})
    assert factory.create_executor({C: 2}) is a
    assert factory.create_executor({C: 3}) is not a
    assert factory.built == 2
    factory.close()


def test_factory_evicts_the_least_recently_used_stack():
    factory = executor_factory.LazyExecutorFactory(config_lib.StackConfig(cache_size=2))
    one = factory.create_executor({C: 1})
    factory.create_executor({C: 2})
    factory.create_executor({C: 1})
    factory.create_executor({C: 3})  # evicts 2, the least recently used
    assert factory.create_executor({C: 1}) is one
    built = factory.built
    factory.create_executor({C: 2})
    assert factory.built == built + 1
    factory.close()


def test_factory_clean_up_forgets_the_stack():
    factory = executor_factory.LazyExecutorFactory()
    a = factory.create_executor({C: 2})
    factory.clean_up_executor({C: 2})
    assert factory.create_executor({C: 2}) is not a
    factory.close()


def test_factory_without_clients_uses_the_configured_count():
    factory = executor_factory.LazyExecutorFactory(config_lib.StackConfig(clients=3))
    ex = factory.create_executor({})
    assert ex.child.num_clients == 3
    factory.close()


def test_runner_reuses_its_stack_for_the_same_client_count(runner):
    comp = lam("x", fl.FederatedType(I32, C),
               federated_map(DOUBLE, ref("x", fl.FederatedType(I32, C)), fl.FederatedType(I32, C)))
    before = runner.factory.built
    runner.run(comp, [1, 2, 3, 4, 5, 6, 7])
    runner.run(comp, [1, 2, 3, 4, 5, 6, 8])
    assert runner.factory.built == before + 1


def test_runner_client_count_disagreeing_with_the_argument_is_argument_error(runner):
    ct = fl.FederatedType(I32, C)
    with pytest.raises(errors.ArgumentError, match="disagrees"):
        runner.run(lam("x", ct, ref("x", ct)), [1, 2], clients=3)


# == federated-language's asynchronous interface and execution context =================================
def test_async_interface_create_value_call_struct_selection_compute():
    factory = executor_factory.LazyExecutorFactory()
    ex = factory.create_executor({C: 2})
    ct = fl.FederatedType(I32, C)
    comp = lam("x", ct, federated_map(DOUBLE, ref("x", ct), ct))

    async def go():
        fn = await ex.create_value(comp, type_of(comp))
        arg = await ex.create_value([np.int32(3), np.int32(4)], ct)
        mapped = await ex.create_call(fn, arg)
        pair = await ex.create_struct([mapped, arg])
        second = await ex.create_selection(pair, 1)
        return await mapped.compute(), await second.compute()

    mapped, second = asyncio.run(go())
    assert [int(v) for v in mapped] == [6, 8] and [int(v) for v in second] == [3, 4]
    factory.close()


@pytest.fixture
def tffexec_context():
    """tffexec's stack installed as federated-language's default context, restored afterwards."""
    stack = fl.framework.get_context_stack()
    previous = stack.current
    factory = executor_factory.LazyExecutorFactory()
    context = fl.framework.SyncExecutionContext(executor_fn=factory)
    stack.set_default_context(context)
    try:
        yield factory
    finally:
        stack.set_default_context(previous)
        factory.close()


def test_sync_execution_context_runs_a_traced_computation(tffexec_context):
    add = tfc.as_computation(ADD)
    double = tfc.as_computation(DOUBLE)

    @fl.federated_computation(fl.FederatedType(np.int32, C))
    def comp(x):
        return fl.federated_aggregate(x, np.int32(0), add, add, double)

    assert comp([1, 2, 3]) == 12
    assert comp([5]) == 10
    assert tffexec_context.built == 2  # one stack per client count


def test_sync_execution_context_with_a_named_struct_and_zero_clients(tffexec_context):
    @fl.federated_computation(fl.FederatedType(np.float32, C), fl.FederatedType(np.int32, S))
    def comp(x, s):
        return fl.federated_mean(x), fl.federated_broadcast(s)

    mean, broadcast = comp([1.0, 2.0], 7)
    assert mean == np.float32(1.5) and broadcast == 7
    mean, _ = comp([], 7)
    assert np.isnan(mean)


def test_sync_execution_context_restores_the_previous_context(tffexec_context):
    assert isinstance(fl.framework.get_context_stack().current, fl.framework.SyncExecutionContext)


# == values are released after their last use ==========================================================
class Tracked(np.ndarray):
    """A numpy array that can be weakly referenced."""


def _map_then_sum():
    t = fl.TensorType(np.float32, [128, 128])
    ct = fl.FederatedType(t, C)
    mapped = federated_map(tf_proto(lambda a: a * 2.0, t), ref("x", ct), ct)
    total = call(intrinsic("federated_sum", fl.FunctionType(ct, fl.FederatedType(t, S))), mapped)
    return lam("x", ct, total)


def test_argument_arrays_are_released_after_run(runner):
    arrays = [np.full((128, 128), i, np.float32).view(Tracked) for i in range(4)]
    refs = [weakref.ref(a) for a in arrays]
    result = runner.run(_map_then_sum(), arrays)
    assert result[0, 0] == 2 * (0 + 1 + 2 + 3)
    del arrays
    gc.collect()
    assert [r() is None for r in refs] == [True] * 4


def test_intermediate_client_values_are_released_after_run(runner, monkeypatch):
    produced = []
    to_numpy = tf_function.to_numpy

    def tracking(tensor, dtype):
        array = to_numpy(tensor, dtype).view(Tracked)
        produced.append(weakref.ref(array))
        return array

    monkeypatch.setattr(tf_function, "to_numpy", tracking)
    result = runner.run(_map_then_sum(), [np.ones((128, 128), np.float32)] * 5)
    assert result[0, 0] == 10
    # The mapped values came out of TensorFlow: one per client, or one column for all
    # clients when the stack batches them.
    assert len(produced) == (1 if runner.config.batch else 5)
    del result
    gc.collect()
    assert all(r() is None for r in produced)


def test_repeated_runs_return_python_memory_to_baseline(runner):
    comp = _map_then_sum()
    arg = [np.ones((128, 128), np.float32)] * 8  # 64 KiB each
    runner.run(comp, arg)
    tracemalloc.start()
    try:
        for _ in range(2):
            runner.run(comp, arg)
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            runner.run(comp, arg)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert growth < 64 * 1024, f"{growth} bytes retained over 10 runs"
