"""One small function per federated intrinsic, each registered with its composing rule.

The federating executor dispatches on `INTRINSICS`, the composing executor on `COMPOSE`; both are
filled by the `@intrinsic` decorator from the same registration, so a handler cannot exist without
its composing rule, and both cover exactly the URIs `tffexec.intrinsics` lists as federated
(tests/test_intrinsic_registry.py). JAX keeps a primitive's rules beside it the same way.

A handler `(ex, uri, argument, type_spec)` takes the federating executor, the intrinsic's URI,
the call's argument (a value of that executor; a positional struct for multi-parameter
intrinsics) and the intrinsic's concrete function type, and returns the result.

A composing rule `(ex, uri, argument, type_spec)` does the same on a composing executor, whose
children are federating stacks holding contiguous blocks of the clients: `forward` hands the call
to every child and keeps the results there (work that stays with the clients); `combine(fn)` lets
every child aggregate its block and combines the partial results with `fn`, in client order;
other rules run on the server stack.

Semantics follow TFF's runtimes (tff-runtime-facts.md §4); where no runtime defines them: secure
sums require every client value in [0, bound], secure_modular_sum is the sum modulo the modulus,
sums over zero clients are zeros, means NaN, min/max the dtype's identity.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import federated_language
import numpy as np

from tffexec import errors
from tffexec import intrinsics
from tffexec.executors import base
from tffexec.executors import numeric

if TYPE_CHECKING:
    from tffexec.executors.composing_executor import ComposingExecutor
    from tffexec.executors.federating_executor import FederatingExecutor

Value = base.ExecValue
Handler = Callable[["FederatingExecutor", str, Optional[Value], Any], Value]
ComposeRule = Callable[["ComposingExecutor", str, Optional[Value], Any], Value]
INTRINSICS: dict[str, Handler] = {}
COMPOSE: dict[str, ComposeRule] = {}


def intrinsic(*uris: str, compose: ComposeRule) -> Callable[[Handler], Handler]:
    """Registers the decorated handler and its composing rule for `uris`."""

    def register(fn: Handler) -> Handler:
        for uri in uris:
            intrinsics.require(uri, intrinsics.FEDERATED, "a federated")
            INTRINSICS[uri] = fn
            COMPOSE[uri] = compose
        return fn

    return register


def _args(ex: FederatingExecutor | ComposingExecutor, argument: Value, count: int) -> list[Value]:
    return [ex.selection(argument, i) for i in range(count)]


def _result_member(type_spec):
    return type_spec.result.member


# -- composing rules shared by several intrinsics -------------------------------------------------
def forward(ex: ComposingExecutor, uri: str, argument: Value, type_spec) -> Value:
    """Work that stays with each child's clients: forwarded as is, results stay in the children."""
    return ex.clients(ex.forward(uri, type_spec, argument), type_spec.result)


def combine(fn: Callable) -> ComposeRule:
    """Every child aggregates its block; `fn(partials, member_type)` combines the partial results
    in client order."""

    def rule(ex: ComposingExecutor, uri: str, argument: Value, type_spec) -> Value:
        member_type = type_spec.result.member
        return ex.plain_at_server(fn(ex.partials(uri, type_spec, argument), member_type),
                                  type_spec.result)

    return rule


def _on_server(fn: Callable) -> ComposeRule:
    """A rule that runs `fn(ex, argument, type_spec)` on the server stack (no client work)."""

    def rule(ex: ComposingExecutor, uri: str, argument: Value, type_spec) -> Value:
        return fn(ex, argument, type_spec)

    return rule


# -- placement ---------------------------------------------------------------------------------
@intrinsic("federated_value_at_server",
           compose=_on_server(lambda ex, a, t: ex.at_server(ex.in_server(a), t.result)))
@intrinsic("federated_value_at_clients", compose=forward)
def value_at(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    return ex.placed([ex.to_child(argument)], type_spec.result)


@intrinsic("federated_eval_at_server",
           compose=_on_server(lambda ex, a, t: ex.at_server(ex.server.call(ex.in_server(a)),
                                                            t.result)))
def eval_at_server(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    return ex.placed([ex.child.call(ex.to_child(argument))], type_spec.result)


@intrinsic("federated_eval_at_clients", compose=forward)
def eval_at_clients(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    return ex.map_clients(ex.to_child(argument), None, type_spec.result, uri)


def _compose_broadcast(ex: ComposingExecutor, argument: Value, type_spec) -> Value:
    """The server value is materialised once and embedded once per child."""
    return ex.value(ex.server.materialize(argument.rep.member), type_spec.result)


@intrinsic("federated_broadcast", compose=_on_server(_compose_broadcast))
def broadcast(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    # One member shared by all clients: the server value reaches the clients' side once.
    return ex.placed(list(argument.rep.members), type_spec.result)


# -- maps ----------------------------------------------------------------------------------------
@intrinsic("federated_map", "federated_map_all_equal", compose=forward)
def map_(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    fn, data = _args(ex, argument, 2)
    return ex.map_clients(ex.to_child(fn), data, type_spec.result, uri)


def _compose_apply(ex: ComposingExecutor, argument: Value, type_spec) -> Value:
    fn, data = _args(ex, argument, 2)
    return ex.at_server(ex.server.call(ex.in_server(fn), data.rep.member), type_spec.result)


@intrinsic("federated_apply", compose=_on_server(_compose_apply))
def apply(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    # One server value: no client work.
    fn, data = _args(ex, argument, 2)
    fn = ex.to_child(fn)
    return ex.placed([ex.child.call(fn, m) for m in data.rep.members], type_spec.result)


# -- zips ----------------------------------------------------------------------------------------
@intrinsic("federated_zip_at_clients", compose=forward)
def zip_at_clients(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    return ex.zip_clients(argument, type_spec.result)


@intrinsic("federated_zip_at_server",
           compose=_on_server(lambda ex, a, t: ex.at_server(ex.server_member(a), t.result)))
def zip_at_server(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    return ex.placed([ex.zipped_member(argument, 0)], type_spec.result)


# -- aggregations --------------------------------------------------------------------------------
def _server(ex: FederatingExecutor, python_value: Any, type_spec) -> Value:
    member_type = _result_member(type_spec)
    return ex.placed([ex.embed(python_value, member_type)], type_spec.result)


def _reduction(reduction: numeric.Reduction) -> Handler:
    """A handler reducing one CLIENTS value to a SERVER value of the result's member type."""

    def handler(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
        member_type = _result_member(type_spec)
        return _server(ex, ex.reduce_clients(reduction, [argument], member_type), type_spec)

    return handler


federated_sum = intrinsic("federated_sum", compose=combine(numeric.sum_values))(
    _reduction(numeric.SUM))
federated_min = intrinsic("federated_min", compose=combine(numeric.min_values))(
    _reduction(numeric.MIN))
federated_max = intrinsic("federated_max", compose=combine(numeric.max_values))(
    _reduction(numeric.MAX))


def _compose_mean(ex: ComposingExecutor, argument: Value, type_spec) -> Value:
    """The children's partial sums, added in client order, divided by the client count."""
    member_type = type_spec.result.member
    total = numeric.sum_values(ex.partials("federated_sum", type_spec, argument), member_type)
    return ex.plain_at_server(numeric.mean_from_sum(total, member_type, ex.num_clients),
                              type_spec.result)


federated_mean = intrinsic("federated_mean", compose=_on_server(_compose_mean))(
    _reduction(numeric.MEAN))


def _compose_weighted_mean(ex: ComposingExecutor, argument: Value, type_spec) -> Value:
    """Each child's weighted mean, weighted by the child's summed weight."""
    _, weights = _args(ex, argument, 2)
    member_type = type_spec.result.member
    weight_type = weights.type_signature.member
    means = ex.partials("federated_weighted_mean", type_spec, argument)
    sum_type = federated_language.FunctionType(
        weights.type_signature, federated_language.FederatedType(weight_type,
                                                                 federated_language.SERVER))
    weight_totals = ex.partials("federated_sum", sum_type, weights)
    result = numeric.combine_weighted_means(means, weight_totals, member_type, weight_type)
    return ex.plain_at_server(result, type_spec.result)


@intrinsic("federated_weighted_mean", compose=_on_server(_compose_weighted_mean))
def weighted_mean(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    values, weights = _args(ex, argument, 2)
    weight_type = type_spec.parameter[1].member
    result = ex.reduce_clients(numeric.WEIGHTED_MEAN, [values, weights],
                               _result_member(type_spec), weight_type)
    return _server(ex, result, type_spec)


def _secure(ex: FederatingExecutor, uri: str, argument: Value, type_spec, *,
            bound_of: Callable) -> Value:
    values, bound = _args(ex, argument, 2)
    bound_type = bound.type_signature
    bound_value = bound_of(ex.child.materialize(ex.to_child(bound)), bound_type)
    reduction = numeric.bounded_sum(bound_value, bound_type, intrinsic=uri,
                                    first_client=ex.first_client)
    return _server(ex, ex.reduce_clients(reduction, [values], _result_member(type_spec)),
                   type_spec)


# Each child checks its clients' bounds; the partial sums are then added as plain sums.
@intrinsic("federated_secure_sum", compose=combine(numeric.sum_values))
def secure_sum(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    return _secure(ex, uri, argument, type_spec, bound_of=lambda b, t: b)


def _bitwidth_bound(bitwidth, bitwidth_type):
    def leaf(t, bits):
        bits = np.asarray(bits)
        if np.any(bits > 62) or np.any(bits < 0):
            raise errors.ExecutionError(
                f"federated_secure_sum_bitwidth: bitwidth must be in [0, 62], got {bits}")
        return np.asarray(2 ** bits.astype(np.int64) - 1, dtype=np.int64)

    if isinstance(bitwidth_type, federated_language.StructType):
        return numeric.map_structure(leaf, bitwidth_type, bitwidth)
    return leaf(bitwidth_type, bitwidth)


@intrinsic("federated_secure_sum_bitwidth", compose=combine(numeric.sum_values))
def secure_sum_bitwidth(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    return _secure(ex, uri, argument, type_spec, bound_of=_bitwidth_bound)


def _compose_secure_modular_sum(ex: ComposingExecutor, argument: Value, type_spec) -> Value:
    """The children's partial modular sums, summed and taken modulo the modulus once more."""
    _, modulus = _args(ex, argument, 2)
    member_type = type_spec.result.member
    partials = ex.partials("federated_secure_modular_sum", type_spec, argument)
    result = numeric.modular_sum(partials, ex.materialize(modulus), member_type,
                                 modulus.type_signature)
    return ex.plain_at_server(result, type_spec.result)


@intrinsic("federated_secure_modular_sum", compose=_on_server(_compose_secure_modular_sum))
def secure_modular_sum(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    values, modulus = _args(ex, argument, 2)
    result = ex.reduce_clients(numeric.MODULAR_SUM, [values],
                               ex.child.materialize(ex.to_child(modulus)),
                               _result_member(type_spec), modulus.type_signature)
    return _server(ex, result, type_spec)


def _compose_aggregate(ex: ComposingExecutor, argument: Value, type_spec) -> Value:
    """Each child aggregates its block with an identity report; the partial accumulators are
    merged in client order on the server side with the computation's `merge`, then reported."""
    values, zero, accumulate, merge, report = _args(ex, argument, 5)
    accumulator_type = zero.type_signature
    identity_type = federated_language.FunctionType(accumulator_type, accumulator_type)
    child_type = federated_language.FunctionType(
        federated_language.StructType([
            values.type_signature, accumulator_type, accumulate.type_signature,
            merge.type_signature, identity_type]),
        federated_language.FederatedType(accumulator_type, federated_language.SERVER))
    identity = ex.value(base.identity_proto(accumulator_type), identity_type)
    child_argument = ex.struct([(None, values), (None, zero), (None, accumulate), (None, merge),
                                (None, identity)])
    partials = ex.partials("federated_aggregate", child_type, child_argument)
    merge_fn = ex.in_server(merge)
    result = ex.server.value(partials[0], accumulator_type)
    for partial in partials[1:]:
        pair = ex.server.struct([(None, result),
                                 (None, ex.server.value(partial, accumulator_type))])
        result = ex.server.call(merge_fn, pair)
    return ex.at_server(ex.server.call(ex.in_server(report), result), type_spec.result)


@intrinsic("federated_aggregate", compose=_on_server(_compose_aggregate))
def aggregate(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    """zero, accumulate, merge, report: a left fold of accumulate over clients in client order.

    A flat stack (local, threaded, batched) never calls `merge`, as TFF's runtime; only the
    composing stack (`--max-fanout`, Ray shards) merges the partial results of its children
    (`_compose_aggregate`).
    """
    values, zero, accumulate, _merge, report = _args(ex, argument, 5)
    accumulator = ex.fold_clients(zero, accumulate, values, uri)
    result = ex.child.call(ex.to_child(report), accumulator)
    return ex.placed([result], type_spec.result)


# -- select ----------------------------------------------------------------------------------------
@intrinsic("federated_select", "federated_secure_select", compose=forward)
def select(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
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
            pair = ex.child.struct([(None, server_member), (None, key_value)])
            out = ex.child.call(select_fn, pair)
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
def _compose_generic(ex: ComposingExecutor, uri: str, argument: Value, type_spec) -> Value:
    """CLIENTS operands stay in the children; SERVER ones are combined here; unplaced ones go to
    the server stack (whose sequence executor implements generic operators)."""
    result_type = type_spec.result
    if isinstance(result_type, federated_language.FederatedType):
        if result_type.placement is federated_language.CLIENTS:
            return ex.clients(ex.forward(uri, type_spec, argument), result_type)
        left, right = _args(ex, argument, 2)
        value = numeric.GENERIC_OPS[uri](ex.materialize(left), ex.materialize(right),
                                  left.type_signature.member, right.type_signature.member,
                                  result_type.member)
        return ex.plain_at_server(value, result_type)
    function = ex.server.value(base.intrinsic_proto(uri, type_spec), type_spec)
    return ex.unplaced(ex.server.call(function, ex.in_server(argument)))


@intrinsic(*numeric.GENERIC_OPS, compose=_compose_generic)
def generic(ex: FederatingExecutor, uri: str, argument: Value, type_spec) -> Value:
    op = numeric.GENERIC_OPS[uri]
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


def _count(ex: FederatingExecutor, federated_type) -> int:
    if federated_type.placement is federated_language.CLIENTS and not federated_type.all_equal:
        return ex.num_clients
    return 1
