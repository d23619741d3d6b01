"""Hand-written JSON and npz inputs for the conformance cases' arguments, and the encoding rules
of both."""
from __future__ import annotations

import base64
import io
import json
import math
import os
import pathlib

import federated_language as fl
import numpy as np
import pytest

from tffexec import policy as policy_lib
from tffexec.checks import op_check
from tffexec.errors import ArgumentError
from tffexec.formats import jsonfmt, loading, npzfmt, values
from tffexec.formats import types as tt

from tffexec_test_support import CORPUS  # noqa: E402  (the committed conformance cases)


def _corpus_arg(case: str):
    sig = tt.type_from_proto(loading.load_computation(CORPUS / case / "comp.pb").type)
    return sig.parameter, loading.load_value(CORPUS / case / "arg.pb", sig.parameter)


PLAIN_JSON = {
    "tf_add_int32": '{"x": 1234, "y": -34}',
    "tf_dtypes_i64_f64_bool": '{"x": [1099511627776, -7, 34359738369], "y": 2.5, "z": true}',
    "tf_matmul_float32": '{"a": [[1.5, -2, 0.25], [3, 0.5, -1]], "b": [[2, 1], [0.5, -4], '
                         '[8, 0.75]]}',
    "tf_string_concat": '{"a": "gr\\u00fc\\u00dfe, ", "b": {"base64": "ZmVkZXJhdGVk"}}',
    "tf_struct_in_out": '[4, [0.5, -1.25, 3]]',
    "fed_sum_int32": '[18, 18, 3, 38, 8]',
    "fed_named_struct": '{"a": [-1, 24, 49, 49, 29], "b": -1.75}',
    "fed_select": '{"keys": [[0, 2], [3, 1], [3, 2], [1, 2], [2, 1]], '
                  '"table": [[0.6, -0.59, 1.59], [-0.44, -0.61, 1.71], [1.32, -0.33, -1.99], '
                  '[-1.66, 0.48, 0.5]]}',
    "fed_sum_float32": '[[8.774, 0.154], [6.04, -3.562], [2.037, 3.275], [-5.728, -0.721], '
                       '[2.09, 7.537]]',
    "seq_sequence_reduce_intrinsic": '[[3, 1, 4, 1, 5], [9, 2, 6], [5, 3, 5, 8, 9, 7], [9], '
                                     '[3, 2, 3, 8]]',
}


@pytest.mark.parametrize("case", sorted(PLAIN_JSON))
def test_hand_written_plain_json_equals_corpus_arg(case, tmp_path):
    t, expected = _corpus_arg(case)
    path = tmp_path / "arg.json"
    path.write_text(PLAIN_JSON[case])
    got = loading.load_value(path, t)
    for value in (got, expected):  # loaders check no ops; comparing reads dataset graphs
        op_check.check_value(value, t, policy_lib.DEFAULT, path="arg")
    assert values.values_equal(got, expected, t) == []  # sequences: compared by elements (TF)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


HAND_NPZ = {
    "tf_dtypes_i64_f64_bool": lambda: _npz(x=np.array([1099511627776, -7, 34359738369]),
                                           y=np.array(2.5), z=np.array(True)),
    "tf_string_concat": lambda: _npz(a=np.array("grüße, "), b=np.array("federated")),
    "fed_select": lambda: _npz(keys=np.array([[0, 2], [3, 1], [3, 2], [1, 2], [2, 1]], np.int32),
                               table=np.array([[0.6, -0.59, 1.59], [-0.44, -0.61, 1.71],
                                               [1.32, -0.33, -1.99], [-1.66, 0.48, 0.5]],
                                              np.float32)),
    "fed_broadcast_map_sum": lambda: _npz(s=np.array(3, np.int32),
                                          c=np.array([11, -9, 17, 21, -4], np.int32)),
    "fed_sum_float32": lambda: _npz(**{f"value/#{i}": np.array(v, np.float32) for i, v in
                                       enumerate([[8.774, 0.154], [6.04, -3.562], [2.037, 3.275],
                                                  [-5.728, -0.721], [2.09, 7.537]])}),
}


@pytest.mark.parametrize("case", sorted(HAND_NPZ))
def test_hand_written_npz_equals_corpus_arg(case):
    t, expected = _corpus_arg(case)
    got = loading.load_value(HAND_NPZ[case](), t, name=f"{case}.npz")  # sniffed as zip
    assert values.values_equal(got, expected, t) == []


def test_npz_layout_keys_stacking_and_per_client_fallback():
    t = fl.StructType([
        ("model", fl.StructType([(None, fl.TensorType(np.float32, [2])), (None, np.str_)])),
        ("data", fl.FederatedType(fl.StructType([("x", fl.TensorType(np.float32, [None]))]),
                                  fl.CLIENTS)),
    ])
    v = values.normalize({"model": [[1, 2], "é"], "data": [{"x": [1]}, {"x": [1, 2]}]}, t)
    buffer = io.BytesIO()
    npzfmt.value_to_npz(v, t, buffer)
    archive = np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False)
    assert sorted(archive.files) == ["data/x/#0", "data/x/#1", "model/0", "model/1"]
    assert archive["model/1"].dtype.kind == "U"
    same = values.normalize({"model": [[1, 2], "é"], "data": [{"x": [1, 2]}, {"x": [3, 4]}]}, t)
    buffer = io.BytesIO()
    npzfmt.value_to_npz(same, t, buffer)
    archive = np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False)
    assert archive["data/x"].shape == (2, 2)  # stacked on a leading client axis
    buffer.seek(0)
    assert values.values_equal(npzfmt.value_from_npz(buffer, t), same, t) == []


@pytest.mark.parametrize("data, message", [
    (lambda: _npz(x=np.zeros(2, np.float32)), "arg.y: missing key 'y' in npz (expected float32)"),
    (lambda: _npz(x=np.zeros(2, np.float32), y=np.array(1.0), z=np.array(2)),
     "unexpected key 'z' in npz"),
    (lambda: _npz(x=np.zeros(3, np.float32), y=np.array(1.0)),
     "arg.x: expected float32[2], found an array float32[3]"),
    (lambda: _npz(x=np.array([None, 1], dtype=object), y=np.array(1.0)),
     "Object arrays cannot be loaded"),
    (lambda: b"PK\x03\x04garbage", "not a readable npz archive"),
])
def test_npz_errors_name_file_key_and_path(data, message, tmp_path):
    t = fl.StructType([("x", fl.TensorType(np.float32, [2])), ("y", np.float32)])
    path = tmp_path / "bad.npz"
    path.write_bytes(data())
    with pytest.raises(ArgumentError) as info:
        loading.load_value(path, t)
    assert message in str(info.value) and str(path) in str(info.value)


def test_npz_client_counts_and_sequences():
    t = fl.StructType([("a", fl.FederatedType(np.int32, fl.CLIENTS)),
                       ("b", fl.FederatedType(np.int32, fl.CLIENTS))])
    with pytest.raises(ArgumentError, match="inconsistent client counts: arg.a has 2 clients, "
                                            "arg.b has 3"):
        loading.load_value(_npz(a=np.zeros(2, np.int32), b=np.zeros(3, np.int32)), t, fmt="npz")
    seq = fl.FederatedType(fl.SequenceType(np.int32), fl.CLIENTS)
    with pytest.raises(ArgumentError, match="sequences are not supported in npz"):
        loading.load_value(_npz(value=np.zeros(2, np.int32)), seq, fmt="npz")


def test_json_encoding_rules():
    t = fl.StructType([
        ("f", fl.TensorType(np.float32, [3])), ("big", np.uint64), ("neg", np.int64),
        ("s", fl.TensorType(np.str_, [2])), ("c", np.complex64), ("h", np.float16),
    ])
    v = values.normalize({"f": [math.nan, math.inf, -math.inf], "big": 2**64 - 1,
                          "neg": -2**63, "s": ["hé", b"\xff\x00"], "c": 1 + 2j, "h": 0.1}, t)
    doc = jsonfmt.value_to_json(v, t)
    text = json.dumps(doc, allow_nan=False)  # strict JSON: no NaN literals
    assert doc["type"] == "<f=float32[3],big=uint64,neg=int64,s=str[2],c=complex64,h=float16>"
    leaves = [e["value"]["value"] for e in doc["value"]["struct"]]
    assert leaves[0] == ["nan", "inf", "-inf"]
    assert leaves[1] == 18446744073709551615 and leaves[2] == -9223372036854775808
    assert leaves[3] == ["hé", {"base64": base64.b64encode(b"\xff\x00").decode()}]
    assert leaves[4] == [1.0, 2.0]
    back = jsonfmt.value_from_json(json.loads(text), t)
    assert values.values_equal(back, v, t) == []
    plain = json.loads('{"f": ["nan", "inf", 1.5], "big": 18446744073709551615, "neg": -1, '
                       '"s": ["a", {"base64": "/wA="}], "c": [0, -1], "h": 2}')
    got = jsonfmt.value_from_json(plain, t)
    assert got.big.dtype == np.uint64 and int(got.big) == 2**64 - 1
    assert got.s.tolist() == [b"a", b"\xff\x00"] and complex(got.c) == -1j


def test_json_tagged_and_plain_may_mix_and_envelope_type_is_informative():
    t = fl.StructType([("a", fl.FederatedType(np.int32, fl.CLIENTS)), ("b", np.float32)])
    doc = {"format": "tffexec-value/1", "type": "whatever",
           "value": {"a": {"federated": {"placement": "clients", "all_equal": False,
                                         "values": [1, {"dtype": "int32", "shape": [],
                                                        "value": 2}]}},
                     "b": 0.5}}
    v = jsonfmt.value_from_json(doc, t)
    assert [int(x) for x in v.a] == [1, 2] and float(v.b) == 0.5


@pytest.mark.parametrize("text, message", [
    ('{"a": [[1, 2]], "b": 1.0}', "arg.a[0]: expected int32, found a list of 2 items (shape [2])"),
    ('{"a": [1, 2], "b": [1.0]}', "arg.b: expected float32, found a list of 1 item (shape [1])"),
    ('{"a": 3, "b": 1.0}', "arg.a: expected {int32}@CLIENTS, found a int 3"),
    ('{"a": [1], "c": 1.0}', "arg.c: unexpected element 'c'"),
    ('{"a": {"federated": {"placement": "server", "all_equal": true, "values": [1]}}, "b": 1}',
     "arg.a: expected {int32}@CLIENTS, found a value placed at server"),
    ('{"a": [1], "b": {"dtype": "int32", "shape": [], "value": 1}}',
     "arg.b: expected float32, found a int32 tensor"),
    ('{"format": "tffexec-value/9", "value": 1}', "unknown JSON value format"),
    ('{"a": [1], "b": 1.0', "invalid JSON at line 1 column 20"),
])
def test_json_errors_name_file_and_path(text, message, tmp_path):
    t = fl.StructType([("a", fl.FederatedType(np.int32, fl.CLIENTS)), ("b", np.float32)])
    path = tmp_path / "arg.json"
    path.write_text(text)
    with pytest.raises(ArgumentError) as info:
        loading.load_value(path, t)
    assert message in str(info.value) and str(path) in str(info.value)
    assert info.value.exit_code == 4
