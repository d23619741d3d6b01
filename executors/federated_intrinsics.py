"""One small function per federated intrinsic, and the table the federating executor dispatches on.

Each handler takes the federating executor, the call's argument (a value of that executor; a
positional struct for multi-parameter intrinsics) and the intrinsic's concrete function type, and
returns the result. Semantics follow TFF's runtimes (tff-runtime-facts.md §4); where no runtime
defines them: secure sums require every client value in [0, bound], secure_modular_sum is the sum
modulo the modulus, sums over zero clients are zeros, means NaN, min/max the dtype's identity.
"""
from __future__ import annotations

from typing import Callable

import federated_language
import numpy as np

from tffexec import errors
from tffexec.executors import base
from tffexec.executors import batch as batch_lib
from tffexec.executors import numeric

Handler = Callable[..., base.ExecValue]
INTRINSICS: dict[str, Handler] = {}


def intrinsic(*uris: str):
    def register(fn: Handler) -> Handler:
        for uri in uris:
            INTRINSICS[uri] = fn
        return fn

    return register


def _args(ex, argument: base.ExecValue, count: int) -> list[base.ExecValue]:
    return [ex.selection(argument, i) for i in range(count)]


def _result_member(type_spec):
    return type_spec.result.member


# -- placement ---------------------------------------------------------------------------------
@intrinsic("federated_value_at_server", "federated_value_at_clients")
def value_at(ex, argument, type_spec):
    return ex.placed([ex.to_child(argument)], type_spec.result)


@intrinsic("federated_eval_at_server")
def eval_at_server(ex, argument, type_spec):
    return ex.placed([ex.child.call(ex.to_child(argument))], type_spec.result)


@intrinsic("federated_eval_at_clients")
def eval_at_clients(ex, argument, type_spec):
    fn = ex.to_child(argument)
    if ex.batching and ex.num_clients:
        # A stateless graph gives every client the same value: evaluated once, shared. Graphs
        # with random or other stateful ops are not batchable and run once per client.
        batch = ex.client_work.map_batched(
            fn, batch_lib.Batch(federated_language.StructType([]), ex.num_clients, [], []),
            type_spec.result.member, intrinsic="federated_eval_at_clients")
        if batch is not None:
            return ex.placed_batch(batch, type_spec.result)
    members = ex.map_clients(ex.to_child(argument), [None] * ex.num_clients,
                             "federated_eval_at_clients")
    return ex.placed(members, type_spec.result)


@intrinsic("federated_broadcast")
def broadcast(ex, argument, type_spec):
    # One member shared by all clients: the server value reaches the clients' side once.
    return ex.placed(list(argument.rep.members), type_spec.result)


# -- maps ----------------------------------------------------------------------------------------
def map_(uri: str):
    def handler(ex, argument, type_spec):
        fn, data = _args(ex, argument, 2)
        fn = ex.to_child(fn)
        result_type = type_spec.result
        if uri == "federated_apply":  # one server value: no client work
            members = [ex.child.call(fn, m) for m in data.rep.members]
        elif data.rep.all_equal and result_type.all_equal:
            members = ex.map_clients(fn, data.rep.members, uri)
        else:
            batch = ex.batch_of(data)
            if batch is not None:
                result = ex.client_work.map_batched(fn, batch, result_type.member, intrinsic=uri)
                if result is not None:
                    return ex.placed_batch(result, result_type)
            members = ex.map_clients(fn, ex.members(data), uri)
        return ex.placed(members, result_type)

    return handler


for _uri in ("federated_map", "federated_map_all_equal", "federated_apply"):
    INTRINSICS[_uri] = map_(_uri)


# -- zips ----------------------------------------------------------------------------------------
def _zip_member(ex, value: base.ExecValue, index: int) -> base.ExecValue:
    rep = value.rep
    if isinstance(rep, base.ExecValue):
        raise errors.ComputationError(
            f"federated_zip expects federated values, found {value.type_signature}")
    if hasattr(rep, "elements"):
        return ex.child.struct([(n, _zip_member(ex, v, index)) for n, v in rep.elements])
    members = ex.members(value)
    return members[index]


@intrinsic("federated_zip_at_clients")
def zip_at_clients(ex, argument, type_spec):
    batch = ex.batch_of(argument) if ex.num_clients else None
    if batch is not None:  # columns side by side: no per-client structs
        return ex.placed_batch(batch_lib.Batch(type_spec.result.member, batch.count, batch.leaves,
                                               batch.stacked), type_spec.result)
    members = [_zip_member(ex, argument, i) for i in range(ex.num_clients)]
    return ex.placed(members, type_spec.result)


@intrinsic("federated_zip_at_server")
def zip_at_server(ex, argument, type_spec):
    return ex.placed([_zip_member(ex, argument, 0)], type_spec.result)


# -- aggregations --------------------------------------------------------------------------------
def _server(ex, python_value, type_spec) -> base.ExecValue:
    member_type = _result_member(type_spec)
    return ex.placed([ex.embed(python_value, member_type)], type_spec.result)


def _reduction(per_client: Callable, batched: Callable) -> Handler:
    """A handler reducing CLIENTS values: along the client axis of a batch, else per client."""

    def handler(ex, argument, type_spec):
        member_type = _result_member(type_spec)
        batch = ex.batch_of(argument)
        if batch is not None:
            return _server(ex, batched(batch, member_type), type_spec)
        return _server(ex, per_client(ex.materialize_members(argument), member_type), type_spec)

    return handler


INTRINSICS["federated_sum"] = _reduction(numeric.sum_values, batch_lib.sum_)
INTRINSICS["federated_mean"] = _reduction(numeric.mean_values, batch_lib.mean)
INTRINSICS["federated_min"] = _reduction(numeric.min_values, batch_lib.minimum)
INTRINSICS["federated_max"] = _reduction(numeric.max_values, batch_lib.maximum)


@intrinsic("federated_weighted_mean")
def weighted_mean(ex, argument, type_spec):
    values, weights = _args(ex, argument, 2)
    weight_type = type_spec.parameter[1].member
    value_batch, weight_batch = ex.batch_of(values), ex.batch_of(weights)
    if value_batch is not None and weight_batch is not None:
        result = batch_lib.weighted_mean(value_batch, weight_batch, _result_member(type_spec),
                                         weight_type)
        return _server(ex, result, type_spec)
    result = numeric.weighted_mean_values(
        ex.materialize_members(values), ex.materialize_members(weights), _result_member(type_spec),
        weight_type)
    return _server(ex, result, type_spec)


def _secure(ex, argument, type_spec, *, intrinsic_name: str, bound_of: Callable):
    values, bound = _args(ex, argument, 2)
    bound_type = bound.type_signature
    bound_value = bound_of(ex.child.materialize(ex.to_child(bound)), bound_type)
    member_type = _result_member(type_spec)
    batch = ex.batch_of(values)
    if batch is not None:
        batch_lib.check_bounds(batch, bound_value, member_type, bound_type,
                               intrinsic=intrinsic_name, first_client=ex.first_client)
        return _server(ex, batch_lib.sum_(batch, member_type), type_spec)
    client_values = ex.materialize_members(values)
    numeric.check_bounds(client_values, bound_value, member_type, bound_type,
                         intrinsic=intrinsic_name, first_client=ex.first_client)
    return _server(ex, numeric.sum_values(client_values, member_type), type_spec)


@intrinsic("federated_secure_sum")
def secure_sum(ex, argument, type_spec):
    return _secure(ex, argument, type_spec, intrinsic_name="federated_secure_sum",
                   bound_of=lambda b, t: b)


@intrinsic("federated_secure_sum_bitwidth")
def secure_sum_bitwidth(ex, argument, type_spec):
    def bound_of(bitwidth, bitwidth_type):
        def leaf(t, bits):
            bits = np.asarray(bits)
            if np.any(bits > 62) or np.any(bits < 0):
                raise errors.ExecutionError(
                    f"federated_secure_sum_bitwidth: bitwidth must be in [0, 62], got {bits}")
            return np.asarray(2 ** bits.astype(np.int64) - 1, dtype=np.int64)

        if isinstance(bitwidth_type, federated_language.StructType):
            return numeric.map_structure(leaf, bitwidth_type, bitwidth)
        return leaf(bitwidth_type, bitwidth)

    return _secure(ex, argument, type_spec, intrinsic_name="federated_secure_sum_bitwidth",
                   bound_of=bound_of)


@intrinsic("federated_secure_modular_sum")
def secure_modular_sum(ex, argument, type_spec):
    values, modulus = _args(ex, argument, 2)
    member_type = _result_member(type_spec)
    result = numeric.modular_sum(ex.materialize_members(values),
                                 ex.child.materialize(ex.to_child(modulus)), member_type,
                                 modulus.type_signature)
    return _server(ex, result, type_spec)


@intrinsic("federated_aggregate")
def aggregate(ex, argument, type_spec):
    """zero, accumulate, merge, report: a left fold of accumulate over clients in client order.

    On the local stack `merge` is never called (as in TFF's local runtime); the threaded stack
    folds contiguous chunks of clients in parallel and merges them in order, and the composing
    stack merges the partial results of its children.
    """
    values, zero, accumulate, merge, report = _args(ex, argument, 5)
    batch = ex.batch_of(values)
    if batch is not None:
        zero_value = ex.child.materialize(ex.to_child(zero))
        zero_leaves = batch_lib.leaves_of(zero_value, zero.type_signature)
        if zero_leaves is not None:
            folded = ex.client_work.fold_batched(zero_leaves, ex.to_child(accumulate), batch,
                                                 intrinsic="federated_aggregate")
            if folded is not None:
                accumulator = ex.embed(batch_lib.pack(folded, zero.type_signature),
                                       zero.type_signature)
                result = ex.child.call(ex.to_child(report), accumulator)
                return ex.placed([result], type_spec.result)
    accumulator = ex.fold_clients(ex.to_child(zero), ex.to_child(accumulate), ex.to_child(merge),
                                  ex.members(values), "federated_aggregate")
    result = ex.child.call(ex.to_child(report), accumulator)
    return ex.placed([result], type_spec.result)


@intrinsic("federated_select", "federated_secure_select")
def select(ex, argument, type_spec):
    """For each client, the sequence of select_fn(server_value, key) over its keys, in order."""
    keys, _max_key, server_value, select_fn = _args(ex, argument, 4)
    from tffexec.formats import sequences  # noqa: PLC0415

    select_fn = ex.to_child(select_fn)
    server_member = ex.members(server_value)[0]
    result_member_type = type_spec.result.member
    element_type = result_member_type.element
    selected: dict[int, object] = {}

    def element(key: int):
        if key not in selected:
            key_value = ex.embed(np.asarray(key, dtype=np.int32),
                                 federated_language.TensorType(np.int32))
            out = ex.child.call(select_fn, ex.child.struct([(None, server_member), (None, key_value)]))
            selected[key] = ex.child.materialize(out)
        return selected[key]

    members = []
    for client, client_keys in enumerate(ex.materialize_members(keys)):
        client_keys = np.asarray(client_keys)
        if client_keys.ndim != 1:
            raise errors.ExecutionError(
                f"federated_select: client {client}'s keys must be a rank-1 int32 tensor, "
                f"found shape {client_keys.shape}")
        elements = [element(int(k)) for k in client_keys]
        members.append(ex.embed(sequences.SequenceValue(element_type, elements=elements),
                                result_member_type))
    return ex.placed(members, type_spec.result)


# -- generic operators on placed values ----------------------------------------------------------
def _generic(op):
    def handler(ex, argument, type_spec):
        left, right = _args(ex, argument, 2)
        result_type = type_spec.result
        if isinstance(result_type, federated_language.FederatedType):
            lt, rt = left.type_signature.member, right.type_signature.member
            lefts = ex.materialize_members(left) if not left.type_signature.all_equal else \
                [ex.child.materialize(left.rep.members[0])] * _count(ex, result_type)
            rights = ex.materialize_members(right) if not right.type_signature.all_equal else \
                [ex.child.materialize(right.rep.members[0])] * _count(ex, result_type)
            members = [ex.embed(op(a, b, lt, rt, result_type.member), result_type.member)
                       for a, b in zip(lefts, rights)]
            return ex.placed(members[:1] if result_type.all_equal else members, result_type)
        a = ex.child.materialize(ex.to_child(left))
        b = ex.child.materialize(ex.to_child(right))
        value = op(a, b, left.type_signature, right.type_signature, result_type)
        return ex.unplaced(ex.embed(value, result_type))

    return handler


def _count(ex, federated_type) -> int:
    if federated_type.placement is federated_language.CLIENTS and not federated_type.all_equal:
        return ex.num_clients
    return 1


INTRINSICS["generic_plus"] = _generic(numeric.generic_plus)
INTRINSICS["generic_multiply"] = _generic(numeric.generic_multiply)
INTRINSICS["generic_divide"] = _generic(numeric.generic_divide)
