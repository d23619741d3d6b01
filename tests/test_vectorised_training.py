"""Clients that train together: a client graph re-emitted as a pure function (`tf_functional`)
and buckets of clients with equal datasets run as one vectorised call (`tf_vectorised`).

The interpreter alone must give the per-client path's result for one client (real client graphs
of examples/learning, random weights, the case's first client's dataset); vectorised buckets must
give the per-client path's result (TFFEXEC_VECTORISED_TRAINING=0) within rtol 1e-5 / atol 1e-6
and TFF's expected.pb within the case's tolerance; graphs the interpreter cannot make pure (a
stateful random op, an LSTM's While loop) keep the per-client path.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import federated_language
import numpy as np
import pytest
import tensorflow as tf
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import runner as runner_lib
from tffexec.checks import op_check
from tffexec.executors import activity
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_function
from tffexec.executors import tf_functional
from tffexec.executors import tf_loop_feed
from tffexec.executors import tf_vectorised
from tffexec.factories import config as config_lib
from tffexec.formats import compare, loading, sequences, values
from tffexec.formats.protos import executor_pb2

LEARNING = pathlib.Path(__file__).resolve().parents[1] / "examples" / "learning"
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(autouse=True)
def fresh_bucket_functions():
    """Each test counts the bucket functions it traces: none is cached from another test."""
    tf_vectorised.clear_cache()
    yield
    tf_vectorised.clear_cache()


def _case(name: str):
    case_dir = LEARNING / name
    meta = json.loads((case_dir / "meta.json").read_text())
    comp = loading.load_computation(case_dir / "comp.pb")
    function_type = federated_language.Type.from_proto(comp.type)
    arg_pb = executor_pb2.Value.FromString((case_dir / "arg.pb").read_bytes())
    return case_dir, meta, comp, function_type, arg_pb


def _tensorflow_computations(message):
    """Every `tensorflow` computation nested in a computation proto."""
    if isinstance(message, computation_pb2.Computation) and \
            message.WhichOneof("computation") == "tensorflow":
        yield message
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in (value if field.is_repeated else [value]):
            yield from _tensorflow_computations(item)


def _client_graph(comp) -> tf_function.GraphFunction:
    """The case's client training graph: the one that takes a sequence."""
    for proto in _tensorflow_computations(comp):
        graph_function = tf_function.GraphFunction(proto.tensorflow)
        if any(kind == "variant" for kind, _ in graph_function.parameter_leaves):
            return graph_function
    raise AssertionError("no client graph takes a sequence")


def _first_client_dataset(function_type, arg_pb):
    arg, _ = values.value_from_proto(arg_pb, function_type.parameter, path="arg")
    op_check.check_value(arg, function_type.parameter, policy_lib.DEFAULT, path="arg")
    return arg[1][0]


def _random_parameters(graph_function) -> list:
    """Seeded values for the graph's tensor parameters, from their placeholders' dtypes/shapes."""
    nodes = {n.name: n for n in graph_function.prepared_graph_def().node}
    rng = np.random.default_rng(7)
    out = []
    for kind, name in graph_function.parameter_leaves:
        if kind != "tensor":
            continue
        node = nodes[name.split(":")[0]]
        dtype = tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype
        shape = [d.size for d in node.attr["shape"].shape.dim]
        out.append((0.1 * rng.standard_normal(shape) + 0.05).astype(dtype))
    return out


def _interpreted(graph_function, tensors: list, dataset):
    """A tf.function running the interpreted graph for one client (no vectorisation)."""
    interpreter = tf_functional.Interpreter(graph_function.prepared_graph_def())
    results = [name for _, name in graph_function.result_leaves]
    elements = [[tuple(tf.constant(c) for c in tf_loop_feed.element_leaves(e, dataset.element_type))
                 for e in dataset.elements()]]

    @tf.function(autograph=False)
    def one_client():
        feeds = tf_vectorised.client_feeds(graph_function, [tf.constant(t) for t in tensors],
                                           elements)
        return interpreter.run(feeds, results)

    return one_client


@pytest.mark.parametrize("case", ["fedavg_mlp_c10", "fedavg_cnn_c10", "fedsgd_mlp_c10",
                                  "eval_mlp_c10"])
def test_interpreted_client_graph_gives_the_per_client_result(case):
    _, _, comp, function_type, arg_pb = _case(case)
    graph_function = _client_graph(comp)
    dataset = _first_client_dataset(function_type, arg_pb)
    tensors = _random_parameters(graph_function)
    flat, it = [], iter(tensors)
    for kind, _ in graph_function.parameter_leaves:
        flat.append(next(it) if kind == "tensor" else dataset)
    expected = [o.numpy() for o in graph_function(flat)]

    got = [o.numpy() for o in _interpreted(graph_function, tensors, dataset)()]
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"result {index}")


@dataclasses.dataclass
class _Rounds:
    """What rounds on one Runner gave: the last result, the paths the client graphs took in
    each round, and the vectorised calls made and bucket functions traced in all rounds."""

    result: object
    paths: list
    calls: int
    traces: int


def _run(comp, arg, clients: int, monkeypatch, vectorised: bool, rounds: int = 1) -> _Rounds:
    """`rounds` calls on a fresh Runner, vectorised training on or off."""
    monkeypatch.setenv(tf_vectorised.ENV_SWITCH, "1" if vectorised else "0")
    paths = []
    with runner_lib.Runner() as runner:
        for _ in range(rounds):
            before = activity.path_counts()
            result = runner.run(comp, arg, clients=clients)
            paths.append(activity.paths_since(before))
        training = runner.factory.create_executor(
            {federated_language.CLIENTS: clients}).child.client_work.training
    if training is None:
        return _Rounds(result, paths, 0, 0)
    return _Rounds(result, paths, training.calls, training.traces)


def _run_round(name: str, monkeypatch, vectorised: bool) -> _Rounds:
    """`_run` on the case's round."""
    _, meta, comp, _, arg_pb = _case(name)
    return _run(comp, arg_pb, meta["num_clients"], monkeypatch, vectorised)


def _assert_close(name: str, got, want, rtol: float, atol: float) -> None:
    result_type = _case(name)[3].result
    differences = compare.value_differences(got, want, result_type, rtol=rtol, atol=atol,
                                            path="result")
    assert not differences, "\n".join(f"{p}: {t}" for p, t in differences[:5])


def _expected(name: str):
    case_dir, meta, _, function_type, _ = _case(name)
    return (loading.load_value(case_dir / "expected.pb", function_type.result, path="expected"),
            meta["compare"])


def test_fedavg_clients_with_equal_datasets_train_vectorised_as_per_client(monkeypatch):
    name = "fedavg_mlp_c10"
    # Inputs of at most two clients per call: the bucket of ten runs as five calls.
    monkeypatch.setattr(tf_vectorised, "CALL_BYTES", 1)
    vectorised = _run_round(name, monkeypatch, vectorised=True)
    per_client = _run_round(name, monkeypatch, vectorised=False)
    assert vectorised.paths[0].get(activity.VECTORISED) == 10 and vectorised.calls == 5
    assert activity.VECTORISED not in per_client.paths[0]
    assert per_client.paths[0].get(activity.TENSOR_LOOP) == 10
    _assert_close(name, vectorised.result, per_client.result, RTOL, ATOL)
    expected, tolerance = _expected(name)
    _assert_close(name, vectorised.result, expected, tolerance["rtol"], tolerance["atol"])


def test_cnn_clients_train_in_one_call_to_tffs_result(monkeypatch):
    name = "fedavg_cnn_c10"
    rounds = _run_round(name, monkeypatch, vectorised=True)
    assert rounds.paths[0].get(activity.VECTORISED) == 10 and rounds.calls == 1
    expected, tolerance = _expected(name)
    _assert_close(name, rounds.result, expected, tolerance["rtol"], tolerance["atol"])


def _unequal_round(monkeypatch, vectorised: bool, rounds: int = 1):
    """fedavg_mlp_c10's round with datasets of five structures: clients 0-2 as made (4 batches
    of 4), 3-4 with a last batch of 2, 5-7 without their last batch, 8 with 2 batches, 9 with a
    last batch of 3."""
    from federated_language.common_libs import structure  # noqa: PLC0415
    from tffexec.formats import sequences  # noqa: PLC0415

    _, _, comp, function_type, arg_pb = _case("fedavg_mlp_c10")
    arg, _ = values.value_from_proto(arg_pb, function_type.parameter, path="arg")
    op_check.check_value(arg, function_type.parameter, policy_lib.DEFAULT, path="arg")

    def shortened(element, rows: int):
        return structure.Struct([(n, v[:rows]) for n, v in structure.iter_elements(element)])

    datasets = []
    for client, dataset in enumerate(arg[1]):
        elements = list(dataset.elements())
        if client in (3, 4):
            elements[-1] = shortened(elements[-1], 2)
        elif 5 <= client <= 7:
            elements = elements[:3]
        elif client == 8:
            elements = elements[:2]
        elif client == 9:
            elements[-1] = shortened(elements[-1], 3)
        datasets.append(sequences.SequenceValue(dataset.element_type, elements=elements))
    return _run(comp, structure.Struct([(None, arg[0]), (None, datasets)]), 10, monkeypatch,
                vectorised, rounds)


def _mlp_c10_arg():
    """fedavg_mlp_c10's argument as Python values: (model, one sequence per client)."""
    _, _, comp, function_type, arg_pb = _case("fedavg_mlp_c10")
    arg, _ = values.value_from_proto(arg_pb, function_type.parameter, path="arg")
    op_check.check_value(arg, function_type.parameter, policy_lib.DEFAULT, path="arg")
    return comp, arg


def _scaled(dataset, factor: float):
    """A new sequence object: `dataset`'s elements with every float array scaled."""
    def scale(v):
        return v * np.asarray(factor, v.dtype) if v.dtype.kind == "f" else v

    elements = [structure.Struct([(n, scale(v)) for n, v in structure.iter_elements(e)])
                for e in dataset.elements()]
    return sequences.SequenceValue(dataset.element_type, elements=elements)


def _runs(comp, args: list, clients: int, monkeypatch, vectorised: bool) -> list:
    """Each argument's result, in turn on one Runner (what it keeps from a call may serve the
    next)."""
    monkeypatch.setenv(tf_vectorised.ENV_SWITCH, "1" if vectorised else "0")
    with runner_lib.Runner() as runner:
        return [runner.run(comp, arg, clients=clients) for arg in args]


def test_a_client_sequence_replaced_between_calls_trains_on_its_new_data(monkeypatch):
    """Element leaves and stacked bucket inputs are kept per sequence object between calls:
    a call where one client (then every client) brings a new sequence with other data of the
    same structure must train on the new data, not on what was kept."""
    comp, arg = _mlp_c10_arg()
    model, datasets = arg[0], list(arg[1])
    one_new = datasets[:4] + [_scaled(datasets[4], 0.5)] + datasets[5:]
    all_new = [_scaled(d, 2.0) for d in datasets]
    args = [structure.Struct([(None, model), (None, d)]) for d in (datasets, one_new, all_new)]
    vectorised = _runs(comp, args + [args[0]], 10, monkeypatch, vectorised=True)
    per_client = _runs(comp, args, 10, monkeypatch, vectorised=False)
    name = "fedavg_mlp_c10"
    for got, want in zip(vectorised, per_client + per_client[:1]):
        _assert_close(name, got, want, RTOL, ATOL)
    # The data changed the results: a kept (stale) input would have given the first result.
    for changed in per_client[1:]:
        assert compare.value_differences(changed, per_client[0], _case(name)[3].result,
                                         rtol=RTOL, atol=ATOL, path="result")


def test_kept_element_leaves_do_not_bypass_a_lower_element_limit(monkeypatch):
    """A sequence's leaves are kept between calls, but its element limit is checked on every
    call: the same sequences (4 elements each) under a stack that allows 3 are refused."""
    comp, arg = _mlp_c10_arg()
    value = structure.Struct([(None, arg[0]), (None, list(arg[1]))])
    monkeypatch.setenv(tf_vectorised.ENV_SWITCH, "1")
    with runner_lib.Runner() as runner:
        runner.run(comp, value, clients=10)
    strict = config_lib.StackConfig(policy=policy_lib.Policy(max_sequence_elements=3))
    with runner_lib.Runner(strict) as runner, pytest.raises(errors.PolicyError):
        runner.run(comp, value, clients=10)


def test_the_same_sequences_reuse_their_stacked_inputs_and_a_different_member_does_not():
    """A bucket call's stacked element tensors serve the next call only when every member
    brings the very same sequence leaves, in the same order."""
    _, arg = _mlp_c10_arg()
    datasets = list(arg[1])
    training = tf_vectorised.VectorisedTraining(tensorflow_executor.TensorFlowExecutor())

    def clients(sequences_):
        return [tf_vectorised._Client([], (), [tf_vectorised._sequence_leaves(s)])
                for s in sequences_]

    first = training._stacked_sequences(clients(datasets))
    assert all(a is b for a, b in zip(training._stacked_sequences(clients(datasets)), first))
    replaced = datasets[:9] + [_scaled(datasets[9], 3.0)]
    other = training._stacked_sequences(clients(replaced))
    assert not any(a is b for a, b in zip(other, first))
    want = [np.stack([tf_loop_feed.element_leaves(s.elements()[e], s.element_type)[c]
                      for s in replaced])
            for e in range(len(replaced[0].elements())) for c in range(2)]
    assert len(other) == len(want)
    for got, expected in zip(other, want):
        np.testing.assert_array_equal(got.numpy(), expected)
    # A different order of the same members is a different call too.
    swapped = training._stacked_sequences(clients(datasets[1:2] + datasets[:1] + datasets[2:]))
    np.testing.assert_array_equal(swapped[0].numpy()[0], first[0].numpy()[1])


def test_unequal_datasets_train_in_buckets_of_equal_structure(monkeypatch):
    vectorised = _unequal_round(monkeypatch, vectorised=True, rounds=2)
    first, second = vectorised.paths
    # One new function per round: the first round traces the first bucket's (4 batches), which
    # also serves the bucket whose last batch is shorter; the 3-batch bucket trains per client.
    assert first.get(activity.VECTORISED) == 5 and first.get(activity.TENSOR_LOOP) == 5
    # The second round traces the 3-batch bucket's: buckets of 3, 3 and 2; two lone clients.
    assert second.get(activity.VECTORISED) == 8 and second.get(activity.TENSOR_LOOP) == 2
    assert vectorised.traces == 2 and vectorised.calls == 2 + 3
    per_client = _unequal_round(monkeypatch, vectorised=False)
    assert per_client.paths[0].get(activity.TENSOR_LOOP) == 10
    _assert_close("fedavg_mlp_c10", vectorised.result, per_client.result, RTOL, ATOL)


def _graph_def_of(fn, *specs):
    return fn.get_concrete_function(*specs).graph.as_graph_def()


def test_a_stateful_random_op_is_refused_by_the_interpreter():
    @tf.function
    def noisy(x):
        return x + tf.random.uniform([3])

    graph_def = _graph_def_of(noisy, tf.TensorSpec([3], tf.float32))
    interpreter = tf_functional.Interpreter(graph_def)
    placeholder = next(n.name for n in graph_def.node if n.op == "Placeholder")
    output = next(n.name for n in graph_def.node if n.op == "Identity")

    @tf.function(autograph=False)
    def run():
        return interpreter.run({placeholder: tf.zeros([3])}, [output + ":0"])

    with pytest.raises(tf_functional.Unsupported, match="stateful op"):
        run.get_concrete_function()


def test_variables_are_read_and_assigned_in_order():
    """A function that assigns, adds to and reads a variable: the interpreter's value."""
    variable = tf.Variable(0.0)

    @tf.function
    def steps(x):
        variable.assign(x)
        variable.assign_add(2.0 * x)
        first = variable.read_value()
        variable.assign_sub(1.0)
        return first * 10.0 + variable.read_value()

    graph_def = _graph_def_of(steps, tf.TensorSpec([], tf.float32))
    # The variable is captured (a resource placeholder): give it a slot holding an old value.
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    value_input = next(n.name for n in placeholders if n.attr["dtype"].type != 20)
    handle_input = next(n.name for n in placeholders if n.attr["dtype"].type == 20)
    output = [n.name for n in graph_def.node if n.op == "Identity"][-1]  # the function's result
    interpreter = tf_functional.Interpreter(graph_def)

    @tf.function(autograph=False)
    def run(x):
        slot = tf_functional.Slot(tf.float32.as_datatype_enum, tf.constant(-5.0))
        return interpreter.run({value_input: x, handle_input: slot}, [output + ":0"])

    (result,) = run(tf.constant(2.0))
    assert float(result) == pytest.approx(6.0 * 10.0 + 5.0)
    assert float(variable.numpy()) == 0.0  # the real variable was never touched


def test_an_lstm_client_graph_is_refused_by_the_interpreter():
    """Keras' LSTM runs a `While` loop over time steps, with the weights read inside: the
    interpreter refuses it (the bucket path then leaves the clients to the per-client path)."""
    _, _, comp, function_type, arg_pb = _case("fedavg_lstm_c10")
    graph_function = _client_graph(comp)
    dataset = _first_client_dataset(function_type, arg_pb)
    one_client = _interpreted(graph_function, _random_parameters(graph_function), dataset)
    with pytest.raises(tf_functional.Unsupported):
        one_client.get_concrete_function()


def test_a_second_runner_reuses_the_traced_bucket_function(monkeypatch):
    """Traced functions are shared by every stack of the process (keyed by the graph's
    content): a second Runner trains in buckets without tracing again."""
    first = _run_round("fedavg_mlp_c10", monkeypatch, vectorised=True)
    second = _run_round("fedavg_mlp_c10", monkeypatch, vectorised=True)
    assert first.traces == 1 and second.traces == 0
    assert second.paths[0].get(activity.VECTORISED) == 10 and second.calls == 1
    _assert_close("fedavg_mlp_c10", second.result, first.result, 0.0, 0.0)


def test_structures_past_the_trace_budget_train_per_client(monkeypatch):
    monkeypatch.setattr(tf_vectorised, "MAX_TRACES", 1)
    rounds = _unequal_round(monkeypatch, vectorised=True, rounds=2)
    # The 3-batch bucket would need a second function: it stays per client in every round.
    assert rounds.traces == 1 and rounds.calls == 2 + 2
    assert rounds.paths[1].get(activity.VECTORISED) == 5
    assert rounds.paths[1].get(activity.TENSOR_LOOP) == 5


def test_a_structure_few_clients_share_is_not_traced_and_its_clients_train_per_client(
        monkeypatch):
    # The largest bucket of the unequal round holds 3 of 10 clients: under a 35 % share it does
    # not repay a trace of seconds, so nothing is traced and every client trains on its own.
    monkeypatch.setattr(tf_vectorised, "TRACE_SHARE", 0.35)
    monkeypatch.setattr(tf_vectorised, "TRACE_CLIENTS", 4)
    rounds = _unequal_round(monkeypatch, vectorised=True)
    assert rounds.traces == 0 and rounds.calls == 0
    assert rounds.paths[0].get(activity.TENSOR_LOOP) == 10
    assert activity.VECTORISED not in rounds.paths[0]
