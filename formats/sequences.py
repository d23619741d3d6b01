"""Sequence values: a serialized tf.data dataset graph and/or its list of elements.

Why a class of our own: TFF sends a sequence as `DatasetToGraphV2` output plus the element type.
Most tffexec paths only pass those bytes along (to a TensorFlow graph, over gRPC, into a file), so
importing TensorFlow (seconds) and materialising elements must happen only when someone asks
for the elements or a `tf.data.Dataset`. Both directions are lazy and cached.

TensorFlow is imported ONLY inside the functions below that need it; importing this module
never imports it.

Untrusted dataset graphs. A dataset graph can hold any TensorFlow op, and `DatasetFromGraph` runs
part of it just to build the dataset, so its ops must pass a `Policy` before it is ever turned
into a dataset, and a sequence is never read or fed to a graph beyond the policy's
`max_sequence_elements` (infinite datasets are refused up front; datasets of unknown length are
cut with an error at the limit). Values do not police themselves: the checker
(`tffexec.checks.op_check`) marks each sequence whose graph it checked, or binds itself to be run
on first use, and `to_dataset()` refuses a graph that is neither (unless the policy trusts every
op). The policy is the one bound with `bind_policy` (the pre-flight, the leaf executor and the
loaders bind theirs), else `tffexec.policy.DEFAULT`; this module never imports the checker.

Element values use the formats representation (see `tffexec.formats`). A struct element type maps
to TensorFlow structures as TFF did: all-named -> dict (tf.nest orders it by sorted key, which is
why TFF insists on sorted names), all-unnamed -> tuple.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure

from tffexec import policy as policy_lib
from tffexec.errors import ArgumentError, PolicyError
from tffexec.formats import dataset_graphs
from tffexec.formats import types as tt

#: Text in the TensorFlow error raised when a fed dataset of unknown length passes the limit;
#: `tf_function` turns an error carrying it into a `PolicyError`.
LIMIT_MARKER = "tffexec: sequence longer than --max-sequence-elements"


class SequenceValue:
    """A TFF sequence: `element_type` plus serialized dataset graph bytes and/or elements.

    No `==`: comparing two sequences means reading their elements, which can start TensorFlow
    (use `tffexec.formats.compare.value_differences`).
    """

    # `__weakref__`: caches of what a sequence becomes (e.g. `tf_loop_feed`'s element lists)
    # are keyed on it weakly, so they never keep a sequence alive.
    __slots__ = ("_element_type", "_graph_def", "_elements", "_dataset", "_policy", "_checked",
                 "_check", "_fed", "__weakref__")

    def __init__(self, element_type: fl.Type, graph_def: bytes | None = None,
                 elements: list | None = None):
        if graph_def is None and elements is None:
            raise ArgumentError("a sequence needs a dataset graph or a list of elements")
        self._element_type = element_type
        self._graph_def = bytes(graph_def) if graph_def is not None else None
        self._elements = list(elements) if elements is not None else None
        self._dataset = None
        self._fed: tuple[int, Any] | None = None  # (limit, bounded dataset) for calls
        self._policy = None  # bound by bind_policy; None: tffexec.policy.DEFAULT
        self._checked = None  # the policy under which the graph's ops passed the check
        self._check = None  # bound by bind_policy: the checker to run on first use

    @classmethod
    def from_dataset(cls, dataset: Any, element_type: fl.Type | None = None) -> "SequenceValue":
        """Wrap a `tf.data.Dataset` (its element type is read from `element_spec` if not given)."""
        if element_type is None:
            element_type = _type_from_spec(dataset.element_spec)
        seq = cls.__new__(cls)
        seq._element_type, seq._graph_def, seq._elements, seq._dataset = (
            element_type, None, None, dataset)
        # A tf.data.Dataset object comes from the caller's own Python code, not from a file:
        # there is no untrusted graph to check.
        seq._policy, seq._checked, seq._check, seq._fed = None, True, None, None
        return seq

    # -- policy --------------------------------------------------------------------------------
    @property
    def policy(self) -> policy_lib.Policy:
        """The policy this sequence is read under."""
        return self._policy or policy_lib.DEFAULT

    def bind_policy(self, policy: policy_lib.Policy,
                    check: Callable[[bytes, policy_lib.Policy], None] | None = None
                    ) -> "SequenceValue":
        """Reads this sequence under `policy` from now on; `check(graph_bytes, policy)` (the op
        checker, raising when it refuses the graph) is run before the graph first becomes a
        dataset, unless the graph is marked as checked under `policy` already."""
        self._policy = policy
        if check is not None:
            self._check = check
        return self

    def mark_checked(self) -> None:
        """Records that the dataset graph's ops passed the check under the bound policy (called
        by the checker, `tffexec.checks.op_check`)."""
        self._checked = self.policy

    @property
    def is_checked(self) -> bool:
        """Whether the sequence may become a dataset under its policy without a further check:
        it has no graph, came from a Python dataset, or its graph passed under this policy."""
        return self._graph_def is None or self._checked is True or self._checked == self.policy

    @property
    def binding(self) -> tuple[policy_lib.Policy | None, Callable | None]:
        """(the bound policy, the bound checker), each None if none was bound: what a copy of
        this sequence in another process needs in order to be read the same way."""
        return self._policy, self._check

    def _admit_graph(self) -> None:
        """The guard before the graph becomes a dataset: checked, checkable, or trusted."""
        if self.is_checked:
            return
        if self._check is not None:
            self._check(self._graph_def, self.policy)
            self.mark_checked()
        elif not self.policy.trust:
            raise PolicyError("sequence dataset graph was not checked against a policy; check "
                              "it first (tffexec.checks.op_check.check_value) or pass it through "
                              "a Runner")

    @property
    def element_type(self) -> fl.Type:
        return self._element_type

    @property
    def has_graph_def(self) -> bool:
        """True when the serialized graph is at hand without running TensorFlow."""
        return self._graph_def is not None

    @property
    def is_materialized(self) -> bool:
        """True when the elements are at hand without running TensorFlow."""
        return self._elements is not None

    def elements(self) -> list:
        """The element values, read from the dataset graph with TensorFlow on first use.

        Raises:
          tffexec.errors.PolicyError: the dataset holds forbidden ops, is infinite, or has more
            elements than the policy allows.
        """
        if self._elements is None:
            policy = self.policy
            if self._graph_def is not None and dataset_graphs.enabled():
                # Slices and batches of constants: read with numpy (~0.1 ms, not ~20 ms).
                self._admit_graph()
                self._elements = dataset_graphs.read_elements(
                    self._graph_def, self._element_type, policy.max_sequence_elements,
                    policy.sequence_too_long)
            if self._elements is None:
                self._elements = _read_elements(self.to_dataset(), self._element_type, policy)
        elif len(self._elements) > self.policy.max_sequence_elements:
            raise self.policy.sequence_too_long(len(self._elements))
        return self._elements

    def graph_def(self) -> bytes:
        """Serialized dataset graph (`DatasetToGraphV2`), built with TensorFlow if needed."""
        if self._graph_def is None:
            self._graph_def = _dataset_to_graph(self.to_dataset())
        return self._graph_def

    def to_dataset(self) -> Any:
        """A `tf.data.Dataset` of this sequence (from the graph when there is one).

        The graph's ops must have passed the check first (see `bind_policy`, `mark_checked`); the
        dataset itself is not bounded (see `bounded_dataset`).

        Raises:
          tffexec.errors.PolicyError: the graph holds a refused op, or was never checked.
        """
        if self._dataset is None:
            if self._graph_def is not None:
                self._admit_graph()
                self._dataset = _dataset_from_graph(self._graph_def, self._element_type)
            else:
                self._dataset = _dataset_from_elements(self._elements, self._element_type)
        return self._dataset

    def bounded_dataset(self) -> Any:
        """`to_dataset()`, refused or cut so a graph can never read more than the limit.

        A dataset of known length over the limit, or infinite, is refused here. One of unknown
        length (a filter, say) is read here first, under `max_sequence_seconds` and the element
        limit, and the graph gets its elements: inside a graph call, a filter that rejects every
        element of a huge range would spin until `--timeout`. With `max_sequence_seconds` 0 it
        gets a counter instead, that fails with `LIMIT_MARKER` one element past the limit.
        """
        policy = self.policy
        limit = policy.max_sequence_elements
        if self._fed is None or self._fed[0] != limit:
            self._fed = (limit, self._bounded(policy, limit))
        return self._fed[1]

    def _bounded(self, policy: policy_lib.Policy, limit: int) -> Any:
        if self._elements is not None:
            if len(self._elements) > limit:
                raise policy.sequence_too_long(len(self._elements))
            return for_calls(self.to_dataset())
        dataset = self.to_dataset()
        count = _cardinality(dataset)
        if count == _INFINITE:
            raise policy.sequence_too_long(infinite=True)
        if count > limit:
            raise policy.sequence_too_long(count)
        if count >= 0:
            return for_calls(dataset)
        if policy.max_sequence_seconds:
            return for_calls(_dataset_from_elements(self.elements(), self._element_type))
        return for_calls(_guarded(dataset, limit))

    def __repr__(self) -> str:
        parts = [tt.type_str(self._element_type)]
        if self._graph_def is not None:
            parts.append(f"graph_def={len(self._graph_def)} bytes")
        if self._elements is not None:
            parts.append(f"elements={len(self._elements)}")
        return f"SequenceValue({', '.join(parts)})"


def call_options() -> Any:
    """The `tf.data.Options` of every dataset tffexec feeds to a graph: no static graph
    rewrites of the pipeline and no autotuning model.

    A graph that reduces its dataset parameter (`ReduceDataset`, as every `tff.learning` client
    does) finalises the dataset on every execution, and with tf.data's defaults that means
    rewriting the pipeline graph and building an autotuning model per client call. Neither
    option changes which elements come out or their order.
    """
    tf = _tf()
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return options


def for_calls(dataset: Any) -> Any:
    """`dataset` with `call_options()` (what `bounded_dataset` hands to graphs)."""
    return dataset.with_options(call_options())


def _tf():
    """Import TensorFlow on demand; the one place this package does so."""
    from tffexec import tf_runtime  # noqa: PLC0415 - deliberately lazy (import costs seconds)

    return tf_runtime.tensorflow()


def _struct_kind(t: fl.StructType) -> str:
    names = [n for n, _ in t.items()]
    if all(n is None for n in names):
        return "tuple"
    if all(n is not None for n in names):
        return "dict"
    raise ArgumentError(f"sequence element type {tt.type_str(t)} mixes named and unnamed elements"
                        " (TensorFlow datasets cannot carry that)")


def _spec(t: fl.Type):
    """The tf.data structure (TensorSpecs in dicts/tuples) of an element type."""
    tf = _tf()
    if isinstance(t, fl.TensorType):
        shape = None if t.shape is None else list(t.shape)
        return tf.TensorSpec(shape, tf.as_dtype(tt.dtype_to_enum(t.dtype)))
    if isinstance(t, fl.StructType):
        if _struct_kind(t) == "dict":
            return {n: _spec(et) for n, et in t.items()}
        return tuple(_spec(et) for _, et in t.items())
    raise ArgumentError(f"a sequence element cannot be of type {tt.type_str(t)}")


def _type_from_spec(spec) -> fl.Type:
    tf = _tf()
    if isinstance(spec, tf.TensorSpec):
        dims = None if spec.shape.rank is None else spec.shape.as_list()
        return fl.TensorType(tt.dtype_from_enum(spec.dtype.as_datatype_enum), dims)
    if isinstance(spec, dict):
        return fl.StructType([(k, _type_from_spec(v)) for k, v in spec.items()])
    if isinstance(spec, (tuple, list)):
        return fl.StructType([(None, _type_from_spec(v)) for v in spec])
    raise ArgumentError(f"unsupported dataset element spec {spec!r}")


def _to_value(x, t: fl.Type):
    """One dataset element (eager tensors in dicts/tuples) -> formats representation."""
    if isinstance(t, fl.TensorType):
        return np.asarray(x.numpy(), dtype=tt.value_dtype(t))
    items = list(t.items())
    if isinstance(x, dict):
        return structure.Struct([(n, _to_value(x[n], et)) for n, et in items])
    return structure.Struct([(n, _to_value(v, et)) for (n, et), v in zip(items, x)])


def _to_tf_structure(v, t: fl.Type):
    """A formats value -> nested dicts/tuples of numpy arrays matching `_spec(t)`."""
    if isinstance(t, fl.TensorType):
        return v
    if _struct_kind(t) == "dict":
        return {n: _to_tf_structure(v[i], et) for i, (n, et) in enumerate(t.items())}
    return tuple(_to_tf_structure(v[i], et) for i, (_, et) in enumerate(t.items()))


def _leaf_shapes(v, t: fl.Type) -> tuple:
    if isinstance(t, fl.TensorType):
        return (np.shape(v),)
    return tuple(s for i, (_, et) in enumerate(t.items()) for s in _leaf_shapes(v[i], et))


def _dataset_from_elements(elements: list, t: fl.Type):
    """Build a serializable dataset: from_tensor_slices per run of same-shaped elements.

    (`from_generator` would be simpler but its py_func cannot be serialized to a graph; runs of
    equal shapes keep the typical "full batches then one short batch" case to two nodes.)
    """
    tf = _tf()
    spec = _spec(t)

    def stacked(run: list):
        trees = [_to_tf_structure(e, t) for e in run]
        return tf.nest.map_structure(
            lambda s, *leaves: tf.constant(np.stack(leaves), dtype=s.dtype), spec, *trees)

    if not elements:
        empty = tf.nest.map_structure(
            lambda s: tf.zeros([0] + ([d or 0 for d in s.shape.as_list()]
                                      if s.shape.rank is not None else []), s.dtype), spec)
        return tf.data.Dataset.from_tensor_slices(empty)
    runs, start = [], 0
    for i in range(1, len(elements) + 1):
        if i == len(elements) or _leaf_shapes(elements[i], t) != _leaf_shapes(elements[start], t):
            runs.append(elements[start:i])
            start = i
    dataset = None
    for run in runs:
        part = tf.data.Dataset.from_tensor_slices(stacked(run))
        dataset = part if dataset is None else dataset.concatenate(part)
    return dataset


def _dataset_from_graph(graph_def: bytes, t: fl.Type):
    tf = _tf()
    try:
        variant = tf.raw_ops.DatasetFromGraph(graph_def=graph_def)
        return tf.data.experimental.from_variant(variant, structure=_spec(t))
    except (tf.errors.OpError, ValueError, TypeError) as e:
        raise ArgumentError(f"sequence dataset graph is unreadable: {_first_line(e)}") from None


_INFINITE = -1
_UNKNOWN = -2


def _cardinality(dataset) -> int:
    """The dataset's static length, `_INFINITE` or `_UNKNOWN` (tf.data's own constants)."""
    return int(dataset.cardinality().numpy())


def _guarded(dataset, limit: int):
    """The dataset, failing with `LIMIT_MARKER` when element `limit` + 1 is produced."""
    tf = _tf()

    def check(index, element):
        ok = tf.debugging.assert_less(index, tf.constant(limit, tf.int64), message=LIMIT_MARKER)
        with tf.control_dependencies([ok]):
            return tf.nest.map_structure(tf.identity, element)

    return dataset.take(limit + 1).enumerate().map(check)


def _read_elements(dataset, t: fl.Type, policy: policy_lib.Policy) -> list:
    tf = _tf()
    limit = policy.max_sequence_elements
    count = _cardinality(dataset)
    if count == _INFINITE:
        raise policy.sequence_too_long(infinite=True)
    if count > limit:
        raise policy.sequence_too_long(count)
    out: list = []
    try:
        for x in _timed_elements(dataset, policy, out):
            if len(out) == limit:
                raise policy.sequence_too_long()
            out.append(_to_value(x, t))
        return out
    except (tf.errors.OpError, ValueError, TypeError) as e:
        raise ArgumentError(f"sequence elements could not be read as {tt.type_str(t)}*: "
                            f"{_first_line(e)}") from None


def _timed_elements(dataset, policy: policy_lib.Policy, read: list):
    """The dataset's elements, pulled one by one under `policy.max_sequence_seconds` in all.

    Why not plain eager iteration: an eager `next()` on a dataset whose filter rejects every
    element of a huge range never returns and cannot be interrupted. Here each `IteratorGetNext`
    runs eagerly under a `CancellationManager` that a timer cancels (tf.data checks for
    cancellation between the elements it consumes), at the cost of a plain `next()`. `read` is
    the caller's list of elements so far (for the message).
    """
    tf = _tf()
    seconds = policy.max_sequence_seconds
    if not seconds:
        yield from dataset
        return
    from tensorflow.python.eager import cancellation, context, execute  # noqa: PLC0415

    iterator = iter(dataset)
    spec = dataset.element_spec
    flat = tf.nest.flatten(spec)
    attrs = ("output_types", [execute.make_type(s.dtype, "output_types") for s in flat],
             "output_shapes", [execute.make_shape(s.shape, "output_shapes") for s in flat])
    manager = cancellation.CancellationManager()
    fired = threading.Event()

    def cancel() -> None:
        fired.set()
        manager.start_cancel()

    timer = threading.Timer(seconds, cancel)
    timer.daemon = True
    timer.start()
    try:
        while True:
            try:
                tensors = execute.execute_with_cancellation(
                    "IteratorGetNext", num_outputs=len(flat),
                    inputs=[iterator._iterator_resource],  # noqa: SLF001 - the op's input
                    attrs=attrs, ctx=context.context(), cancellation_manager=manager)
            except tf.errors.OutOfRangeError:
                return
            except tf.errors.CancelledError:
                if fired.is_set():
                    raise policy.sequence_too_slow(len(read)) from None
                raise
            yield tf.nest.pack_sequence_as(spec, tensors)
    finally:
        timer.cancel()


def _dataset_to_graph(dataset) -> bytes:
    tf = _tf()
    try:
        variant = tf.data.experimental.to_variant(dataset)
        return tf.raw_ops.DatasetToGraphV2(input_dataset=variant,
                                           strip_device_assignment=True).numpy()
    except (tf.errors.OpError, ValueError, TypeError) as e:
        raise ArgumentError(f"sequence cannot be serialized: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
