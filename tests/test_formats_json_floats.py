"""JSON output of floating-point values: the shortest digits that read back as the same value of
the tensor's own dtype (float32 2.3333333, not its float64 widening 2.3333332538604736)."""
from __future__ import annotations

import json

import federated_language as fl
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tffexec.formats import loading
from tffexec.formats import plainjson


def _roundtrip(array: np.ndarray) -> tuple[str, np.ndarray]:
    """(the JSON text of `array`, the array read back from it with its type)."""
    type_spec = fl.TensorType(array.dtype, array.shape)
    payload = loading.encode_value(array, type_spec, "json")
    return payload.decode(), np.asarray(loading.load_value(payload, type_spec, fmt="json"))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_float32_prints_its_shortest_digits():
    text, back = _roundtrip(np.array([7 / 3, 0.1, 1e30, -2.5e-8], np.float32))
    assert json.loads(text)["value"]["value"] == [2.3333333, 0.1, 1e30, -2.5e-8]
    assert "2.3333332538604736" not in text


def test_plain_json_uses_the_same_digits():
    value = np.array(7 / 3, np.float32)
    assert plainjson.dumps(plainjson.to_plain(value, fl.TensorType(np.float32))) == "2.3333333\n"


def test_float64_keeps_all_its_digits():
    text, back = _roundtrip(np.array([1 / 3], np.float64))
    assert json.loads(text)["value"]["value"] == [0.3333333333333333]
    assert back[0] == 1 / 3


def test_non_finite_values_keep_their_names():
    text, back = _roundtrip(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert json.loads(text)["value"]["value"] == ["nan", "inf", "-inf"]
    assert np.isnan(back[0]) and back[1] == np.inf and back[2] == -np.inf


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=20))
def test_float32_values_read_back_exactly(values):
    array = np.array(values, np.float32)
    text, back = _roundtrip(array)
    assert _same_bits(back, array)  # -0.0 included
    for number, value in zip(json.loads(text)["value"]["value"], array):
        # numpy's shortest float32 digits, or (where they would not survive the float64 step of
        # reading JSON) the exact widened value.
        if np.isfinite(value):
            assert number in (float(str(value)), float(value))


@pytest.mark.parametrize("width, dtype", [(64, np.float64), (16, np.float16)],
                         ids=["float64", "float16"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_float64_and_float16_values_read_back_exactly(width, dtype, data):
    values = data.draw(st.lists(st.floats(width=width, allow_nan=False), min_size=1, max_size=20))
    array = np.array(values, dtype)
    _, back = _roundtrip(array)
    assert _same_bits(back, array)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(width=32, allow_nan=False),
                          st.floats(width=32, allow_nan=False)), min_size=1, max_size=10))
def test_complex64_values_read_back_exactly(pairs):
    array = np.array([complex(re, im) for re, im in pairs], np.complex64)
    _, back = _roundtrip(array)
    assert _same_bits(back, array)


def test_extreme_float32_magnitudes_read_back_exactly():
    edge = np.array([np.finfo(np.float32).max, np.finfo(np.float32).tiny,
                     np.finfo(np.float32).smallest_subnormal], np.float32)
    assert _same_bits(_roundtrip(edge)[1], edge)
