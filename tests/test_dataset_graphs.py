"""Simple dataset graphs are read with numpy, bit for bit as TensorFlow's tf.data yields them.

Two sources of graphs: every client dataset in the committed cases made by TFF 0.87 (what users
send), and datasets built here with TensorFlow from generated data and stages (slices, tensors,
batch with and without remainder, take, skip, repeat, concatenate, prefetch), serialized as TFF
serializes them. Each is read both ways: `SequenceValue.elements()` (numpy where it can) and the
tf.data path (`TFFEXEC_STATIC_DATASETS=0`); values, dtypes and structure must be identical.
"""
from __future__ import annotations

import pathlib

import federated_language as fl
import numpy as np
import pytest
from federated_language.common_libs import structure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import runner as runner_lib
from tffexec.formats import dataset_graphs
from tffexec.formats import loading
from tffexec.formats import sequences

REPO = pathlib.Path(__file__).resolve().parents[1]
CASES = sorted(
    [p for p in (REPO / "examples" / "learning").glob("*_c10") if (p / "arg.pb").exists()]
    + [REPO / "examples" / "conformance" / name for name in
       ("learn_keras_fedavg_next", "seq_sequence_reduce_intrinsic", "seq_tf_reduce_then_sum")])


def _sequences(value, out: list) -> list:
    if isinstance(value, sequences.SequenceValue):
        out.append(value)
    elif isinstance(value, structure.Struct):
        for _, member in structure.to_elements(value):
            _sequences(member, out)
    elif isinstance(value, (list, tuple)):
        for member in value:
            _sequences(member, out)
    return out


def _both_ways(graph_def: bytes, element_type) -> tuple[list, list, bool]:
    """(numpy reader's elements or None, tf.data's elements, whether numpy read it)."""
    static = dataset_graphs.read_elements(graph_def, element_type, 10**6,
                                          policy_lib.DEFAULT.sequence_too_long)
    fresh = sequences.SequenceValue(element_type, graph_def=graph_def)
    fresh.mark_checked()
    reference = sequences._read_elements(fresh.to_dataset(), element_type,  # noqa: SLF001
                                         policy_lib.DEFAULT)
    return static, reference, static is not None


def _assert_identical(a, b, path="element"):
    if isinstance(b, structure.Struct):
        assert isinstance(a, structure.Struct), path
        ea, eb = structure.to_elements(a), structure.to_elements(b)
        assert [n for n, _ in ea] == [n for n, _ in eb], path
        for (name, x), (_, y) in zip(ea, eb):
            _assert_identical(x, y, f"{path}.{name}")
        return
    assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
    assert a.tobytes() == b.tobytes(), path


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_datasets_tff_wrote_are_read_by_numpy_exactly_as_tf_data_reads_them(case):
    comp = runner_lib.to_proto(str(case / "comp.pb"))
    parameter = fl.Type.from_proto(comp.type).parameter
    value, _ = loading.load_typed_value(str(case / "arg.pb"), parameter)
    found = _sequences(value, [])
    assert found, "the case holds client datasets"
    for seq in found:
        static, reference, read = _both_ways(seq._graph_def, seq.element_type)  # noqa: SLF001
        assert read, f"{case.name}: a from_tensor_slices/batch dataset went to TensorFlow"
        assert len(static) == len(reference)
        for a, b in zip(static, reference):
            _assert_identical(a, b)


def _tf():
    from tffexec import tf_runtime  # noqa: PLC0415

    return tf_runtime.tensorflow()


def _serialized(dataset) -> bytes:
    tf = _tf()
    return tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(dataset),
                                       strip_device_assignment=True).numpy()


_STAGES = st.lists(st.tuples(st.sampled_from(["batch", "take", "skip", "repeat", "concat",
                                              "prefetch"]),
                             st.integers(0, 5), st.booleans()), max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(0, 9), width=st.integers(1, 3), named=st.booleans(), stages=_STAGES,
       dtype=st.sampled_from([np.float32, np.int32, np.int64, np.float64, np.bool_]))
def test_generated_datasets_read_by_numpy_equal_tf_data(rows, width, named, stages, dtype):
    tf = _tf()
    rng = np.random.default_rng(rows * 7 + width)
    x = (rng.normal(size=(rows, width)) * 10).astype(dtype)
    y = np.arange(rows, dtype=np.int32)
    data = {"y": y, "x": x} if named else (x, y)
    dataset = tf.data.Dataset.from_tensor_slices(data)
    for stage, n, flag in stages:
        if stage == "batch":
            dataset = dataset.batch(max(1, n), drop_remainder=flag)
        elif stage == "take":
            dataset = dataset.take(n if flag else -1)
        elif stage == "skip":
            dataset = dataset.skip(n)
        elif stage == "repeat":
            dataset = dataset.repeat(n)
        elif stage == "concat":
            dataset = dataset.concatenate(dataset.take(n))
        else:
            dataset = dataset.prefetch(n)
    element_type = sequences._type_from_spec(dataset.element_spec)  # noqa: SLF001
    static, reference, read = _both_ways(_serialized(dataset), element_type)
    assert read
    assert len(static) == len(reference)
    for a, b in zip(static, reference):
        _assert_identical(a, b)


def test_a_mapped_or_shuffled_dataset_is_left_to_tensorflow():
    tf = _tf()
    base = tf.data.Dataset.from_tensor_slices(np.arange(6, dtype=np.int32))
    for dataset in (base.map(lambda v: v * 2), base.shuffle(6, seed=1), base.filter(
            lambda v: v > 2)):
        element_type = sequences._type_from_spec(dataset.element_spec)  # noqa: SLF001
        assert dataset_graphs.read_elements(_serialized(dataset), element_type, 100,
                                            policy_lib.DEFAULT.sequence_too_long) is None


def test_a_dataset_over_the_element_limit_is_refused_before_it_is_stacked():
    tf = _tf()
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((50, 2), np.float32)).repeat(10**9)
    element_type = sequences._type_from_spec(dataset.element_spec)  # noqa: SLF001
    policy = policy_lib.DEFAULT
    with pytest.raises(errors.PolicyError, match="elements"):
        dataset_graphs.read_elements(_serialized(dataset), element_type, 1000,
                                     policy.sequence_too_long)


def test_the_element_type_decides_and_a_mismatch_goes_to_tensorflow():
    tf = _tf()
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2), np.float32)).batch(2)
    wrong = fl.TensorType(np.int32, [None, 2])
    assert dataset_graphs.read_elements(_serialized(dataset), wrong, 100,
                                        policy_lib.DEFAULT.sequence_too_long) is None
