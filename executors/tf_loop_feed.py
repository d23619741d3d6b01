"""What a call feeds to a graph rewritten by `tf_loops`: its sequences as element lists.

A looped graph's sequence parameter is still a `variant`, now carrying a `TensorList` of one
`TensorList` per element component (tf.nest order: named structs by sorted name, as datasets order
dicts), items in element order, each with its own shape (a ragged last batch is one more item).
A call feeds lists only when every planned sequence qualifies (`feeds_loops`): its elements are at
hand, or come from a dataset graph whose order and content do not vary between iterations (no
shuffle, sampling or random op: tffexec reads the elements once, tf.data would redraw them).

The lists of one sequence are built once and reused by every call that feeds it (rounds of
`iterate`, `benchmark` repeats, a sequence broadcast to several graphs): an `IdentityMemo` keeps
them, keyed weakly on the sequence (an entry goes with its sequence) and bounded in bytes. What it keeps
is immutable tensors: the loop only reads the lists (`TensorListGetItem`/`TensorListLength`), and
a list op that could update a list in place does so only when no other reference holds it.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

import federated_language as fl
import numpy as np

from tffexec import tf_runtime
from tffexec.executors import identity_memo
from tffexec.executors import tf_loops
from tffexec.formats import dataset_graphs
from tffexec.formats import sequences
from tffexec.formats import types as tt

#: Dataset ops that make the order or content of an argument dataset vary between iterations.
_NONDETERMINISTIC_DATASET_MARKERS = ("Shuffle", "Sampl", "Random", "DirectedInterleave")


#: Element data kept as lists for reuse: a few hundred clients' datasets of a small model.
MEMO_LIMIT_BYTES = 256 * 2**20
_memo = identity_memo.IdentityMemo(MEMO_LIMIT_BYTES)


def element_lists(sequence, dtypes: tuple[int, ...]):
    """The `variant` a rewritten graph takes for `sequence`: a TensorList holding one TensorList
    per element component (tf.nest order), items in element order, each with its own shape.
    Built once per sequence (see the module docstring); the sequence's element limit is checked on every
    call (`SequenceValue.elements`), as the policy it is read under can change."""
    elements = sequence.elements()
    lists = _memo.get(sequence, dtypes)
    if lists is None:
        lists, size = _build_lists(sequence, elements, dtypes)
        _memo.put(sequence, dtypes, lists, size)
    return lists


def _build_lists(sequence, elements: list, dtypes: tuple[int, ...]) -> tuple[Any, int]:
    """(the lists, the bytes of element data they hold)."""
    tf = tf_runtime.tensorflow()
    leaves = [_leaves(e, sequence.element_type) for e in elements]
    with tf.device("/cpu:0"):  # in host memory, where tf.data keeps a dataset's elements
        unknown = tf.constant(-1, tf.int32)
        outer = tf.raw_ops.EmptyTensorList(element_shape=unknown, max_num_elements=-1,
                                           element_dtype=tf.variant)
        for k, dtype in enumerate(dtypes):
            tf_dtype = tf.dtypes.as_dtype(dtype)
            column = [leaf[k] for leaf in leaves]
            outer = tf.raw_ops.TensorListPushBack(
                input_handle=outer, tensor=_column_list(tf, column, tf_dtype, unknown))
    return outer, sum(np.asarray(leaf).nbytes for items in leaves for leaf in items)


def _column_list(tf, column: list, dtype, unknown):
    """One component's items as a TensorList: runs of equal shape stacked, the rest pushed."""
    if not column:
        return tf.raw_ops.EmptyTensorList(element_shape=unknown, max_num_elements=-1,
                                          element_dtype=dtype)
    shape = np.shape(column[0])
    run = 1
    while run < len(column) and np.shape(column[run]) == shape:
        run += 1
    handle = tf.raw_ops.TensorListFromTensor(
        tensor=tf.constant(np.stack(column[:run]), dtype=dtype), element_shape=unknown)
    for item in column[run:]:
        handle = tf.raw_ops.TensorListPushBack(input_handle=handle,
                                               tensor=tf.constant(item, dtype=dtype))
    return handle


def _leaves(value, element_type) -> list:
    """The element's tensors in tf.nest order."""
    members = dataset_graphs.nest_members(element_type)
    if members is None:
        return [value]
    return [leaf for i, member_type in members for leaf in _leaves(value[i], member_type)]


def element_leaves(value, element_type) -> list:
    """One element's tensors in tf.nest order, the order in which looped graphs take them."""
    return _leaves(value, element_type)


def element_dtypes(element_type) -> tuple[int, ...]:
    """The TensorFlow dtype enums of an element type's leaves, in tf.nest order."""
    members = dataset_graphs.nest_members(element_type)
    if members is None:
        return (tt.dtype_to_enum(element_type.dtype),)
    return tuple(d for _, member_type in members for d in element_dtypes(member_type))


def feeds_loops(loop_plan: tf_loops.LoopPlan, flat_args: list) -> bool:
    """Whether this call's sequences can all be fed as element lists (else the call keeps
    tf.data): each is a `SequenceValue` with a deterministic source and the element dtypes
    the reduce functions take."""
    for index, dtypes in loop_plan.parameters.items():
        value = flat_args[index]
        if not isinstance(value, sequences.SequenceValue) or not loopable(value):
            return False
        if element_dtypes(value.element_type) != dtypes:
            return False
    return True


@functools.lru_cache(maxsize=256)
def _dataset_graph_deterministic(digest: bytes, graph_bytes: bytes) -> bool:
    del digest  # the cache key's cheap half
    tf = tf_runtime.tensorflow()
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415 - lazy TF

    try:
        graph_def = tf.compat.v1.GraphDef.FromString(graph_bytes)
    except Exception:  # noqa: BLE001 - protobuf raises several kinds; tf.data reports it
        return False
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        if node.op.startswith("Stateless"):
            continue
        if any(marker in node.op for marker in _NONDETERMINISTIC_DATASET_MARKERS):
            return False
        op_def = op_def_registry.get(node.op)
        if op_def is not None and tf_loops.is_random_op(node.op, op_def.is_stateful):
            return False
        deterministic = node.attr.get("deterministic")
        if deterministic is not None and deterministic.s == b"false":
            return False
    return True


def loopable(sequence) -> bool:
    """Whether a sequence value may be fed as element lists: its elements are at hand or come
    from a dataset graph whose order and content do not vary between iterations."""
    if sequence.has_graph_def:
        data = sequence.graph_def()
        return _dataset_graph_deterministic(hashlib.sha256(data).digest()[:8], data)
    return sequence.is_materialized
