"""Arrays fed to graphs become tensors once, not once per call.

A round calls a client graph once per client with the same broadcast model (the same numpy
arrays), and feeds each client's results (arrays tffexec just made from tensors) to the next graph
of that client. Converting an array to a tensor costs ~70 µs of Python for a small array, so at
a hundred clients that was a large part of tffexec's own time per round. Here an array's tensor
is kept (`tensor_of`), as is the tensor an array was read from (`remember`), in an
`IdentityMemo`: while the array lives and fits, a call reuses the tensor.

Arrays can change in place (a caller's argument, between two runs), so a hit is checked: the
tensor's bytes, dtype and shape must equal the array's (a byte comparison: -0.0 is not 0.0, NaN
equals itself), which costs a fraction of a conversion for the small arrays kept here. Large
arrays (where a copy, not Python, is the cost), strings and non-contiguous arrays are converted
as before. A reused tensor holds the same bytes a conversion would make: results are unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tffexec import tf_runtime
from tffexec.executors import identity_memo

#: Largest array kept: above it a conversion is a copy, and checking a hit costs as much.
MAX_ARRAY_BYTES = 64 * 2**10
#: Tensors kept in all (bytes of their data).
LIMIT_BYTES = 64 * 2**20

_memo = identity_memo.IdentityMemo(LIMIT_BYTES)
_NUMERIC_KINDS = frozenset("biufc")


def _keeps(array: Any) -> bool:
    return (type(array) is np.ndarray and array.dtype.kind in _NUMERIC_KINDS
            and array.nbytes <= MAX_ARRAY_BYTES and array.flags.c_contiguous)


def tensor_of(value: Any):
    """`tf.convert_to_tensor(value)`, reusing the tensor kept for the same, unchanged array."""
    tf = tf_runtime.tensorflow()
    if not _keeps(value):
        return tf.convert_to_tensor(value)
    tensor = _memo.get(value, None)
    if tensor is not None and _same_bytes(value, tensor):
        return tensor
    tensor = tf.convert_to_tensor(value)
    _memo.put(value, None, tensor, value.nbytes)
    return tensor


def remember(array: Any, tensor) -> None:
    """Records that `array` holds `tensor`'s values (read from it, same dtype and shape), so
    feeding `array` to a graph reuses `tensor`."""
    if _keeps(array):
        _memo.put(array, None, tensor, array.nbytes)


def _same_bytes(array: np.ndarray, tensor) -> bool:
    held = tensor.numpy()  # an array, or a numpy scalar for a 0-d tensor: both have these
    return (held.dtype == array.dtype and held.shape == array.shape
            and held.tobytes() == array.tobytes())
