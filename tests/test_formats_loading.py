"""Loading computations/values from files, stdin and bytes; refusing bad input; saving."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import federated_language as fl
import numpy as np
import pytest
from federated_language.proto import computation_pb2
from google.protobuf.internal import encoder

from tffexec.errors import ArgumentError, ComputationError
from tffexec.formats import atomic, loading, values
from tffexec.formats.protos import tf_graph_pb2

from tffexec_test_support import CORPUS  # noqa: E402  (the committed conformance cases)
T_XY = fl.StructType([("x", np.int32), ("y", np.int32)])


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return encoder._VarintBytes(number << 3 | 2) + encoder._VarintBytes(len(payload)) + payload


def _int32_fn_type() -> bytes:
    return fl.FunctionType(None, fl.TensorType(np.int32)).to_proto().SerializeToString()


def _small_computation() -> bytes:
    comp = computation_pb2.Computation(type=fl.TensorType(np.int32).to_proto(),
                                       reference=computation_pb2.Reference(name="x"))
    return comp.SerializeToString()


def _graph_def() -> bytes:
    graph = tf_graph_pb2.GraphDef(node=[tf_graph_pb2.NodeDef(name="c", op="Const"),
                                        tf_graph_pb2.NodeDef(name="i", op="Identity",
                                                             input=["c"])])
    return graph.SerializeToString()


def _too_deep() -> bytes:
    data = _small_computation()
    for _ in range(60):  # Computation.lambda(4).result(2): two levels per wrap
        data = _field(4, _field(2, data))
    return _field(1, _int32_fn_type()) + data


def _unknown_kind() -> bytes:
    node = _field(1, fl.TensorType(np.int32).to_proto().SerializeToString()) + _field(13, b"")
    return _field(1, _int32_fn_type()) + _field(4, _field(2, node))


def _write(tmp_path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _value_bytes() -> bytes:
    return values.value_to_proto({"x": 1, "y": 2}, T_XY).SerializeToString()


@pytest.mark.parametrize("data, message", [
    (lambda: b"", "empty file"),
    (lambda: _small_computation()[:-3], "truncated or corrupt"),
    (lambda: bytes(range(7, 250, 3)) * 3, "truncated or corrupt"),
    (_value_bytes, "holds an executor Value"),
    (_graph_def, "holds a TensorFlow GraphDef"),
    (_too_deep, "nested too deeply"),
    (_unknown_kind, "unknown computation node kind (field 13) at computation.lambda.result"),
])
def test_bad_computation_files_raise_computation_error(data, message, tmp_path):
    path = _write(tmp_path, "comp.pb", data())
    with pytest.raises(ComputationError) as info:
        loading.load_computation(path)
    assert info.value.exit_code == 3
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_computation_file_names_it(tmp_path):
    with pytest.raises(ComputationError, match="nope.pb: cannot read"):
        loading.load_computation(tmp_path / "nope.pb")


def test_data_and_xla_nodes_load():
    for kind in (computation_pb2.Computation(type=fl.TensorType(np.int32).to_proto(),
                                             data=computation_pb2.Data(uri="file:x")),
                 computation_pb2.Computation(type=fl.TensorType(np.int32).to_proto(),
                                             xla=computation_pb2.Xla())):
        assert loading.load_computation(kind.SerializeToString()) == kind


@pytest.mark.parametrize("data, hint, message", [
    (lambda: b"", T_XY, "empty file"),
    (lambda: _value_bytes()[:-2], T_XY, "truncated or corrupt"),
    (lambda: np.random.default_rng(7).bytes(64), T_XY, "not a serialized value"),
    (_small_computation, T_XY, "it holds a computation, not a value"),
    (_graph_def, None, "it holds a TensorFlow GraphDef"),
    (_value_bytes, fl.StructType([("x", np.int32), ("y", np.float32)]),
     "arg.y: expected float32, found int32"),
    (_value_bytes, fl.StructType([("x", np.int32), ("z", np.int32)]),
     "arg: expected <x=int32,z=int32>, found element 1 named 'y' instead of 'z'"),
    (_value_bytes, fl.FederatedType(np.int32, fl.CLIENTS), "arg: expected {int32}@CLIENTS, "
                                                          "found a struct of 2 elements"),
])
def test_bad_value_files_raise_argument_error(data, hint, message, tmp_path):
    path = _write(tmp_path, "arg.pb", data())
    with pytest.raises(ArgumentError) as info:
        loading.load_value(path, hint)
    assert info.value.exit_code == 4
    assert message in str(info.value) and str(path) in str(info.value)


def test_corpus_value_given_as_computation_and_back():
    with pytest.raises(ComputationError, match="holds an executor Value"):
        loading.load_computation(CORPUS / "fed_select" / "arg.pb")
    with pytest.raises(ArgumentError, match="holds a computation, not a value"):
        loading.load_value(CORPUS / "fed_select" / "comp.pb", None)


def test_format_by_flag_extension_or_content(tmp_path):
    v = values.normalize({"x": 1, "y": 2}, T_XY)
    for fmt in ("pb", "json", "npz"):
        payload = loading.encode_value(v, T_XY, fmt)
        assert loading.detect_format(payload) == fmt  # sniffed from content
        path = _write(tmp_path, f"arg.{fmt}", payload)
        assert values.values_equal(loading.load_value(path, T_XY), v, T_XY) == []
        odd = _write(tmp_path, "arg.data", payload)
        assert values.values_equal(loading.load_value(odd, T_XY, fmt=fmt), v, T_XY) == []
        assert values.values_equal(loading.load_value(payload, T_XY), v, T_XY) == []
    with pytest.raises(ArgumentError, match="unknown value format 'xml'"):
        loading.load_value(b"{}", T_XY, fmt="xml")


def test_load_typed_value_infers_type_from_pb_and_tagged_json():
    v, t = loading.load_typed_value(_value_bytes(), None)
    assert t == T_XY and int(v.y) == 2
    tagged = loading.encode_value(v, T_XY, "json")
    v2, t2 = loading.load_typed_value(tagged, None)
    assert t2 == T_XY and values.values_equal(v2, v, T_XY) == []
    with pytest.raises(ArgumentError, match="plain JSON needs the parameter type"):
        loading.load_typed_value(b'{"x": 1, "y": 2}', None)


def test_save_value_is_atomic_and_never_leaves_partial_files(tmp_path):
    dest = tmp_path / "out.json"
    loading.save_value({"x": 1, "y": 2}, T_XY, dest)
    before = dest.read_bytes()
    assert json.loads(before)["format"] == "tffexec-value/1"
    with pytest.raises(ArgumentError, match="out.json: value.y: expected int32"):
        loading.save_value({"x": 1, "y": "oops"}, T_XY, dest)
    assert dest.read_bytes() == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp files left
    with pytest.raises(ArgumentError, match="cannot tell the output format"):
        loading.save_value({"x": 1, "y": 2}, T_XY, tmp_path / "out.txt")
    with pytest.raises(ArgumentError, match="cannot write"):
        loading.save_value({"x": 1, "y": 2}, T_XY, tmp_path / "missing" / "out.pb")
    loading.save_value({"x": 1, "y": 2}, T_XY, tmp_path / "out.pb")
    assert (tmp_path / "out.pb").read_bytes() == _value_bytes()


def test_an_atomic_write_replaces_the_file_whole_and_a_failed_one_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    atomic.write(target, b"first")
    atomic.write(target, b"second")
    assert target.read_bytes() == b"second"
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    (tmp_path / "taken").mkdir()  # the rename onto a directory fails after the bytes are written
    with pytest.raises(ArgumentError, match=r"taken: cannot write"):
        atomic.write(tmp_path / "taken", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "taken"]
    assert atomic.temp_files() == []  # nothing left for a hard exit to clean up


def test_stdin_and_stdout_with_dash():
    script = (
        "import sys, federated_language as fl, numpy as np\n"
        "from tffexec.formats import loading\n"
        "t = fl.StructType([('x', np.int32), ('y', np.int32)])\n"
        "v = loading.load_value('-', t, fmt='json')\n"
        "loading.save_value(v, t, '-', fmt='pb')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], input=b'{"x": 1, "y": 2}',
                         capture_output=True, check=True, cwd="/")
    assert out.stdout == _value_bytes()
    bad = subprocess.run([sys.executable, "-c", script], input=b'{"x": 1}', capture_output=True,
                         cwd="/")
    assert bad.returncode != 0 and b"<stdin>: arg.y: missing" in bad.stderr
