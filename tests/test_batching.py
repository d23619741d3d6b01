"""Batched clients: columns instead of per-client values, one TensorFlow call for all clients.

Batching must never change a result: every test compares the batched stack with the per-client
one (`batch=False`, the CLI's `--no-batch`), bit for bit where the per-client path is itself
deterministic. It must also really batch (counted TensorFlow calls), and fall back to the
per-client path by itself where it cannot (lambdas, stateful or non-vectorisable graphs,
ragged values, TensorFlow errors that must name a client).
"""
from __future__ import annotations

import math
import pathlib

import federated_language as fl
import numpy as np
import pytest
from click.testing import CliRunner

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec.cli import main as cli_main
from tffexec.executors import batch as batch_lib
from tffexec.executors import numeric
from tffexec.executors import client_work
from tffexec.factories import config as config_lib
from tffexec import tensorflow as tfc

C, S = fl.CLIENTS, fl.SERVER
REPO = pathlib.Path(__file__).resolve().parents[1]
BATCHED = config_lib.StackConfig()
PER_CLIENT = config_lib.StackConfig(batch=False)


def tf_fn(fn, parameter_type=None):
    return tfc.as_computation(tfc.tensorflow_computation(fn, parameter_type))


def _run_both(comp, arg, clients: int):
    """(batched result, per-client result, batched TensorFlow calls made)."""
    with runner_lib.Runner(BATCHED) as batched, runner_lib.Runner(PER_CLIENT) as per_client:
        result = batched.run(comp, arg, clients=clients)
        stack = batched.factory.create_executor({C: clients})
        calls = stack.child.client_work.functions.calls
        return result, per_client.run(comp, arg, clients=clients), calls


def _tanh_map_mean():
    fn = tf_fn(lambda x: __import__("tensorflow").tanh(x * 0.5 + 1.0),
               fl.TensorType(np.float32, [16]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.float32, [16]), C))
    def comp(x):
        return fl.federated_mean(fl.federated_map(fn, x))

    return comp


def test_map_and_mean_run_as_one_call_and_equal_the_per_client_result_bit_for_bit(
        leaf_calls):
    values = list(np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32))
    batched, per_client, calls = _run_both(_tanh_map_mean(), values, 300)
    # The first call of a function is a small chunk; once its cost is known, the rest of the
    # clients go in as few calls as the time and byte targets allow.
    assert calls <= math.ceil(300 / client_work.BatchingClientWork.CHUNK)
    assert batched.dtype == np.float32
    np.testing.assert_array_equal(batched, per_client)
    # The per-client stack made 300 calls; the batched one none per client.
    assert len(leaf_calls) == 300


def test_a_map_whose_graph_holds_a_conditional_runs_as_one_call_equal_to_per_client(
        leaf_calls):
    """pfor cannot vectorise an imported graph's `If` (it needs the branches as traced
    functions): such a map is re-emitted op by op (`tf_functional`) and batched all the same."""
    import tensorflow as tf  # noqa: PLC0415

    def clip(x):
        norm = tf.norm(x)
        return tf.cond(norm > 1.0, lambda: x / norm, lambda: x * 2.0)

    fn = tf_fn(clip, fl.TensorType(np.float32, [4]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.float32, [4]), C))
    def comp(x):
        return fl.federated_map(fn, x)

    values = list(np.random.default_rng(4).standard_normal((60, 4)).astype(np.float32) * 0.6)
    batched, per_client, calls = _run_both(comp, values, 60)
    assert calls == 1 and len(leaf_calls) == 60  # the per-client stack made all 60
    norms = np.linalg.norm(np.stack(values), axis=1)
    assert (norms > 1.0).any() and (norms <= 1.0).any()  # both branches taken
    np.testing.assert_array_equal(np.stack(batched), np.stack(per_client))


def test_a_map_with_an_op_pfor_has_no_rule_for_runs_it_in_a_loop_in_one_call(leaf_calls):
    """`L2Loss` (a DP aggregator's clipping) has no pfor rule: the map runs in one call with
    that op looped over the clients, each on its own slice, as the per-client path computes it."""
    import tensorflow as tf  # noqa: PLC0415

    def clip(x):
        return x * tf.minimum(1.0, 0.5 / tf.sqrt(2.0 * tf.nn.l2_loss(x)))

    fn = tf_fn(clip, fl.TensorType(np.float32, [8]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.float32, [8]), C))
    def comp(x):
        return fl.federated_map(fn, x)

    values = list(np.random.default_rng(6).standard_normal((40, 8)).astype(np.float32))
    batched, per_client, calls = _run_both(comp, values, 40)
    assert calls == 1 and len(leaf_calls) == 40  # the per-client stack made all 40
    np.testing.assert_array_equal(np.stack(batched), np.stack(per_client))


def test_sum_of_many_float32_scalars_adds_in_client_order():
    values = [np.float32(v) for v in np.random.default_rng(1).standard_normal(1000) * 1e3]

    @fl.federated_computation(fl.FederatedType(np.float32, C))
    def comp(x):
        return fl.federated_sum(x)

    batched, per_client, _ = _run_both(comp, values, 1000)
    expected = np.float32(0)
    for v in values:
        expected = np.float32(expected + v)
    assert batched == per_client == expected


@pytest.mark.parametrize("shape", [(), (1,), (3,), (70,), (9, 9)])
def test_in_order_sum_of_columns_matches_a_python_fold(shape):
    column = np.random.default_rng(2).standard_normal((257,) + shape).astype(np.float32)
    expected = np.array(column[0])
    for row in column[1:]:
        expected = np.add(expected, row, dtype=np.float32)
    np.testing.assert_array_equal(numeric._in_order_sum(column, np.float32), expected)


def test_aggregate_with_a_tensorflow_accumulate_is_one_in_order_fold():
    pair = fl.StructType([np.float32, np.float32])
    accumulate = tf_fn(lambda a: a[0] * 0.5 + a[1], pair)
    merge = tf_fn(lambda a: a[0] + a[1], pair)
    report = tf_fn(lambda a: a * 2.0, np.float32)

    @fl.federated_computation(fl.FederatedType(np.float32, C))
    def comp(x):
        return fl.federated_aggregate(x, np.float32(1.0), accumulate, merge, report)

    values = [np.float32(v) for v in np.random.default_rng(3).standard_normal(200)]
    batched, per_client, calls = _run_both(comp, values, 200)
    assert calls == 1  # order matters here (acc * 0.5 + x): only an in-order fold gets it right
    assert batched == per_client


def test_zip_of_client_values_with_a_broadcast_stays_columnar():
    add = tf_fn(lambda a: a[0] + a[1], fl.StructType([fl.TensorType(np.float32, [4]),
                                                       fl.TensorType(np.float32, [4])]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.float32, [4]), S),
                              fl.FederatedType(fl.TensorType(np.float32, [4]), C))
    def comp(s, x):
        return fl.federated_sum(fl.federated_map(add, fl.federated_zip(
            (fl.federated_broadcast(s), x))))

    server = np.arange(4, dtype=np.float32)
    values = list(np.random.default_rng(4).standard_normal((50, 4)).astype(np.float32))
    batched, per_client, calls = _run_both(comp, [server, values], 50)
    assert calls == 1
    np.testing.assert_array_equal(batched, per_client)


def test_a_lambda_of_tensorflow_calls_selections_and_structs_is_batched_as_a_whole():
    double = tf_fn(lambda x: x * 2, np.int32)
    add = tf_fn(lambda a: a[0] + a[1], fl.StructType([np.int32, np.int32]))
    pair = fl.StructType([("a", np.int32), ("b", np.int32)])

    @fl.federated_computation(pair)
    def per_client(p):
        doubled = double(double(p.a))
        return add((doubled, p.b)), p.b

    @fl.federated_computation(fl.FederatedType(pair, C))
    def comp(x):
        return fl.federated_map(per_client, x)

    values = [{"a": i, "b": 10 * i} for i in range(5)]
    batched, per_client_result, calls = _run_both(comp, values, 5)
    assert calls == 3  # double, double, add: once each for all clients
    expected = [(4 * i + 10 * i, 10 * i) for i in range(5)]
    assert [(int(v[0]), int(v[1])) for v in batched] == expected
    assert [(int(v[0]), int(v[1])) for v in per_client_result] == expected


def test_a_lambda_calling_a_stateful_graph_falls_back_to_the_per_client_path():
    import tensorflow as tf  # noqa: PLC0415

    noisy = tf_fn(lambda x: x + tf.random.uniform([]) * 0.0, np.float32)  # stateful: per client

    @fl.federated_computation(fl.FederatedType(np.float32, C))
    def comp(x):
        return fl.federated_map(fl.federated_computation(lambda v: noisy(noisy(v)), np.float32), x)

    batched, per_client, calls = _run_both(comp, [1.0, 2.0, 3.0], 3)
    assert calls == 0
    assert [float(v) for v in batched] == [float(v) for v in per_client] == [1.0, 2.0, 3.0]


def test_a_graph_with_a_variable_runs_per_client_with_fresh_state():
    import tensorflow as tf  # noqa: PLC0415

    def stateful(x):
        v = tf.Variable(10)
        with tf.control_dependencies([v.assign_add(x)]):
            return v.read_value()

    fn = tf_fn(stateful, np.int32)

    @fl.federated_computation(fl.FederatedType(np.int32, C))
    def comp(x):
        return fl.federated_map(fn, x)

    batched, per_client, calls = _run_both(comp, [1, 2, 3], 3)
    assert calls == 0
    assert [int(v) for v in batched] == [int(v) for v in per_client] == [11, 12, 13]


def test_an_op_pfor_cannot_vectorise_falls_back_and_the_refusal_is_remembered():
    import tensorflow as tf  # noqa: PLC0415

    count_big = tf_fn(lambda v: tf.cast(tf.size(tf.where(v > 3)), tf.int32),
                      fl.TensorType(np.int32, [3]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.int32, [3]), C))
    def comp(x):
        return fl.federated_map(count_big, x)

    values = [np.array([i, i + 1, i + 2], np.int32) for i in range(6)]
    with runner_lib.Runner(BATCHED) as runner:
        first = runner.run(comp, values)
        functions = runner.factory.create_executor({C: 6}).child.client_work.functions
        # Both forms refused: the vectorised one when traced, the looped one (Where's outputs
        # differ in shape between clients) when it failed to stack them.
        assert functions.calls == 0 and len(functions._refused) == 2
        traces = functions.traces
        second = runner.run(comp, values)
        assert len(functions._refused) == 2 and functions.traces == traces  # not tried again
        assert functions.calls == 0
    assert [int(v) for v in first] == [int(v) for v in second] == [0, 0, 1, 2, 3, 3]


def test_chunks_of_a_threaded_batched_map_are_concatenated_in_client_order():
    values = list(np.random.default_rng(5).standard_normal((301, 16)).astype(np.float32))
    fn = tf_fn(lambda x: x * 3.0 - 1.0, fl.TensorType(np.float32, [16]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.float32, [16]), C))
    def comp(x):
        return fl.federated_map(fn, x)

    threaded = config_lib.StackConfig(kind="threaded", threads=3)
    result = runner_lib.run(comp, values, stack=threaded)
    np.testing.assert_array_equal(np.stack(result), np.stack(values) * np.float32(3.0) - 1.0)


def test_ragged_client_values_keep_the_per_client_form():
    fn = tf_fn(lambda x: x * 2.0, fl.TensorType(np.float32, [None]))

    @fl.federated_computation(fl.FederatedType(fl.TensorType(np.float32, [None]), C))
    def comp(x):
        return fl.federated_map(fn, x)

    values = [np.ones(2, np.float32), np.ones(3, np.float32)]
    batched, per_client, calls = _run_both(comp, values, 2)
    assert calls == 0
    assert [list(v) for v in batched] == [list(v) for v in per_client] == [[2, 2], [2, 2, 2]]


def test_an_error_in_a_batched_map_still_names_the_client():
    import tensorflow as tf  # noqa: PLC0415

    def check(x):
        with tf.control_dependencies([tf.debugging.assert_less(x, 5.0)]):
            return tf.identity(x)

    fn = tf_fn(check, np.float32)

    @fl.federated_computation(fl.FederatedType(np.float32, C))
    def comp(x):
        return fl.federated_map(fn, x)

    with pytest.raises(errors.ExecutionError, match="client 5 in federated_map"):
        runner_lib.run(comp, [float(i) for i in range(8)])


def test_random_eval_at_clients_is_independent_per_client_and_reproducible_with_a_seed():
    import tensorflow as tf  # noqa: PLC0415

    draw = tf_fn(lambda: tf.random.uniform([3]))

    @fl.federated_computation()
    def comp():
        return fl.federated_eval(draw, C)

    first = runner_lib.run(comp, clients=4, seed=7)
    again = runner_lib.run(comp, clients=4, seed=7)
    assert len({tuple(v) for v in first}) == 4
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_a_stateless_eval_at_clients_is_evaluated_once_and_shared(leaf_calls):
    import tensorflow as tf  # noqa: PLC0415

    const = tf_fn(lambda: tf.constant([1.0, 2.0]))

    @fl.federated_computation()
    def comp():
        return fl.federated_eval(const, C)

    result = runner_lib.run(comp, clients=5)
    assert [list(v) for v in result] == [[1.0, 2.0]] * 5
    assert not leaf_calls


def test_no_batch_flag_gives_the_same_result_on_the_command_line():
    args = ["run", str(REPO / "examples/mean_of_clients/comp.pb"),
            str(REPO / "examples/mean_of_clients/arg.json"), "--format", "json"]
    batched = CliRunner().invoke(cli_main.cli, args)
    per_client = CliRunner().invoke(cli_main.cli, [*args, "--no-batch"])
    assert batched.exit_code == per_client.exit_code == 0, per_client.output
    assert batched.stdout == per_client.stdout


def test_batch_of_mixed_struct_members_round_trips():
    t = fl.StructType([("a", fl.TensorType(np.float32, [2])), ("b", np.int32)])
    from federated_language.common_libs import structure  # noqa: PLC0415

    members = [structure.Struct([("a", np.array([i, i], np.float32)), ("b", np.array(i, np.int32))])
               for i in range(5)]
    batch = batch_lib.Batch.from_members(members, t)
    assert batch is not None and batch.leaves[0].shape == (5, 2) and batch.leaves[1].shape == (5,)
    back = batch.members()
    assert all(np.array_equal(x.a, y.a) and x.b == y.b for x, y in zip(back, members))
    assert batch_lib.Batch.from_members([members[0], {"a": 1}], t) is None
