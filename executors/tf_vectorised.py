"""Clients that train in one TensorFlow call: buckets of equal datasets, vectorised across clients.

Why. A `tff.learning` client graph trains over its own dataset; run client by client, each call
costs TensorFlow's per-call machinery and runs the model's small matmuls one client at a time.
Clients whose datasets have the same structure (number of elements, each element's shapes and
dtypes) can instead train together: `tf_functional` re-emits the client graph as a pure function
(variables as tensors, the dataset reduction as a loop over the element tensors) and
`tf.vectorized_map` runs that function for all clients of a bucket at once.

How a map runs (`VectorisedTraining.map`): the clients' arguments are read as flat leaves;
clients whose sequences can be fed as elements (`tf_loop_feed.loopable`) are grouped by structure
(a bucket key: each sequence's element shapes and dtypes, each tensor leaf's shape); each bucket of
at least `MIN_BUCKET` clients becomes one call of a `tf.function` traced once per graph and bucket
structure, tensor leaves equal for every client of the bucket (a broadcast model) passed once, not
stacked. Results are split back into client order. Everything else (buckets of one, clients whose
dataset is not at hand, graphs the interpreter or pfor refuse, a TensorFlow error in the call)
is left to the per-client path, which also names a failing client. A refusal is remembered per
graph and bucket structure and said in one line under `-v`.

Rounds bring the same clients again, so what only depends on a client's sequence object is kept
between maps (its leaves and key part: `_sequence_leaves`; a call's stacked element tensors:
`VectorisedTraining._stacked_sequences`), weakly and bounded in bytes, and checked by identity;
the broadcast model is read once per map (`_flat_parts`). Nothing derived from other values is
kept across maps.

Results equal the per-client path within floating-point reassociation (vectorised matmuls may sum
in another order); `TFFEXEC_VECTORISED_TRAINING=0` turns the path off to compare.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from typing import Callable, Optional

import numpy as np

from tffexec import errors
from tffexec import tf_runtime
from tffexec.executors import activity
from tffexec.executors import base
from tffexec.executors import batch as batch_lib
from tffexec.executors import identity_memo
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_batch
from tffexec.executors import tf_call_config
from tffexec.executors import tf_function
from tffexec.executors import tf_functional
from tffexec.executors import tf_loop_feed
from tffexec.executors import tf_tensor_memo
from tffexec.formats import sequences

_LOG = logging.getLogger("tffexec")

#: Environment switch: "0" trains every client on its own (the per-client path).
ENV_SWITCH = "TFFEXEC_VECTORISED_TRAINING"
#: Fewer clients than this in a bucket run per client (a vectorised call of one gains nothing).
MIN_BUCKET = 2
#: Datasets with more elements than this stay per client: the reduction is unrolled when traced,
#: and vectorising one element's training step takes about 2 s (MLP/CNN FedAvg, 2 cores).
MAX_ELEMENTS = 16
#: At most this many bytes of stacked client inputs in one call (a bucket is split in calls).
CALL_BYTES = 128 * 2**20
#: At most this many bucket functions are traced per graph (each costs seconds to vectorise);
#: clients of further structures train per client.
MAX_TRACES = 8
#: A bucket gets a NEW function (a trace of seconds) only when it holds at least this share of
#: the map's clients or `TRACE_CLIENTS` clients: a structure few clients share would cost more
#: rounds of tracing than it saves (100 clients of 27 structures, the largest 8 clients, ran
#: 0.6x TFF over three rounds, each tracing one more), so its clients train per client. Buckets
#: of a function traced before are always used.
TRACE_SHARE = 0.25
TRACE_CLIENTS = 32


def enabled() -> bool:
    """Whether vectorised training is on (`TFFEXEC_VECTORISED_TRAINING` is not "0")."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


class _Client:
    """One client's flat argument leaves: tensors as arrays, sequences as element leaves."""

    __slots__ = ("tensors", "sequences", "entries", "key")

    def __init__(self, tensors: list, tensor_keys: tuple, sequences_: list):
        self.tensors = tensors
        # per sequence parameter: [element][component] arrays (`_SequenceLeaves.leaves`)
        self.sequences = [s.leaves for s in sequences_]
        self.entries = sequences_
        self.key = (tensor_keys, tuple(s.key for s in sequences_))


class _SequenceLeaves:
    """What a client's sequence is to a bucket: its element leaves and its part of the key.

    Clients bring the same sequence objects round after round, and reading their elements
    into leaves cost more than the vectorised call itself (100 clients); `_sequence_memo` keeps
    them per live sequence. `elements` is the sequence's own element list they were read from:
    a hit is used only while the sequence still returns that very list."""

    __slots__ = ("elements", "leaves", "key", "nbytes", "__weakref__")

    def __init__(self, elements: list, element_type):
        self.elements = elements
        self.leaves = [[np.asarray(c) for c in tf_loop_feed.element_leaves(e, element_type)]
                       for e in elements]
        self.key = tuple(tuple((c.dtype.str, c.shape) for c in element)
                         for element in self.leaves)
        self.nbytes = sum(c.nbytes for element in self.leaves for c in element)


#: Stacked element tensors kept per stack for the next call of the same members (bytes).
STACK_MEMO_BYTES = 256 * 2**20
_STACK_TAG = "vectorised-stack"
#: Element leaves of client sequences kept between maps (see `_SequenceLeaves`).
SEQUENCE_MEMO_BYTES = 256 * 2**20
_sequence_memo = identity_memo.IdentityMemo(SEQUENCE_MEMO_BYTES)
_SEQUENCE_TAG = "vectorised-leaves"


def _sequence_leaves(sequence: sequences.SequenceValue) -> Optional[_SequenceLeaves]:
    """The sequence's leaves, or None when it cannot be fed as elements or is too long for a
    bucket. The element limit is checked on every call (`elements()`), as the policy it is read
    under can change; loopability is only remembered once it held (it does not change back:
    the graph is fixed, and elements once read stay)."""
    hit = _sequence_memo.get(sequence, _SEQUENCE_TAG)
    if hit is not None and sequence.elements() is hit.elements:
        return hit
    if not tf_loop_feed.loopable(sequence):
        return None
    elements = sequence.elements()
    if len(elements) > MAX_ELEMENTS:
        return None
    leaves = _SequenceLeaves(elements, sequence.element_type)
    _sequence_memo.put(sequence, _SEQUENCE_TAG, leaves, leaves.nbytes)
    return leaves


class _Functions:
    """Bucket functions, interpreters and refusals of the whole process, keyed by the client
    graph's content (`_digest`): every stack (and Runner) that meets the same graph reuses its
    traced functions instead of vectorising it again (seconds each)."""

    def __init__(self):
        self.compiled: dict = {}  # (digest, traced structure, shared mask) -> concrete function
        self.refused: set = set()  # such keys, and digests of graphs the interpreter refuses
        self.traced: dict = {}  # digest -> bucket functions traced for it
        self.interpreters: dict = {}  # digest -> tf_functional.Interpreter
        self.lock = threading.Lock()


_functions = _Functions()


def clear_cache() -> None:
    """Forgets every traced bucket function and refusal (for tests that count traces)."""
    global _functions
    _functions = _Functions()


def _digest(graph_def) -> bytes:
    """The graph's content, without the shared names that make each import unique."""
    tf = tf_runtime.tensorflow()
    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)
    for node in tf_call_config.graph_nodes(copy):
        if "shared_name" in node.attr:
            del node.attr["shared_name"]
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


class VectorisedTraining:
    """Vectorised buckets of one stack's leaf (`leaf`: its TensorFlow executor)."""

    def __init__(self, leaf: tensorflow_executor.TensorFlowExecutor):
        self.leaf = leaf
        self._graphs: dict = {}  # graph function -> (digest, prepared GraphDef)
        # A call's stacked element tensors, kept for a call of the very same sequence leaves
        # (`_stacked_sequences`); per stack, as they live on its device.
        self._stacks = identity_memo.IdentityMemo(STACK_MEMO_BYTES)
        self.calls = 0  # vectorised bucket calls made (observable by tests and benchmarks)
        self.traces = 0  # bucket functions this stack traced (others came from the cache)

    def _graph(self, graph_function) -> tuple:
        entry = self._graphs.get(graph_function)
        if entry is None:
            entry = self._graphs[graph_function] = graph_entry(graph_function)
        return entry

    # -- the map -------------------------------------------------------------------------------
    def map(self, executor: base.SyncExecutor,
            function: Optional[tensorflow_executor.LeafFunction], arguments: list,
            per_client: Callable[[int, int], list]) -> Optional[batch_lib.Batch]:
        """The clients' results as columns (a `Batch` of the function's result type), buckets
        vectorised and the other clients run by `per_client(start, stop)` (the per-client path
        over clients start..stop-1, values of `executor`); None when no bucket ran (nothing has
        been run then), or when a per-client result does not fit the columns."""
        if function is None or len(arguments) < MIN_BUCKET or any(a is None for a in arguments):
            return None
        graph_function = function.graph_function
        result_type = function.type_signature.result
        result_types = batch_lib.leaf_types(result_type)
        if result_types is None or not any(
                kind == "variant" for kind, _ in graph_function.parameter_leaves) or any(
                kind != "tensor" for kind, _ in graph_function.result_leaves) or \
                self._graph(graph_function)[0] in _functions.refused:
            return None
        seen: dict = {}
        clients = [self._client(executor, function, a, seen) for a in arguments]
        buckets: dict = {}
        for index, client in enumerate(clients):
            if client is not None:
                buckets.setdefault(client.key, []).append(index)
        columns: Optional[list] = None
        done = [False] * len(arguments)
        # Largest buckets first; at most one new function is traced per map (a trace takes
        # seconds), and only for a bucket large enough to repay it (TRACE_SHARE): the first
        # round of a few common structures costs one trace, later rounds trace the next.
        traced_before = self.traces
        for key, bucket in sorted(buckets.items(), key=lambda item: -len(item[1])):
            if len(bucket) < MIN_BUCKET:
                continue
            for members in _calls(bucket, clients[bucket[0]]):
                may_trace = self.traces == traced_before and (
                    len(bucket) >= TRACE_SHARE * len(arguments) or len(bucket) >= TRACE_CLIENTS)
                outputs = self._run_bucket(function, key, [clients[i] for i in members],
                                           result_types, may_trace)
                if outputs is None:
                    continue
                if columns is None:
                    columns = [np.empty((len(arguments),) + o.shape[1:], o.dtype)
                               for o in outputs]
                if any(c.shape[1:] != o.shape[1:] for c, o in zip(columns, outputs)):
                    return None  # result shapes that differ between buckets: members, not columns
                for column, output in zip(columns, outputs):
                    column[members] = output
                for index in members:
                    done[index] = True
        if columns is None:
            return None
        activity.count_path(activity.VECTORISED, sum(done))
        for start, stop in _missing_runs(done):
            for row, value in enumerate(per_client(start, stop), start):
                leaves = batch_lib.leaves_of(executor.materialize(value), result_type)
                if leaves is None or any(np.shape(v) != c.shape[1:]
                                         for v, c in zip(leaves, columns)):
                    return None
                for column, leaf in zip(columns, leaves):
                    column[row] = leaf
        return batch_lib.Batch(result_type, len(arguments), columns, [True] * len(columns))

    def _client(self, executor, function, argument, seen: dict) -> Optional[_Client]:
        """The client's leaves, or None when its sequences are not at hand as elements.
        `seen`: what this map met already (`_flat_parts`; its checked tensor parts by id and
        offset: the broadcast model is one part that every client holds)."""
        kinds = function.graph_function.parameter_leaves
        tensors, tensor_keys, sequence_leaves, offset = [], [], [], 0
        for part in _flat_parts(executor, argument, function.type_signature.parameter, seen):
            checked = seen.get((id(part), offset))
            if checked is None or checked[0] is not part:
                checked = seen[(id(part), offset)] = (part, _tensor_part(
                    kinds[offset:offset + len(part)], part))
            offset += len(part)
            if checked[1] is not None:
                tensors += checked[1][0]
                tensor_keys += checked[1][1]
                continue
            for (kind, _), leaf in zip(kinds[offset - len(part):offset], part):
                if kind == "tensor":
                    single = _tensor_part([(kind, None)], [leaf])
                    if single is None:
                        return None
                    tensors += single[0]
                    tensor_keys += single[1]
                    continue
                if kind != "variant" or not isinstance(leaf, sequences.SequenceValue):
                    return None
                try:
                    leaves = _sequence_leaves(leaf)
                except errors.TffexecError:
                    return None  # the per-client path reports it, naming the client
                if leaves is None:
                    return None
                sequence_leaves.append(leaves)
        if offset != len(kinds):
            return None
        return _Client(tensors, tuple(tensor_keys), sequence_leaves)

    # -- one bucket ----------------------------------------------------------------------------
    def _run_bucket(self, function, key, clients: list[_Client], result_types,
                    may_trace: bool) -> Optional[list]:
        tf = tf_runtime.tensorflow()
        first = clients[0]
        shared = tuple(all(c.tensors[i] is first.tensors[i] or
                           np.array_equal(c.tensors[i], first.tensors[i]) for c in clients[1:])
                       for i in range(len(first.tensors)))
        cache_key = (self._graph(function.graph_function)[0], _traced_structure(key), shared)
        compiled = self._get(cache_key, may_trace,
                             lambda: self._build(function.graph_function, first, shared))
        if compiled is None:
            return None
        stacked = [np.stack([c.tensors[i] for c in clients])
                   for i, s in enumerate(shared) if not s]
        constants = [first.tensors[i] for i, s in enumerate(shared) if s]
        try:
            with self.leaf.device_scope():
                flat = ([tf.convert_to_tensor(x) for x in stacked] +
                        self._stacked_sequences(clients) +
                        [tf_tensor_memo.tensor_of(x) for x in constants])
                outputs = tf_function.call_flat(compiled, flat)
        except tf.errors.OpError:
            return None  # a data-dependent failure: the per-client path names the client
        self.calls += 1
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf_function.to_numpy(o, np.dtype(t.dtype)) for o, t in zip(outputs, result_types)]

    def _stacked_sequences(self, clients: list[_Client]) -> list:
        """The clients' element leaves stacked across clients as tensors (per sequence, element,
        component), in the leaf's device scope.

        Rounds bring the same clients with the same sequences, and stacking and converting
        their elements cost as much as the vectorised call; so the tensors of one call are kept,
        under the first client's first sequence leaves, with weak references to every member's
        (`_SequenceLeaves`, one object per live sequence and its elements). They are reused only
        when every member of this call holds the very same leaves objects in the same order:
        equal inputs, by construction."""
        tf = tf_runtime.tensorflow()
        members = [entry for c in clients for entry in c.entries]
        if not members:
            return []
        kept = self._stacks.get(members[0], _STACK_TAG)
        if kept is not None and len(kept[0]) == len(members) and all(
                ref() is entry for ref, entry in zip(kept[0], members)):
            return kept[1]
        first = clients[0].sequences
        stacked = [np.stack([c.sequences[position][element][component] for c in clients])
                   for position in range(len(first))
                   for element in range(len(first[position]))
                   for component in range(len(first[position][element]))]
        tensors = [tf.convert_to_tensor(x) for x in stacked]
        self._stacks.put(members[0], _STACK_TAG, ([weakref.ref(m) for m in members], tensors),
                         sum(x.nbytes for x in stacked))
        return tensors

    def _get(self, key, may_trace: bool, build: Callable):
        """The bucket function for `key` (graph digest, bucket structure, shared leaves), traced
        once in the process (when `may_trace` and the graph's budget allows); None when it is
        not traced yet or was refused (remembered: the graph itself when the interpreter
        refuses it, else this bucket structure)."""
        cache = _functions
        with cache.lock:
            if key in cache.refused or key[0] in cache.refused:
                return None
            if key not in cache.compiled:
                if not may_trace or cache.traced.get(key[0], 0) >= MAX_TRACES:
                    return None  # not now, or enough structures of this graph: per client
                cache.traced[key[0]] = cache.traced.get(key[0], 0) + 1
                self.traces += 1
                try:
                    cache.compiled[key] = build()
                except tf_functional.Unsupported as e:
                    cache.refused.update((key, key[0]))
                    _LOG.info("vectorised training: a client graph trains client by client: %s",
                              e)
                    return None
                except Exception as e:  # noqa: BLE001 - pfor/tracing refuse in several ways
                    cache.refused.add(key)
                    first_line = (str(e).strip().splitlines() or [""])[0][:200]
                    _LOG.info("vectorised training: a bucket trains client by client: %s: %s",
                              type(e).__name__, first_line)
                    return None
            return cache.compiled[key]

    def _interpreter(self, graph_function) -> tf_functional.Interpreter:
        digest, prepared = self._graph(graph_function)
        interpreter = _functions.interpreters.get(digest)
        if interpreter is None:
            interpreter = _functions.interpreters[digest] = tf_functional.Interpreter(prepared)
        return interpreter

    def _build(self, graph_function, first: _Client, shared: tuple):
        tf = tf_runtime.tensorflow()
        tf_batch.quiet_pfor()
        interpreter = self._interpreter(graph_function)
        results = [name for _, name in graph_function.result_leaves]
        stacked_specs = [tf.TensorSpec([None] + list(a.shape), tf.as_dtype(a.dtype))
                         for a, s in zip(first.tensors, shared) if not s]
        for elements in first.sequences:
            stacked_specs += [tf.TensorSpec([None] + _batch_free(c.shape), tf.as_dtype(c.dtype))
                              for element in elements for c in element]
        shared_specs = [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype))
                        for a, s in zip(first.tensors, shared) if s]
        shapes = [[len(element) for element in elements] for elements in first.sequences]

        def one_client(slices, constants):
            slices, constants = iter(slices), iter(constants)
            tensors = [next(constants) if s else next(slices) for s in shared]
            elements = [[tuple(next(slices) for _ in range(width)) for width in widths]
                        for widths in shapes]
            return interpreter.run(client_feeds(graph_function, tensors, elements), results)

        @tf.function(input_signature=[stacked_specs, shared_specs], autograph=False)
        def bucket(stacked, constants):
            return tf.vectorized_map(lambda xs: one_client(xs, constants), stacked,
                                     fallback_to_while_loop=True)

        return bucket.get_concrete_function()


def _flat_parts(executor: base.SyncExecutor, value: base.ExecValue, type_spec,
                seen: dict) -> list[list]:
    """`tf_function.flatten(executor.materialize(value), type_spec)` in parts (their
    concatenation), without building the argument struct of every client: a struct of executor
    values is walked, each other value is materialized and flattened once per map (`seen`, keyed
    by id: the map's arguments keep the values alive) into one part, the same list object
    wherever the value recurs. Every client of a map holds the same broadcast model value."""
    rep = value.rep
    if isinstance(rep, base.StructRep) and isinstance(executor, base.StructLayer):
        return [part for (_, member), (_, element) in zip(type_spec.items(), rep.elements)
                for part in _flat_parts(executor, element, member, seen)]
    hit = seen.get(id(value))
    if hit is not None and hit[0] is value and hit[1] is type_spec:
        return [hit[2]]
    leaves = tf_function.flatten(executor.materialize(value), type_spec, seen)
    seen[id(value)] = (value, type_spec, leaves)
    return [leaves]


def _tensor_part(kinds: list, leaves: list) -> Optional[tuple[list, list]]:
    """(arrays, their (dtype, shape) keys) when every leaf is a tensor parameter fed a numeric
    array, else None."""
    arrays = []
    for (kind, _), leaf in zip(kinds, leaves):
        if kind != "tensor" or not isinstance(leaf, (np.ndarray, np.generic)) or \
                leaf.dtype.kind in "OSU":
            return None
        arrays.append(np.asarray(leaf))
    return arrays, [(a.dtype.str, a.shape) for a in arrays]


def client_feeds(graph_function, tensors: list, elements: list) -> dict:
    """The interpreter's feeds for one client of `graph_function`: its tensor parameters in
    binding order (`tensors`), each sequence parameter as its elements (`elements`: per sequence
    parameter, per element, its component tensors in tf.nest order), TFF's session token."""
    tf = tf_runtime.tensorflow()
    tensors, elements = iter(tensors), iter(elements)
    feeds = {}
    for kind, name in graph_function.parameter_leaves:
        node, _, output = name.partition(":")
        if output not in ("", "0"):
            raise tf_functional.Unsupported(f"parameter {name} is not a placeholder")
        feeds[node] = (next(tensors) if kind == "tensor"
                                     else tf_functional.Elements(list(next(elements))))
    token = graph_function.session_token_name
    if token:
        feeds[token.split(":")[0]] = tf.constant("tffexec-vectorised")
    return feeds


def _calls(bucket: list[int], first: _Client) -> list[list[int]]:
    """A bucket's clients in calls of at most `CALL_BYTES` of stacked inputs (at least
    `MIN_BUCKET` clients in every call but the last)."""
    per_client = sum(a.nbytes for a in first.tensors) + sum(
        c.nbytes for elements in first.sequences for element in elements for c in element)
    size = max(MIN_BUCKET, CALL_BYTES // max(1, per_client))
    return [bucket[start:start + size] for start in range(0, len(bucket), size)]


def _batch_free(shape: tuple) -> list:
    """An element component's shape with its first (batch) dimension unknown."""
    return [None] + list(shape[1:]) if shape else []


def _traced_structure(key: tuple) -> tuple:
    """What a bucket function is traced for: the bucket key without the elements' batch sizes,
    so that buckets that differ only there (a short last batch of another size) share one trace
    (one function per number of elements, not per dataset size)."""
    tensors, sequence_shapes = key
    return tensors, tuple(
        tuple(tuple((dtype, tuple(_batch_free(shape))) for dtype, shape in element)
              for element in elements) for elements in sequence_shapes)


def _missing_runs(done: list[bool]) -> list[tuple[int, int]]:
    """(start, stop) of every run of clients not done, in order."""
    runs, start = [], None
    for index, flag in enumerate(done + [True]):
        if not flag and start is None:
            start = index
        elif flag and start is not None:
            runs.append((start, index))
            start = None
    return runs


_graph_entries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_graph_lock = threading.Lock()


def graph_entry(graph_function) -> tuple:
    """(digest, prepared GraphDef) of a graph function, made once per graph function in the
    process: a prepared GraphDef's library names may be unique to it, so every user of the
    bucket functions (each stack's `VectorisedTraining`, compiled rounds) must key them by
    the same one."""
    with _graph_lock:
        entry = _graph_entries.get(graph_function)
        if entry is None:
            prepared = graph_function.prepared_graph_def()
            entry = _graph_entries[graph_function] = (_digest(prepared), prepared)
        return entry


def graph_digest(graph_function) -> bytes:
    """The content digest bucket functions of `graph_function` are kept under (`_digest`)."""
    return graph_entry(graph_function)[0]


def traced_bucket(digest: bytes, key: tuple, shared: tuple):
    """The bucket function this process traced for a graph (`graph_digest`), a bucket key (as
    `_Client.key`: per tensor parameter (dtype str, per-client shape), per sequence parameter
    per element per component the same) and which tensor parameters all clients share; None
    when none was traced. It takes ([non-shared tensors stacked over clients, then every
    element component stacked], [shared tensors]) and returns the result leaves stacked."""
    with _functions.lock:
        return _functions.compiled.get((digest, _traced_structure(key), shared))

