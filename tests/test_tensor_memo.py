"""Conversions at the TensorFlow boundary are kept per live object (`executors/identity_memo.py`,
`executors/tf_tensor_memo.py`): a broadcast array becomes a tensor once, an array read from a
tensor feeds the next graph as that tensor; an array changed in place is converted again; the
memo is bounded in bytes and never keeps an object alive.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest

from tffexec.executors import identity_memo
from tffexec.executors import tf_function
from tffexec.executors import tf_tensor_memo

tf = pytest.importorskip("tensorflow")


class _Thing:
    """A weakly referable object of a given size."""


def test_the_memo_drops_the_oldest_past_its_limit_and_entries_go_with_their_objects():
    memo = identity_memo.IdentityMemo(limit_bytes=200)
    things = [_Thing() for _ in range(3)]
    for index, thing in enumerate(things):
        memo.put(thing, "tag", index, 100)
    assert memo.get(things[0], "tag") is None  # the oldest made room
    assert memo.get(things[2], "tag") == 2 and memo.size_bytes == 200
    assert memo.get(things[2], "other tag") is None
    del things[1:], thing
    gc.collect()
    assert memo.size_bytes == 0
    memo.put(things[0], "tag", "too big", 201)  # over the limit alone: not kept
    assert memo.get(things[0], "tag") is None and memo.size_bytes == 0


def test_a_broadcast_array_becomes_a_tensor_once():
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    first = tf_tensor_memo.tensor_of(weights)
    assert tf_tensor_memo.tensor_of(weights) is first
    assert tf_tensor_memo.tensor_of(weights.copy()) is not first
    np.testing.assert_array_equal(first.numpy(), weights)


@pytest.mark.parametrize("before, after", [(1.0, 2.0), (0.0, -0.0), (np.nan, 1.0)])
def test_an_array_changed_in_place_is_converted_again(before, after):
    array = np.full([4], before, np.float32)
    tf_tensor_memo.tensor_of(array)
    array[2] = after
    again = tf_tensor_memo.tensor_of(array)
    assert again.numpy().tobytes() == array.tobytes()


def test_an_array_read_from_a_result_feeds_the_next_graph_as_that_tensor():
    result = tf.constant([[1.5, -2.0]], tf.float32)
    array = tf_function.to_numpy(result, np.float32)
    assert tf_tensor_memo.tensor_of(array) is result
    converted = tf_function.to_numpy(result, np.float64)  # another dtype: not that tensor
    assert tf_tensor_memo.tensor_of(converted).dtype == tf.float64


@pytest.mark.parametrize("array", [
    np.zeros(tf_tensor_memo.MAX_ARRAY_BYTES // 4 + 1, np.float32),  # large: a copy either way
    np.array([b"a", b"bc"], dtype=object),  # strings
    np.zeros([4, 4], np.float32)[:, 1],  # not contiguous
], ids=["large", "strings", "strided"])
def test_large_string_and_strided_arrays_are_converted_each_time(array):
    assert tf_tensor_memo.tensor_of(array) is not tf_tensor_memo.tensor_of(array)
