"""Value conversion: random nested values through pb, JSON and npz; normalize's checks."""
from __future__ import annotations

import io
import json
import math
import re
from collections import OrderedDict, namedtuple

import federated_language as fl
import ml_dtypes
import numpy as np
import pytest
from federated_language.common_libs import structure
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tffexec.errors import ArgumentError
from tffexec.formats import jsonfmt, npzfmt, values
from tffexec.formats.protos import executor_pb2

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
          np.uint64, np.float16, ml_dtypes.bfloat16, np.float32, np.float64, np.complex64,
          np.complex128, np.str_]
NAMES = ["a", "b", "w", "x", "model", "data"]


# ---------------------------------------------------------------------------------- strategies

@st.composite
def tensor_types(draw):
    shape = draw(st.lists(st.integers(0, 3), max_size=2))
    return fl.TensorType(draw(st.sampled_from(DTYPES)), shape)


def struct_of(children):
    @st.composite
    def build(draw):
        elems = draw(st.lists(children, min_size=1, max_size=3))
        names = draw(st.lists(st.one_of(st.none(), st.sampled_from(NAMES)), min_size=len(elems),
                              max_size=len(elems), unique_by=lambda n: n or object()))
        return fl.StructType(list(zip(names, elems)))
    return build()


MEMBER_TYPES = st.recursive(tensor_types(), struct_of, max_leaves=5)


@st.composite
def federated_types(draw):
    member = draw(MEMBER_TYPES)
    kind = draw(st.sampled_from(["clients", "server", "clients_all_equal"]))
    if kind == "server":
        return fl.FederatedType(member, fl.SERVER)
    return fl.FederatedType(member, fl.CLIENTS, all_equal=(kind == "clients_all_equal"))


VALUE_TYPES = st.one_of(MEMBER_TYPES, federated_types(),
                        struct_of(st.one_of(MEMBER_TYPES, federated_types())))


def tensor_value(draw, t: fl.TensorType, no_nul: bool) -> np.ndarray:
    if t.dtype.kind == "U":
        leaf = st.binary(max_size=5)
        if no_nul:
            leaf = leaf.filter(lambda b: not b.endswith(b"\x00"))
        flat = draw(st.lists(leaf, min_size=math.prod(t.shape), max_size=math.prod(t.shape)))
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return arr.reshape(t.shape)
    if t.dtype == np.dtype(ml_dtypes.bfloat16):
        return draw(hnp.arrays(np.uint16, t.shape)).view(ml_dtypes.bfloat16)
    return draw(hnp.arrays(t.dtype, t.shape))


def value_of(draw, t: fl.Type, clients: int, no_nul: bool = False):
    if isinstance(t, fl.TensorType):
        return tensor_value(draw, t, no_nul)
    if isinstance(t, fl.StructType):
        return structure.Struct([(n, value_of(draw, et, clients, no_nul)) for n, et in t.items()])
    if t.all_equal:
        return value_of(draw, t.member, clients, no_nul)
    return [value_of(draw, t.member, clients, no_nul) for _ in range(clients)]


@st.composite
def typed_values(draw, no_nul: bool = False):
    t = draw(VALUE_TYPES)
    return t, value_of(draw, t, draw(st.integers(0, 3)), no_nul)


# ---------------------------------------------------------------------------------- round trips

@settings(max_examples=150, deadline=None)
@given(typed_values())
def test_random_values_roundtrip_through_pb(tv):
    t, v = tv
    pb = values.value_to_proto(v, t)
    parsed = executor_pb2.Value.FromString(pb.SerializeToString())
    back, inferred = values.value_from_proto(parsed)
    assert inferred == t
    assert values.values_equal(back, v, t) == []
    hinted, hint_type = values.value_from_proto(parsed, t)
    assert hint_type == t and values.values_equal(hinted, v, t) == []
    # The legacy (TFF <= 0.82) tensor form reads back to the same value.
    legacy = values.value_to_proto(v, t, legacy_tensors=True)
    assert values.values_equal(values.value_from_proto(legacy, t)[0], v, t) == []


@settings(max_examples=150, deadline=None)
@given(typed_values())
def test_random_values_roundtrip_through_json(tv):
    t, v = tv
    text = json.dumps(jsonfmt.value_to_json(v, t), allow_nan=False)
    doc = json.loads(text)
    assert values.values_equal(jsonfmt.value_from_json(doc, t), v, t) == []
    assert values.values_equal(jsonfmt.value_from_json(doc["value"], t), v, t) == []


@settings(max_examples=150, deadline=None)
@given(typed_values(no_nul=True))
def test_random_values_roundtrip_through_npz(tv):
    t, v = tv
    buffer = io.BytesIO()
    npzfmt.value_to_npz(v, t, buffer)
    buffer.seek(0)
    assert values.values_equal(npzfmt.value_from_npz(buffer, t), v, t) == []


# ---------------------------------------------------------------------------------- normalize

MODEL = fl.StructType([
    ("model", fl.StructType([(None, fl.TensorType(np.float32, [2])),
                             (None, fl.StructType([("w", fl.TensorType(np.int32, [2, 2]))]))])),
    ("data", fl.FederatedType(fl.TensorType(np.int64), fl.CLIENTS)),
])


def test_normalize_loose_python_input():
    v = values.normalize({"model": [[1, 2.5], {"w": [[1, 2], [3, 4]]}], "data": [1, 2, 3]}, MODEL)
    assert isinstance(v, structure.Struct)
    assert v.model[0].dtype == np.float32 and v.model[0].tolist() == [1.0, 2.5]
    assert v.model[1].w.dtype == np.int32
    assert [x.dtype for x in v.data] == [np.int64] * 3 and all(x.ndim == 0 for x in v.data)
    s = values.normalize("héllo", fl.TensorType(np.str_))
    assert s.dtype == object and s.item() == "héllo".encode()
    Point = namedtuple("Point", ["x", "y"])
    p = values.normalize(Point(1, 2), fl.StructType([("x", np.int32), ("y", np.int32)]))
    assert [int(p.x), int(p.y)] == [1, 2]
    od = values.normalize(OrderedDict(y=2, x=1), fl.StructType([("x", np.int32), ("y", np.int32)]))
    assert structure.name_list(od) == ["x", "y"]
    assert values.normalize(np.float64(3.0), fl.TensorType(np.int16)).dtype == np.int16
    empty = values.normalize([], fl.TensorType(np.float32, [None, 3]))
    assert empty.shape == (0, 3)


@pytest.mark.parametrize("value, message", [
    ({"model": [[1, 2], {"w": [[1, 2], [3]]}], "data": []}, "arg.model[1].w: expected int32[2,2], found ragged"),
    ({"model": [[1, 2], {"w": [[1, 2], [3, 4]]}], "data": [1, math.nan]}, "arg.data[1]: expected int64, found NaN or infinity"),
    ({"model": [[1, 2, 3], {"w": [[1, 2], [3, 4]]}], "data": []}, "arg.model[0]: expected float32[2], found a list of 3 items (shape [3])"),
    ({"model": [[1, 2], {"v": [[1, 2], [3, 4]]}], "data": []}, "arg.model[1].v: unexpected element 'v'"),
    ({"model": [[1, 2], {}], "data": []}, "arg.model[1].w: missing; expected int32[2,2]"),
    ({"model": [[1, 2]], "data": []}, "arg.model: expected <float32[2],<w=int32[2,2]>>, found a list of 1 item (2 elements expected)"),
    ({"model": [[1, 2], {"w": [[1, 2], [3, 4]]}], "data": 5}, "arg.data: expected {int64}@CLIENTS, found a int 5"),
    ({"model": [["a", 2], {"w": [[1, 2], [3, 4]]}], "data": []}, "arg.model[0]: expected float32[2], found a str 'a'"),
    ({"model": [[1, 2], {"w": [[1.5, 2], [3, 4]]}], "data": []}, "not whole numbers"),
    ({"model": [[1, 2], {"w": [[1, 2], [3, 2**40]]}], "data": []}, "out of range for int32"),
    ({"model": [[1e39, 2], {"w": [[1, 2], [3, 4]]}], "data": []}, "out of range for float32"),
    ({"model": [[True, 2], {"w": [[1, 2], [3, 4]]}], "data": []}, "bools mixed with numbers"),
])
def test_normalize_reports_path_expected_type_and_found(value, message):
    with pytest.raises(ArgumentError, match=re.escape(message)) as info:
        values.normalize(value, MODEL)
    assert info.value.exit_code == 4


def test_client_counts_must_agree():
    t = fl.StructType([("a", fl.FederatedType(np.int32, fl.CLIENTS)),
                       ("b", fl.FederatedType(np.float32, fl.CLIENTS)),
                       ("s", fl.FederatedType(np.float32, fl.SERVER))])
    assert values.infer_clients({"a": [1, 2], "b": [1.0, 2.0], "s": 1.0}, t) == 2
    assert values.infer_clients(1.0, fl.FederatedType(np.float32, fl.SERVER)) is None
    with pytest.raises(ArgumentError, match="inconsistent client counts: arg.a has 2 clients, "
                                            "arg.b has 3"):
        values.normalize({"a": [1, 2], "b": [1.0, 2.0, 3.0], "s": 1.0}, t)


def test_all_equal_value_with_several_members_is_refused():
    t = fl.FederatedType(fl.TensorType(np.int32), fl.SERVER)
    pb = values.value_to_proto(3, t)
    pb.federated.value.add().CopyFrom(pb.federated.value[0])
    with pytest.raises(ArgumentError, match="value: all_equal federated value has 2 members"):
        values.value_from_proto(pb, t)


def test_cpp_style_values_get_names_and_collapse_from_the_hint():
    """The C++ runtime drops struct names, member types, and lists all CLIENTS values."""
    member = fl.StructType([("x", np.int32), ("y", np.float32)])
    t = fl.FederatedType(member, fl.CLIENTS, all_equal=True)
    full = values.value_to_proto({"x": 1, "y": 2.0}, t)
    wire = executor_pb2.Value()
    wire.federated.type.placement.value.uri = "clients"
    for _ in range(3):
        m = wire.federated.value.add()
        m.CopyFrom(full.federated.value[0])
        for e in m.struct.element:
            e.name = ""
    v, vt = values.value_from_proto(wire, t)
    assert vt == t and structure.name_list(v) == ["x", "y"] and int(v.x) == 1


def test_values_equal_tolerance_and_paths():
    t = fl.StructType([("f", fl.TensorType(np.float32, [2])), ("i", np.int32),
                       ("c", fl.FederatedType(np.str_, fl.CLIENTS))])
    a = values.normalize({"f": [1.0, math.nan], "i": 1, "c": ["x", "y"]}, t)
    b = values.normalize({"f": [1.0 + 1e-6, math.nan], "i": 1, "c": ["x", "y"]}, t)
    assert values.values_equal(a, b, t) == ["value.f"]
    assert values.values_equal(a, b, t, rtol=1e-5) == []
    c = values.normalize({"f": [1.0, math.nan], "i": 2, "c": ["x", "z"]}, t)
    assert values.values_equal(a, c, t) == ["value.i", "value.c[1]"]
    d = values.normalize({"f": [1.0, math.nan], "i": 1, "c": ["x"]}, t)
    assert values.value_differences(a, d, t) == [("value.c", "2 clients vs 1 clients")]


def test_value_to_proto_checks_first():
    with pytest.raises(ArgumentError, match=r"value.b: expected float32, found a str"):
        values.value_to_proto({"a": 1, "b": "x"},
                              fl.StructType([("a", np.int32), ("b", np.float32)]))
