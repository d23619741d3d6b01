"""Tensor loops (`executors/tf_loops.py`): a graph that reduces its sequence parameter runs the
reduce function in a `While` over the element tensors instead of a tf.data pipeline, with the
same results bit for bit; graphs and datasets whose order or randomness a loop would change keep
tf.data. Each test runs both paths (`TFFEXEC_TENSOR_LOOPS=0` is the tf.data one) and reads the
path counter.
"""
from __future__ import annotations

import contextlib
import json
import re

import federated_language as fl
import numpy as np
import pytest
from federated_language.common_libs import structure

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import runner as runner_lib
from tffexec import tensorflow as tfc
from tffexec.checks import op_check
from tffexec.cli.main import cli
from tffexec.executors import activity
from tffexec.executors import tf_function
from tffexec.executors import tf_loop_feed
from tffexec.executors import tf_loops
from tffexec.formats import sequences
from tffexec_test_support import CONFORMANCE

tf = pytest.importorskip("tensorflow")

F32 = np.float32
ROW = fl.TensorType(F32, [None, 3])


def _run(monkeypatch, loops: bool, comp, arg, as_client: bool = True):
    """(result, path counts) of one run on a fresh stack with tensor loops on or off;
    `as_client`: the whole run counts as one client's work (a bare `tensorflow` computation),
    else only what the federated computation runs per client counts."""
    monkeypatch.setenv(tf_loops.ENV_SWITCH, "1" if loops else "0")
    before = activity.path_counts()
    with runner_lib.Runner() as runner, \
            activity.client_call() if as_client else contextlib.nullcontext():
        result = runner.run(comp, arg() if callable(arg) else arg)
    return result, activity.paths_since(before)


def _both(monkeypatch, comp, arg, as_client: bool = True):
    looped, looped_paths = _run(monkeypatch, True, comp, arg, as_client)
    plain, plain_paths = _run(monkeypatch, False, comp, arg, as_client)
    return looped, looped_paths, plain, plain_paths


def _bits(value) -> list:
    """(dtype, shape, raw bytes) of every array in a result: a bit-for-bit comparison."""
    if isinstance(value, structure.Struct):
        return [b for _, member in structure.iter_elements(value) for b in _bits(member)]
    if isinstance(value, (list, tuple)):
        return [b for member in value for b in _bits(member)]
    array = np.asarray(value)
    return [(str(array.dtype), array.shape, array.tobytes())]


def _batches(sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((size, 3)).astype(F32) for size in sizes]


def _training_step():
    """A client update in miniature: a weight updated per batch (reads and writes a variable),
    a loss sum and a batch count carried as the reduce state."""

    def client(dataset):
        weights = tf.Variable(tf.ones([3], F32))

        def step(state, batch):
            loss = tf.reduce_sum(tf.square(tf.linalg.matvec(batch, weights.read_value())))
            weights.assign_sub(0.01 * tf.reduce_mean(batch, axis=0) * loss)
            return state[0] + loss, state[1] + 1

        total, count = dataset.reduce((tf.constant(0.0, F32), tf.constant(0, tf.int32)), step)
        with tf.control_dependencies([total, count]):  # a graph: unordered reads are a race
            return total, count, weights.read_value()

    return tfc.tensorflow_computation(client, fl.SequenceType(ROW))


def test_reduction_of_a_ragged_sequence_takes_the_loop_and_equals_tf_data(monkeypatch):
    elements = _batches([4, 4, 4, 1])
    arg = lambda: sequences.SequenceValue(ROW, elements=elements)  # noqa: E731 - per run
    looped, looped_paths, plain, plain_paths = _both(monkeypatch, _training_step(), arg)
    assert looped_paths == {"tensor loop": 1}
    assert plain_paths == {"tf.data": 1}
    assert _bits(looped) == _bits(plain)
    assert int(looped[1]) == 4


def test_empty_sequence_leaves_the_initial_state(monkeypatch):
    arg = lambda: sequences.SequenceValue(ROW, elements=[])  # noqa: E731 - per run
    looped, looped_paths, plain, _ = _both(monkeypatch, _training_step(), arg)
    assert looped_paths == {"tensor loop": 1}
    assert _bits(looped) == _bits(plain)
    assert int(looped[1]) == 0


def test_struct_elements_reach_the_reduce_function_in_dataset_order(monkeypatch):
    # Named members are out of sorted order in the type: datasets (tf.nest) sort them.
    element = fl.StructType([("y", fl.TensorType(np.int32, [None])), ("x", ROW)])
    comp = tfc.tensorflow_computation(
        lambda ds: ds.reduce(tf.constant(0.0, F32), lambda s, e: s + tf.reduce_sum(
            e["x"] * tf.cast(e["y"], F32)[:, None])), fl.SequenceType(element))
    rows = _batches([2, 2, 1])
    labels = [np.arange(len(r), dtype=np.int32) + 1 for r in rows]
    elements = [structure.Struct([("y", y), ("x", x)]) for x, y in zip(rows, labels)]
    arg = lambda: sequences.SequenceValue(element, elements=elements)  # noqa: E731 - per run
    looped, looped_paths, plain, _ = _both(monkeypatch, comp, arg)
    assert looped_paths == {"tensor loop": 1}
    assert _bits(looped) == _bits(plain)
    expected = sum(float((x * y[:, None]).sum()) for x, y in zip(rows, labels))
    assert float(looped) == pytest.approx(expected, rel=1e-5)


def _scaled(dataset, scale):
    """A map whose function captures a tensor of the graph (an argument of the map op)."""
    return dataset.map(lambda b: b * scale)


@pytest.mark.parametrize("stages", [
    lambda ds: ds.take(2),
    lambda ds: ds.take(-1),
    lambda ds: ds.take(9),
    lambda ds: ds.repeat(3),
    lambda ds: ds.repeat(0),
    lambda ds: ds.repeat().take(7),
    lambda ds: ds.take(2).repeat(2).take(3).repeat(2),
    lambda ds: ds.map(lambda b: b * 2.0 + 1.0),
    lambda ds: ds.take(2).map(lambda b: tf.reduce_sum(b, axis=1), num_parallel_calls=2)
    .repeat(2).map(lambda v: v * v),
    lambda ds: _scaled(ds.take(2), tf.constant([1.0, 2.0, 3.0], F32)),
], ids=["take", "take_all", "take_more", "repeat", "repeat_none", "endless_take",
        "nested", "map", "maps_between_stages", "map_with_captured_tensor"])
def test_take_and_repeat_stages_loop_over_the_same_elements_as_tf_data(monkeypatch, stages):
    comp = tfc.tensorflow_computation(
        lambda ds: stages(ds).reduce((tf.constant(0.0, F32), tf.constant(0, tf.int64)),
                                     lambda s, b: (s[0] * 0.5 + tf.reduce_sum(b), s[1] + 1)),
        fl.SequenceType(ROW))
    arg = lambda: sequences.SequenceValue(ROW, elements=_batches([2, 2, 1]))  # noqa: E731
    looped, looped_paths, plain, _ = _both(monkeypatch, comp, arg)
    assert looped_paths == {"tensor loop": 1}
    assert _bits(looped) == _bits(plain)


def test_endless_repeat_without_take_is_not_a_loop():
    comp = tfc.tensorflow_computation(
        lambda ds: ds.repeat().reduce(tf.constant(0.0, F32), lambda s, b: s + tf.reduce_sum(b)),
        fl.SequenceType(ROW))
    graph_def = tf.compat.v1.GraphDef.FromString(comp.tensorflow.graph_def.value)
    function = tf_function.GraphFunction(comp.tensorflow)
    assert tf_loops.plan(graph_def, function.parameter_leaves, function.result_leaves) is None


def test_stateful_random_op_in_the_reduce_function_keeps_tf_data(monkeypatch):
    comp = tfc.tensorflow_computation(
        lambda ds: ds.reduce(tf.constant(0.0, F32),
                             lambda s, b: s + tf.reduce_sum(b) * tf.random.uniform([], seed=1)),
        fl.SequenceType(ROW))
    arg = lambda: sequences.SequenceValue(ROW, elements=_batches([2, 2]))  # noqa: E731
    _, paths = _run(monkeypatch, True, comp, arg)
    assert paths == {"tf.data": 1}  # no plan: the graph runs as before


def test_random_map_inside_the_graph_keeps_tf_data(monkeypatch):
    comp = tfc.tensorflow_computation(
        lambda ds: ds.map(lambda b: b + tf.random.uniform(tf.shape(b), seed=2)).reduce(
            tf.constant(0.0, F32), lambda s, b: s + tf.reduce_sum(b)),
        fl.SequenceType(ROW))
    arg = lambda: sequences.SequenceValue(ROW, elements=_batches([2, 2]))  # noqa: E731
    _, paths = _run(monkeypatch, True, comp, arg)
    assert paths == {"tf.data": 1}


def test_shuffle_inside_the_graph_keeps_tf_data(monkeypatch):
    comp = tfc.tensorflow_computation(
        lambda ds: ds.shuffle(4, seed=1).reduce(tf.constant(0.0, F32),
                                                lambda s, b: s * 0.5 + tf.reduce_sum(b)),
        fl.SequenceType(ROW))
    arg = lambda: sequences.SequenceValue(ROW, elements=_batches([2, 2, 2]))  # noqa: E731
    _, paths = _run(monkeypatch, True, comp, arg)
    assert paths == {"tf.data": 1}


def test_sequence_that_is_also_returned_keeps_tf_data(monkeypatch):
    comp = tfc.tensorflow_computation(
        lambda ds: (ds.reduce(tf.constant(0.0, F32), lambda s, b: s + tf.reduce_sum(b)), ds),
        fl.SequenceType(ROW))
    arg = lambda: sequences.SequenceValue(ROW, elements=_batches([2, 1]))  # noqa: E731
    result, paths = _run(monkeypatch, True, comp, arg)
    assert paths == {"tf.data": 1}
    assert len(result[1].elements()) == 2


def test_a_looped_graph_imported_afresh_per_call_is_rewritten_once(monkeypatch):
    # A seeded random op outside the reduction: every call needs fresh kernels (its stream
    # restarts, as in TFF), so every call imports its own instance of the looped graph.
    comp = tfc.tensorflow_computation(
        lambda ds: ds.reduce(tf.constant(0.0, F32), lambda s, b: s + tf.reduce_sum(b))
        + tf.random.uniform([], seed=3), fl.SequenceType(ROW))
    rewrites = []
    rewrite = tf_loops.rewrite
    monkeypatch.setattr(tf_loops, "rewrite", lambda *a: rewrites.append(a) or rewrite(*a))
    function = tf_function.GraphFunction(comp.tensorflow)
    sequence = sequences.SequenceValue(ROW, elements=_batches([2, 2, 1]))
    before = activity.path_counts()
    with activity.client_call():
        results = [function([sequence])[0].numpy() for _ in range(3)]
    assert activity.paths_since(before) == {"tensor loop": 3}
    assert len(rewrites) == 1
    plain, _ = _run(monkeypatch, False, comp, lambda: sequences.SequenceValue(
        ROW, elements=_batches([2, 2, 1])))
    assert _bits(results) == _bits([plain] * 3)


def test_a_sequence_fed_again_reuses_its_element_lists_and_gives_the_same_bits(monkeypatch):
    function = tf_function.GraphFunction(_training_step().tensorflow)
    sequence = sequences.SequenceValue(ROW, elements=_batches([3, 3, 2]))
    dtypes = tf_loop_feed.element_dtypes(ROW)
    first = tf_loop_feed.element_lists(sequence, dtypes)
    assert tf_loop_feed.element_lists(sequence, dtypes) is first
    with activity.client_call():
        results = [[t.numpy() for t in function([sequence])] for _ in range(3)]
    plain, _ = _run(monkeypatch, False, _training_step(), sequence)
    assert _bits(results) == _bits([plain] * 3)  # no state carried from call to call
    other = sequences.SequenceValue(ROW, elements=_batches([3, 3, 2]))
    assert tf_loop_feed.element_lists(other, dtypes) is not first


def test_an_element_limit_applies_to_a_sequence_whose_lists_are_kept():
    sequence = sequences.SequenceValue(ROW, elements=_batches([1, 1, 1]))
    dtypes = tf_loop_feed.element_dtypes(ROW)
    tf_loop_feed.element_lists(sequence, dtypes)
    sequence.bind_policy(policy_lib.Policy(max_sequence_elements=2))
    with pytest.raises(errors.PolicyError):
        tf_loop_feed.element_lists(sequence, dtypes)


def _graph_sequence(dataset) -> sequences.SequenceValue:
    """A sequence that arrives as a serialized dataset graph, checked as the loaders do."""
    graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(dataset))
    return sequences.SequenceValue(ROW, graph_def=graph.numpy()).bind_policy(
        policy_lib.DEFAULT, op_check.check_dataset_graph)


def _order_sensitive():
    return tfc.tensorflow_computation(
        lambda ds: ds.reduce(tf.constant(0.0, F32), lambda s, b: s * 0.5 + tf.reduce_sum(b)),
        fl.SequenceType(ROW))


def test_argument_dataset_graph_without_randomness_takes_the_loop(monkeypatch):
    rows = np.concatenate(_batches([5, 5]))
    arg = lambda: _graph_sequence(tf.data.Dataset.from_tensor_slices(rows).batch(3))  # noqa: E731
    looped, looped_paths, plain, _ = _both(monkeypatch, _order_sensitive(), arg)
    assert looped_paths == {"tensor loop": 1}
    assert _bits(looped) == _bits(plain)


def test_argument_dataset_that_shuffles_or_maps_randomly_keeps_tf_data(monkeypatch):
    rows = np.concatenate(_batches([3, 3]))
    shuffled = lambda: _graph_sequence(  # noqa: E731
        tf.data.Dataset.from_tensor_slices(rows).shuffle(6).batch(2))
    noisy = lambda: _graph_sequence(  # noqa: E731
        tf.data.Dataset.from_tensor_slices(rows).batch(2).map(
            lambda b: b + tf.random.uniform(tf.shape(b))))
    for arg in (shuffled, noisy):
        _, paths = _run(monkeypatch, True, _order_sensitive(), arg)
        assert paths == {"tf.data": 1}


def test_keras_training_round_takes_the_loop_and_equals_tf_data_bit_for_bit(monkeypatch):
    case = CONFORMANCE / "learn_keras_fedavg_next"
    looped, looped_paths, plain, plain_paths = _both(
        monkeypatch, case / "comp.pb", case / "arg.pb", as_client=False)
    clients = json.loads((case / "meta.json").read_text())["num_clients"]
    assert looped_paths["tensor loop"] == clients and "tf.data" not in looped_paths
    assert plain_paths["tf.data"] == clients and "tensor loop" not in plain_paths
    assert _bits(looped) == _bits(plain)


# -- the path counts in the CLI -------------------------------------------------------------------
SMALL = CONFORMANCE / "seq_tf_reduce_then_sum"


def _cli(runner, *args):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_verbose_run_logs_the_path_of_the_client_graphs(runner, monkeypatch):
    result = _cli(runner, "run", "-v", SMALL / "comp.pb", SMALL / "arg.pb")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"client graph paths: tensor loop \d+$", result.stderr, re.M)
    monkeypatch.setenv(tf_loops.ENV_SWITCH, "0")
    result = _cli(runner, "run", "-v", SMALL / "comp.pb", SMALL / "arg.pb")
    assert re.search(r"client graph paths: tf.data \d+$", result.stderr, re.M)


def test_benchmark_json_counts_the_paths_of_every_run(runner):
    result = _cli(runner, "benchmark", SMALL / "comp.pb", SMALL / "arg.pb", "--runs", "2",
                  "--warmup", "1", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    # the timed runs, each calling the client graph once per client
    assert doc["client_paths"] == {"tensor loop": 2 * doc["clients"]}
