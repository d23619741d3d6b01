"""Hostile declarations meet each decoder: declared shapes, npz headers, checkpoint.json,
huge parameter types, JSON numbers, graph constants and sequences that never yield. Every one
ends in a documented error (exit 4 or 5), never an internal error (70) or an allocation past
the limit.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile

import federated_language as fl
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tffexec import errors
from tffexec.formats import limits, loading
from tffexec.formats.protos import executor_pb2, tf_graph_pb2
from tffexec_test_support import CONFORMANCE, clean_env, tffexec_script

SUM = CONFORMANCE / "fed_sum_int32"
#: A small value limit: anything a hostile declaration could make us allocate stays below it.
SMALL = 1 << 16
DOCUMENTED = (errors.ArgumentError, errors.PolicyError)
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

dims = st.lists(st.one_of(st.integers(0, 4), st.integers(0, 2**63 - 1)), max_size=4)
dtypes = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 17, 18, 19, 22, 23, 0, 99])


def _load(value: executor_pb2.Value) -> None:
    loading.load_value(value.SerializeToString(), None, fmt="pb", max_bytes=SMALL)


@FAST
@given(dtype=dtypes, shape=dims, items=st.lists(st.integers(-2**31, 2**31 - 1), max_size=6),
       content=st.binary(max_size=64))
def test_hostile_array_declarations_decode_or_are_refused(dtype, shape, items, content):
    value = executor_pb2.Value()
    value.array.dtype = dtype
    value.array.shape.dim.extend(shape)
    if content:
        value.array.content = content
    else:
        value.array.int32_list.value.extend(items)
    try:
        _load(value)
    except DOCUMENTED:
        pass


@FAST
@given(dtype=dtypes, shape=dims, ints=st.lists(st.integers(-2**31, 2**31 - 1), max_size=3),
       strings=st.lists(st.binary(max_size=8), max_size=2), unknown_rank=st.booleans())
def test_hostile_tensorproto_declarations_decode_or_are_refused(dtype, shape, ints, strings,
                                                                 unknown_rank):
    tensor = tf_graph_pb2.TensorProto(dtype=dtype)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_shape.unknown_rank = unknown_rank
    tensor.int_val.extend(ints)
    tensor.string_val.extend(strings)
    value = executor_pb2.Value()
    value.tensor.type_url = "type.googleapis.com/tensorflow.TensorProto"
    value.tensor.value = tensor.SerializeToString()
    try:
        _load(value)
    except DOCUMENTED:
        pass
    if limits.tensor_proto_bytes(tensor) > SMALL and not unknown_rank and \
            all(d >= 0 for d in shape):
        with pytest.raises(errors.PolicyError):
            _load(value)


def _npz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy_header(shape, descr: str) -> bytes:
    from numpy.lib import format as npy  # noqa: PLC0415

    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                        "shape": tuple(shape)})
    return buffer.getvalue()


@FAST
@given(shape=st.lists(st.integers(0, 2**40), max_size=3),
       descr=st.sampled_from(["<i4", "<f8", "|b1", "<U5", "|S3", "<c16"]),
       tail=st.binary(max_size=32), name=st.sampled_from(["value.npy", "value", "x.npy"]))
def test_hostile_npz_members_decode_or_are_refused(shape, descr, tail, name):
    data = _npz({name: _npy_header(shape, descr) + tail})
    try:
        loading.load_value(data, fl.FederatedType(np.int32, fl.CLIENTS), fmt="npz",
                           max_bytes=SMALL)
    except DOCUMENTED:
        pass


def test_npz_header_declaring_past_the_limit_is_a_policy_error():
    data = _npz({"value.npy": _npy_header((10**6, 10**6), "<f8")})
    with pytest.raises(errors.PolicyError, match="npz arrays as declared"):
        loading.load_value(data, fl.FederatedType(np.int32, fl.CLIENTS), fmt="npz")


json_scalars = st.none() | st.booleans() | st.floats() | st.text(max_size=6) | st.integers()
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=12), children, max_size=4),
                           max_leaves=10)
checkpoint_keys = ("format", "round", "state", "seed", "clients_per_round", "next_sha256",
                   "state_type")


@FAST
@given(data=st.data())
def test_hostile_checkpoint_json_reads_or_is_an_argument_error(tmp_path_factory, data):
    from tffexec import checkpoints  # noqa: PLC0415

    document = data.draw(st.one_of(
        json_values,
        st.fixed_dictionaries({key: json_values for key in checkpoint_keys}),
        st.fixed_dictionaries({"format": st.just(checkpoints.CHECKPOINT_FORMAT),
                               "round": st.integers() | st.floats(), "seed": st.integers(),
                               "state": st.text(max_size=30), "next_sha256": st.text(),
                               "state_type": st.text(), "clients_per_round": json_values})))
    directory = tmp_path_factory.mktemp("ckpt")
    (directory / "checkpoint.json").write_text(json.dumps(document, allow_nan=True))
    try:
        found = checkpoints.Checkpoints(directory, every=1).latest()
    except errors.ArgumentError:
        return
    assert found.state_path.parent == directory and isinstance(found.round, int)


@pytest.mark.parametrize("text,exit_code,expected", [
    pytest.param("[" + "9" * 5000 + ", 1]", 4, "JSON number too long", id="5000-digit"),
    pytest.param("[" + "9" * 4000 + ", 1]", 4, "(4,000 digits) (out of range for int32)",
                 id="4000-digit"),
    pytest.param("[1e999, 1]", 4, "NaN or infinity", id="overflowing-float"),
])
def test_json_numbers_no_machine_type_holds_are_argument_errors(runner, tmp_path, text,
                                                                exit_code, expected):
    from tffexec.cli.main import cli  # noqa: PLC0415

    path = tmp_path / "arg.json"
    path.write_text(text)
    result = runner.invoke(cli, ["run", str(SUM / "comp.pb"), str(path)])
    assert result.exit_code == exit_code, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1
    assert len(result.output) < 400


def _huge_parameter_computation(path) -> None:
    """An identity lambda whose parameter is int32[100000, 100000] (40 GB as zeros)."""
    from federated_language.proto import computation_pb2 as pb  # noqa: PLC0415

    tensor = pb.Type()
    tensor.tensor.dtype = 3
    tensor.tensor.dims.extend([100_000, 100_000])
    comp = pb.Computation()
    comp.type.function.parameter.CopyFrom(tensor)
    comp.type.function.result.CopyFrom(tensor)
    body = getattr(comp, "lambda")
    body.parameter_name = "x"
    body.result.type.CopyFrom(tensor)
    body.result.reference.name = "x"
    path.write_bytes(comp.SerializeToString())


@pytest.mark.parametrize("extra", [[], ["--clients", "1000000000"]], ids=["type", "clients"])
def test_template_for_a_huge_argument_is_refused_before_building_it(runner, tmp_path, extra):
    from tffexec.cli.main import cli  # noqa: PLC0415

    comp = tmp_path / "huge.pb"
    if extra:
        comp = SUM / "comp.pb"
    else:
        _huge_parameter_computation(comp)
    result = runner.invoke(cli, ["template", str(comp), "-o", str(tmp_path / "arg.json"),
                                 *extra])
    assert result.exit_code == 5, result.output
    assert "skeleton argument is" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "arg.json").exists()


def _graph_with_const(shape: list[int], values: int = 1) -> tf_graph_pb2.GraphDef:
    graph = tf_graph_pb2.GraphDef()
    node = graph.node.add(name="big", op="Const")
    tensor = node.attr["value"].tensor
    tensor.dtype = 1
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend([0.5] * values)
    function = graph.library.function.add()
    function.signature.name = "f"
    inner = function.node_def.add(name="small", op="Const")
    inner.attr["value"].tensor.dtype = 3
    inner.attr["value"].tensor.int_val.append(1)
    return graph


def test_graph_constant_estimate_is_the_declared_expansion_not_the_listed_values():
    graph = _graph_with_const([10**5, 10**5])
    assert graph.ByteSize() < 100
    assert sorted(limits.graph_const_bytes(graph)) == [("big", None, 4 * 10**10),
                                                       ("small", "f", 4)]
    assert limits.largest_const(graph) == ("big", None, 4 * 10**10)
    assert limits.largest_const(tf_graph_pb2.GraphDef()) is None


def test_element_count_is_exact_past_2_64():
    shape = [2**32, 2**32, 3]
    assert limits.element_count(shape) == 3 * 2**64
    assert int(np.prod(shape, dtype=np.int64)) != limits.element_count(shape)  # what it fixes


def _never_yielding_sequence(path) -> None:
    """A sequence value whose dataset filters out every element of a practically endless
    range: reading it never produces an element."""
    import tensorflow as tf  # noqa: PLC0415

    from tffexec.formats.sequences import SequenceValue  # noqa: PLC0415
    from tffexec.formats.values import value_to_proto  # noqa: PLC0415

    dataset = tf.data.Dataset.range(2**62).filter(lambda x: x < 0)
    element = fl.TensorType(np.int64)
    value = value_to_proto(SequenceValue.from_dataset(dataset, element), fl.SequenceType(element))
    path.write_bytes(value.SerializeToString())


def test_sequence_that_never_yields_is_stopped_by_convert_timeout(tmp_path):
    source = tmp_path / "never.pb"
    _never_yielding_sequence(source)
    proc = subprocess.run([tffexec_script(), "convert", str(source), "out.json", "--timeout",
                           "3"], cwd=tmp_path, capture_output=True, env=clean_env(), timeout=120)
    assert proc.returncode == 124, proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["never.pb"]


member_dtypes = st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.uint32, np.uint64,
                                 np.float16, np.float32, np.float64, np.bool_])


@FAST
@given(dtype=member_dtypes, data=st.data())
def test_many_scalar_clients_decode_as_one_decode_per_client_would(dtype, data):
    """The one-pass decoding of `{T}@CLIENTS` scalars gives exactly what decoding each member
    on its own gives (values, dtypes, 0-d arrays, type)."""
    from tffexec.formats import values  # noqa: PLC0415

    count = data.draw(st.integers(2, 40))
    raw = data.draw(st.lists(st.integers(0, 100), min_size=count, max_size=count))
    members = [np.asarray(x, dtype) for x in raw]
    federated = fl.FederatedType(fl.TensorType(dtype), fl.CLIENTS)
    pb = values.value_to_proto(members, federated)
    decoded, found_type = values.value_from_proto(pb, federated)
    one_by_one = [values.value_from_proto(m, federated.member)[0] for m in pb.federated.value]
    loaded = loading.load_value(pb.SerializeToString(), federated, fmt="pb")
    assert found_type == federated
    assert len(decoded) == len(loaded) == count
    for got, want, read in zip(decoded, one_by_one, loaded):
        assert read.dtype == want.dtype and read == want
        assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == want.dtype
        assert got == want


def test_clients_of_mixed_forms_fall_back_to_decoding_each_member():
    from tffexec.formats import values  # noqa: PLC0415

    federated = fl.FederatedType(fl.TensorType(np.int32), fl.CLIENTS)
    pb = values.value_to_proto([np.int32(1), np.int32(2), np.int32(3)], federated)
    pb.federated.value[1].array.int32_list.value.append(9)  # two values for a scalar
    with pytest.raises(errors.ArgumentError, match=r"arg\[1\]: Array: 2 values for shape \[\]"):
        values.value_from_proto(pb, federated, "arg")
    pb.federated.value[1].array.int32_list.value[:] = [2]
    pb.federated.value[2].array.dtype = 9  # an int64 member among int32 ones
    pb.federated.value[2].array.int64_list.value[:] = [3]
    with pytest.raises(errors.ArgumentError, match=r"arg\[2\]"):
        values.value_from_proto(pb, federated, "arg")
