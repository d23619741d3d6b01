"""A round called again runs as one compiled TensorFlow function (executors/tf_round.py).

The compiled round must give the stack's answer: the same clients' training (vectorised), the
aggregations adding clients in client order (bit for bit the stack's sums), the same result
forms. What it does not lower, and arguments of other structures, stay on the stack.
"""
from __future__ import annotations

import pathlib

import federated_language as fl
import numpy as np
import pytest

from tffexec import runner as runner_lib
from tffexec.executors import activity
from tffexec.factories import config as config_lib
from tffexec.formats import compare, loading

LEARNING = pathlib.Path(__file__).resolve().parents[1] / "examples" / "learning"
RTOL, ATOL = 1e-5, 1e-6  # issue 16: vectorised results equal the per-client path within these


def _case(name: str):
    comp = loading.load_computation(LEARNING / name / "comp.pb")
    function_type = fl.Type.from_proto(comp.type)
    arg = loading.load_value((LEARNING / name / "arg.pb").read_bytes(), function_type.parameter)
    expected = loading.load_value(LEARNING / name / "expected.pb", function_type.result)
    return comp, function_type, arg, expected


def _rounds(runner: runner_lib.Runner, prepared):
    return runner.factory.compiled_rounds(prepared.clients, runner.stack(prepared))


def test_a_training_round_called_again_runs_compiled_and_equals_the_stack():
    comp, function_type, arg, expected = _case("fedavg_mlp_c10")
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, arg)
        on_stack = runner.call(prepared)
        rounds = _rounds(runner, prepared)
        assert (rounds.compiled, rounds.calls) == (0, 0)  # a first call is never compiled
        before = activity.path_counts()
        compiled = runner.call(prepared)
        assert (rounds.compiled, rounds.calls) == (1, 1)
        assert activity.paths_since(before)[activity.VECTORISED] == 10
        again = runner.call(prepared)
        assert (rounds.compiled, rounds.calls) == (1, 2)  # traced once
    assert not compare.values_equal(compiled, on_stack, function_type.result, RTOL, ATOL)
    assert not compare.values_equal(compiled, again, function_type.result)
    assert not compare.values_equal(compiled, expected, function_type.result, 1e-5, 1e-6)


def test_an_evaluation_round_compiles_to_tffs_answer(monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")
    comp, function_type, arg, expected = _case("eval_mlp_c10")
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, arg)
        result = runner.call(prepared)
        assert _rounds(runner, prepared).calls == 1
    assert not compare.values_equal(result, expected, function_type.result, 1e-5, 1e-6)


def test_new_client_datasets_are_read_again_not_taken_from_the_last_call():
    comp, function_type, arg, _ = _case("fedavg_mlp_c10")
    state, datasets = arg
    same_data = [datasets[0]] * len(datasets)  # every client holds client 0's dataset
    with runner_lib.Runner() as runner:
        first = runner.prepare(comp, arg)
        runner.call(first)
        runner.call(first)  # compiled, its clients' arrays remembered
        other = runner.prepare(comp, [state, same_data])
        compiled = runner.call(other)
        assert _rounds(runner, other).calls == 2
    with runner_lib.Runner(config_lib.StackConfig(batch=False)) as reference:
        on_stack = reference.run(comp, [state, same_data])
        original = reference.run(comp, arg)
    assert not compare.values_equal(compiled, on_stack, function_type.result, RTOL, ATOL)
    assert compare.values_equal(compiled, original, function_type.result, RTOL, ATOL)


def _aggregations():
    clients = fl.FederatedType(np.float32, fl.CLIENTS)

    @fl.federated_computation(clients, clients)
    def aggregations(values, weights):
        return (fl.federated_sum(values), fl.federated_mean(values),
                fl.federated_mean(values, weights))

    return aggregations


def test_sums_and_means_add_clients_in_client_order_bit_for_bit(monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")
    rng = np.random.default_rng(7)
    count = 1000
    magnitudes = 10.0 ** rng.integers(-4, 5, count)
    values = [np.float32(v) for v in rng.standard_normal(count) * magnitudes]
    weights = [np.float32(w) for w in rng.uniform(0.1, 10.0, count)]
    comp = _aggregations()
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, [values, weights])
        compiled = runner.call(prepared)
        assert _rounds(runner, prepared).calls == 1
    with runner_lib.Runner(config_lib.StackConfig(batch=False)) as reference:
        on_stack = reference.run(comp, [values, weights])
    for got, want in zip(compiled, on_stack):
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()
    folded = np.float32(0)
    for v in values:
        folded = np.float32(folded + v)
    assert np.asarray(compiled[0]).tobytes() == folded.tobytes()


def test_intrinsics_it_does_not_lower_leave_the_round_on_the_stack(monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")

    @fl.federated_computation(fl.FederatedType(np.int32, fl.CLIENTS))
    def largest(values):
        return fl.federated_max(values)

    with runner_lib.Runner() as runner:
        prepared = runner.prepare(largest, [3, 9, 4])
        assert runner.call(prepared) == 9
        rounds = _rounds(runner, prepared)
        assert (rounds.compiled, rounds.calls) == (0, 0)


def test_the_switch_keeps_every_round_on_the_stack(monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILED_ROUNDS", "0")
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")
    comp = _aggregations()
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, [[1.0, 2.0], [1.0, 3.0]])
        result = runner.call(prepared)
        assert _rounds(runner, prepared) is None
    assert float(result[0]) == 3.0 and float(result[2]) == pytest.approx(7.0 / 4.0)


def test_composed_and_unbatched_stacks_never_compile(monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")
    comp = _aggregations()
    for config in (config_lib.StackConfig(batch=False), config_lib.StackConfig(max_fanout=2)):
        with runner_lib.Runner(config) as runner:
            prepared = runner.prepare(comp, [[1.0, 2.0, 4.0], [1.0, 1.0, 2.0]])
            assert float(runner.call(prepared)[0]) == 7.0
            assert _rounds(runner, prepared) is None


SEQUENCE = fl.SequenceType(fl.TensorType(np.float32, [None]))


def _weighted_dataset_sums():
    """<w@SERVER, {float32[?]*}@CLIENTS> -> the sum over clients of w * (sum of the client's
    elements): a client graph that reduces its dataset, as a training round does."""
    import tensorflow as tf  # noqa: PLC0415

    from tffexec import tensorflow as tfc  # noqa: PLC0415

    def client(argument):
        weight, dataset = argument[0], argument[1]
        return dataset.reduce(tf.zeros([], tf.float32),
                              lambda total, x: total + tf.reduce_sum(x * weight))

    client_comp = tfc.as_computation(tfc.tensorflow_computation(
        client, fl.StructType([("w", np.float32), ("ds", SEQUENCE)])))

    @fl.federated_computation(fl.FederatedType(np.float32, fl.SERVER),
                              fl.FederatedType(SEQUENCE, fl.CLIENTS))
    def round_(weight, datasets):
        return fl.federated_sum(fl.federated_map(
            client_comp, fl.federated_zip((fl.federated_broadcast(weight), datasets))))

    return round_


def _datasets(lengths: list[int], seed: int = 1) -> list:
    from tffexec.formats import sequences  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    return [sequences.SequenceValue(SEQUENCE.element, elements=[
        rng.standard_normal(2 + i % 2).astype(np.float32) for _ in range(n)])
        for i, n in enumerate(lengths)]


def test_clients_of_several_dataset_structures_train_in_buckets_stitched_in_client_order(
        monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")
    comp = _weighted_dataset_sums()
    data = _datasets([1 + i % 3 for i in range(12)])  # 6 structures, 3 traced functions
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, [np.float32(0.5), data])
        compiled = runner.call(prepared)
        assert _rounds(runner, prepared).calls == 1
    with runner_lib.Runner(config_lib.StackConfig(batch=False)) as reference:
        on_stack = reference.run(comp, [np.float32(0.5), data])
    assert np.asarray(compiled).tobytes() == np.asarray(on_stack).tobytes()


@pytest.mark.parametrize("trace_seconds,compiled_from", [(1e9, None), (0.0, 1)])
def test_a_bucketed_round_compiles_once_its_rounds_on_the_stack_repay_its_traces(
        trace_seconds, compiled_from, monkeypatch):
    from tffexec.executors import tf_round  # noqa: PLC0415

    monkeypatch.setattr(tf_round, "TRACE_SECONDS", trace_seconds)
    comp = _weighted_dataset_sums()
    data = _datasets([1 + i % 3 for i in range(12)])  # 3 bucket functions to trace
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, [np.float32(0.5), data])
        calls = []
        for _ in range(5):
            runner.call(prepared)
            calls.append(_rounds(runner, prepared).calls)
    first = next((i for i, c in enumerate(calls) if c), None)
    assert first == compiled_from  # never, or on the second call (the first is never compiled)


def test_clients_of_too_many_dataset_structures_stop_being_tried(monkeypatch, caplog):
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")
    comp = _weighted_dataset_sums()
    data = _datasets(list(range(1, 10)))  # 9 numbers of elements: over MAX_BUCKETS (8)
    with runner_lib.Runner() as runner, caplog.at_level("INFO", logger="tffexec"):
        prepared = runner.prepare(comp, [np.float32(2.0), data])
        results = [runner.call(prepared) for _ in range(3)]
        assert _rounds(runner, prepared).calls == 0
    refusals = [r for r in caplog.records if "stays on the stack" in r.getMessage()]
    assert len(refusals) == 1 and "dataset structures" in refusals[0].getMessage()
    expected = sum(2.0 * float(np.sum(e)) for s in data for e in s.elements())
    for result in results:
        assert float(result) == pytest.approx(expected, rel=1e-5)


def test_a_second_argument_structure_compiles_only_when_it_comes_back(monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILE_AFTER", "0")
    comp = _weighted_dataset_sums()
    first, other = _datasets([2] * 6), _datasets([3] * 6, seed=2)
    with runner_lib.Runner() as runner:
        counts = []
        for data in (first, other, other, first):
            prepared = runner.prepare(comp, [np.float32(1.0), data])
            runner.call(prepared)
            rounds = _rounds(runner, prepared)
            counts.append((rounds.compiled, rounds.calls))
    assert counts == [(1, 1), (1, 1), (2, 2), (2, 3)]
