"""How each federated intrinsic is lowered into a compiled round (see `tf_round`).

One rule per intrinsic, registered beside it with `@lowers` (as `federated_intrinsics` registers
the stack's handlers): a rule `(tracer, argument, type_spec)` takes the round's tracer, the
symbolic argument (`round_values`) and the intrinsic's concrete type, and returns the symbolic
result. The semantics are the federating executor's: sums in client order in the member dtype,
numpy's casts for means (`executors/numeric.py`). An intrinsic with no rule raises `Unsupported`
and the round stays on the stack.
"""
from __future__ import annotations

from typing import Any, Callable

import federated_language as fl
import numpy as np
from federated_language.proto import computation_pb2

from tffexec import tf_runtime
from tffexec.executors import activity
from tffexec.executors import tf_vectorised
from tffexec.executors.round_values import (Bucketed, Leaf, Placed, Seq, Tup, Unsupported,
                                            binding_leaves, leaves_of, pack, rebuild,
                                            tensor_types, walk)

RULES: dict[str, Callable] = {}


def lowers(*uris: str):
    def register(fn):
        for uri in uris:
            RULES[uri] = fn
        return fn

    return register


def _pair(argument, count: int) -> list:
    if not isinstance(argument, Tup) or len(argument.items) != count:
        raise Unsupported("an intrinsic's argument is not a struct of its parameters")
    return [item for _, item in argument.items]


def _placed(value, clients: bool) -> Any:
    if not isinstance(value, Placed) or value.clients != clients:
        raise Unsupported("a federated value of another placement")
    return value.member


def _all_equal_at_clients(member) -> Placed:
    return Placed(True, rebuild(member, iter(Leaf(t, False) for t in leaves_of(member, []))))


@lowers("federated_value_at_server")
def _value_at_server(tracer, argument, type_spec):
    return Placed(False, argument)


@lowers("federated_value_at_clients")
def _value_at_clients(tracer, argument, type_spec):
    return _all_equal_at_clients(argument)


@lowers("federated_broadcast")
def _broadcast(tracer, argument, type_spec):
    return _all_equal_at_clients(_placed(argument, clients=False))


@lowers("federated_eval_at_server")
def _eval_at_server(tracer, argument, type_spec):
    return Placed(False, tracer.call(argument, None))


@lowers("federated_apply")
def _apply(tracer, argument, type_spec):
    function, value = _pair(argument, 2)
    return Placed(False, tracer.call(function, _placed(value, clients=False)))


@lowers("federated_zip_at_server")
def _zip_at_server(tracer, argument, type_spec):
    return Placed(False, _zip(argument, clients=False))


@lowers("federated_zip_at_clients")
def _zip_at_clients(tracer, argument, type_spec):
    return Placed(True, _zip(argument, clients=True))


def _zip(value, clients: bool):
    zipped = _zip_members(value, clients)
    return _distribute(zipped) if clients else zipped


def _zip_members(value, clients: bool):
    if isinstance(value, Tup):
        return Tup([(name, _zip_members(item, clients)) for name, item in value.items])
    return _placed(value, clients)


def _distribute(nest):
    """A zip of CLIENTS members one of which is `Bucketed`: one zipped member per bucket (the
    other members' stacked leaves gathered at the bucket's clients)."""
    found = [node for node in walk(nest) if isinstance(node, Bucketed)]
    if not found:
        return nest
    if any(node is not found[0] for node in found):
        raise Unsupported("a zip of clients bucketed in two ways")
    tf = tf_runtime.tensorflow()

    def member_of(node, indices, member):
        if node is found[0]:
            return member
        if isinstance(node, Tup):
            return Tup([(name, member_of(item, indices, member)) for name, item in node.items])
        if isinstance(node, Seq):
            return Seq([tuple(member_of(c, indices, member) for c in element)
                        for element in node.items])
        if isinstance(node, Leaf) and node.stacked:
            return Leaf(tf.gather(node.tensor, indices), True)
        return node

    return Bucketed([(indices, member_of(nest, indices, member))
                     for indices, member in found[0].buckets])


@lowers("federated_map", "federated_map_all_equal")
def _map(tracer, argument, type_spec):
    function, value = _pair(argument, 2)
    member = _placed(value, clients=True)
    if isinstance(function, computation_pb2.Computation):
        graph_function = tracer.leaf.leaf_function(
            function, fl.Type.from_proto(function.type)).graph_function
        path = (activity.VECTORISED if any(kind == "variant"
                                           for kind, _ in graph_function.parameter_leaves)
                else activity.BATCHED)
        tracer.paths[path] += tracer.num_clients
    if not isinstance(member, Bucketed):
        # Traced inline with the clients' static shapes: 15% faster a round than calling the
        # stack's bucket function (traced with unknown client and batch sizes) for ~2 s more
        # trace once (fedavg_mlp_c100, interleaved with the floor: 5.5 against 6.5 ms).
        return Placed(True, _map_member(tracer, function, member))
    # Each bucket vectorised on its own; the results stitched back in client order.
    tf = tf_runtime.tensorflow()
    results = [(indices, _map_bucket(tracer, function, m)) for indices, m in member.buckets]
    flat = [leaves_of(result, []) for _, result in results]
    if any(len(f) != len(flat[0]) for f in flat):
        raise Unsupported("buckets whose results differ in structure")
    stitched = []
    for position in range(len(flat[0])):
        parts = [leaf.tensor if leaf.stacked else
                 tf.repeat(leaf.tensor[None], tf.shape(indices)[0], axis=0)
                 for (indices, _), leaf in zip(results, (f[position] for f in flat))]
        stitched.append(Leaf(tf.dynamic_stitch([i for i, _ in results], parts), True))
    return Placed(True, rebuild(results[0][1], iter(stitched)))


def _component_flags(member) -> list:
    """Per leaf of `member` (in `leaves_of` order), whether it is a dataset element component."""
    if isinstance(member, Tup):
        return [flag for _, item in member.items for flag in _component_flags(item)]
    if isinstance(member, Seq):
        return [True for element in member.items for _ in element]
    return [False]


def _map_bucket(tracer, function, member):
    """`_map_member` for one bucket of a `Bucketed` value. A `tensorflow` computation's bucket
    runs as a function traced once per structure up to its clients' count and their datasets'
    batch sizes (`tracer.bucket_functions`, kept by the stack across rounds), so 27 buckets of
    seven numbers of batches trace seven vectorised functions, not 27."""
    if not isinstance(function, computation_pb2.Computation):
        return _map_member(tracer, function, member)  # a lambda: traced inline per bucket
    reused = _stack_bucket(tracer, function, member)
    if reused is not None:
        return reused
    tf = tf_runtime.tensorflow()
    leaves = leaves_of(member, [])
    specs = []
    for leaf, component in zip(leaves, _component_flags(member)):
        shape = leaf.tensor.shape.as_list()
        if leaf.stacked:
            shape = [None] + ([None] + shape[2:] if component and len(shape) > 1 else shape[1:])
        specs.append(tf.TensorSpec(shape, leaf.tensor.dtype))
    skeleton = repr(rebuild(member, iter(range(len(leaves)))))
    key = (id(function), skeleton,
           tuple((leaf.stacked, str(spec)) for leaf, spec in zip(leaves, specs)))
    entry = tracer.bucket_functions.get(key)
    if entry is None or entry[0] is not function:
        holder: dict = {}

        def bucket(stacked, shared):
            stacked, shared = iter(stacked), iter(shared)
            inner = rebuild(member, iter(Leaf(next(stacked), True) if leaf.stacked
                                         else Leaf(next(shared), False) for leaf in leaves))
            result = _map_member(tracer, function, inner)
            flat = leaves_of(result, [])
            holder["result"], holder["stacked"] = result, [leaf.stacked for leaf in flat]
            return [tensor(tf, leaf.tensor) for leaf in flat]

        signature = [[spec for spec, leaf in zip(specs, leaves) if leaf.stacked],
                     [spec for spec, leaf in zip(specs, leaves) if not leaf.stacked]]
        concrete = tf.function(bucket, input_signature=signature,
                               autograph=False).get_concrete_function()
        entry = tracer.bucket_functions[key] = (function, concrete, holder)
    _, concrete, holder = entry
    outputs = concrete([leaf.tensor for leaf in leaves if leaf.stacked],
                       [leaf.tensor for leaf in leaves if not leaf.stacked])
    return rebuild(holder["result"], iter(Leaf(t, stacked)
                                         for t, stacked in zip(outputs, holder["stacked"])))


def _stack_bucket(tracer, function, member):
    """The bucket's results from the function the stack's vectorised training (`tf_vectorised`)
    already traced for this graph and structure, called inside the round: no second trace of
    the same vectorisation. None when the stack has none for it."""
    type_spec = fl.Type.from_proto(function.type)
    if type_spec.parameter is None:
        return None
    tensors, sequences = [], []
    for leaf in binding_leaves(member, type_spec.parameter, placed_leaves=True):
        (sequences if isinstance(leaf, Seq) else tensors).append(leaf)
    if not sequences or any(not c.stacked for s in sequences for e in s.items for c in e):
        return None

    def entry(leaf):
        shape = leaf.tensor.shape[1:] if leaf.stacked else leaf.tensor.shape
        if not shape.is_fully_defined():
            raise LookupError
        return np.dtype(leaf.tensor.dtype.as_numpy_dtype).str, tuple(shape.as_list())

    try:
        key = (tuple(entry(leaf) for leaf in tensors),
               tuple(tuple(tuple(entry(c) for c in element) for element in s.items)
                     for s in sequences))
    except LookupError:
        return None
    graph_function = tracer.leaf.leaf_function(function, type_spec).graph_function
    concrete = tf_vectorised.traced_bucket(tf_vectorised.graph_digest(graph_function), key,
                                           tuple(not leaf.stacked for leaf in tensors))
    if concrete is None:
        return None
    stacked = [leaf.tensor for leaf in tensors if leaf.stacked] + [
        c.tensor for s in sequences for element in s.items for c in element]
    outputs = concrete(stacked, [leaf.tensor for leaf in tensors if not leaf.stacked])
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return pack(iter(Leaf(t, True) for t in outputs), type_spec.result)


def _map_member(tracer, function, member):
    """`function` applied to every client's member: vectorised over the stacked leaves."""
    leaves = leaves_of(member, [])
    stacked = [leaf.tensor for leaf in leaves if leaf.stacked]
    if not stacked:  # equal for every client: computed once, deterministic (no random ops)
        plain = rebuild(member, iter(leaf.tensor for leaf in leaves))
        return _all_equal_at_clients(tracer.call(function, plain)).member
    tf = tf_runtime.tensorflow()
    template: dict = {}

    def one_client(slices):
        rows = iter(slices)
        plain = rebuild(member, iter(next(rows) if leaf.stacked else leaf.tensor
                                      for leaf in leaves))
        result = tracer.call(function, plain)
        template["result"] = result
        return [tensor(tf, t) for t in leaves_of(result, [])]

    outputs = tf.vectorized_map(one_client, stacked, fallback_to_while_loop=True)
    return rebuild(template["result"], iter(Leaf(t, True) for t in outputs))


def _in_order_sum(tf, column):
    """The clients' values added one after another (as `numeric.fold_leaves`)."""
    return tf.math.cumsum(column, axis=0)[-1]


def _stacked(tf, leaf: Leaf, clients: int):
    if leaf.stacked:
        return leaf.tensor
    return tf.tile(leaf.tensor[None], [clients] + [1] * leaf.tensor.shape.rank)


def _reduce(tracer, value, reduce_leaf: Callable) -> Placed:
    member = _placed(value, clients=True)
    tf = tf_runtime.tensorflow()
    return Placed(False, rebuild(member, iter(
        reduce_leaf(tf, _stacked(tf, leaf, tracer.num_clients))
        for leaf in leaves_of(member, []))))


@lowers("federated_sum")
def _sum(tracer, argument, type_spec):
    _check_numeric(type_spec.result.member, floats_only=False)
    return _reduce(tracer, argument, _in_order_sum)


@lowers("federated_mean")
def _mean(tracer, argument, type_spec):
    _check_numeric(type_spec.result.member, floats_only=True)
    count = tracer.num_clients
    return _reduce(tracer, argument,
                   lambda tf, c: _in_order_sum(tf, c) / tf.constant(count, c.dtype))


@lowers("federated_weighted_mean")
def _weighted_mean(tracer, argument, type_spec):
    values, weights = _pair(argument, 2)
    _check_numeric(type_spec.result.member, floats_only=True)
    weight_type = type_spec.parameter[1].member
    if not isinstance(weight_type, fl.TensorType) or weight_type.shape:
        raise Unsupported("weights that are not scalars")
    tf = tf_runtime.tensorflow()
    (weight,) = leaves_of(_placed(weights, clients=True), [])
    w = tf.cast(_stacked(tf, weight, tracer.num_clients), weight_type.dtype)
    total = _in_order_sum(tf, w)

    def leaf(tf, column):
        scale = tf.reshape(tf.cast(w, column.dtype), [-1] + [1] * (column.shape.rank - 1))
        return _in_order_sum(tf, column * scale) / tf.cast(total, column.dtype)

    return _reduce(tracer, values, leaf)


@lowers("federated_aggregate")
def _aggregate(tracer, argument, type_spec):
    """A left fold of `accumulate` over the clients in client order (a `tf.while_loop`), then
    `report`: as a flat stack, `merge` is never called."""
    values, zero, accumulate, _merge, report = _pair(argument, 5)
    member = _placed(values, clients=True)
    leaves = leaves_of(member, [])
    start = leaves_of(zero, [])
    if any(isinstance(item, Seq) for item in walk(zero)):
        raise Unsupported("an accumulator holding a sequence")
    tf = tf_runtime.tensorflow()
    start = [tensor(tf, t) for t in start]

    def step(index, *accumulator):
        value = rebuild(member, iter(leaf.tensor[index] if leaf.stacked else leaf.tensor
                                      for leaf in leaves))
        pair = Tup([(None, rebuild(zero, iter(accumulator))), (None, value)])
        result = tracer.call(accumulate, pair)
        flat = [tensor(tf, t) for t in leaves_of(result, [])]
        if len(flat) != len(start) or any(a.dtype != b.dtype for a, b in zip(flat, start)):
            raise Unsupported("an accumulate whose result does not fit the accumulator")
        return (index + 1, *flat)

    index = tf.constant(0, tf.int32)
    final = tf.while_loop(
        lambda i, *_: i < tracer.num_clients, step, (index, *start),
        shape_invariants=(index.shape, *(tf.TensorShape(None) for _ in start)))
    accumulator = rebuild(zero, iter(final[1:]))
    return Placed(False, tracer.call(report, accumulator))


def _check_numeric(member_type, floats_only: bool) -> None:
    for _, t in tensor_types(member_type):
        dtype = np.dtype(t.dtype)
        if dtype.kind not in ("fc" if floats_only else "fciu") or dtype.kind == "b":
            raise Unsupported(f"an aggregation of {t}")




def tensor(tf, value):
    """`value` as a tensor (constants from Python or numpy become constants of the trace)."""
    return value if tf.is_tensor(value) else tf.constant(value)
