"""Which per-client functions must run one client after another, in client order.

Client threads (`client_work.ThreadedClientWork`) run a map's clients side by side. That is only
invisible when each client's result depends on its own argument alone. Two kinds of graph break
this, and their maps run in client order on the calling thread instead:

- a stateful random op (`RandomUniform`, `TruncatedNormal`, `Multinomial`, `StatefulUniform`,
  `RandomShuffle`, ...; `tf_loops.is_random_op`). An op without a seed in the graph continues ONE
  stream across the calls of its shared instance (seeded by `--seed`), so which client draws which
  values would depend on thread scheduling; with threads `--seed` would not reproduce a run;
- an op whose effect is seen outside the result in call order (`Print`, `PrintV2`: lines on
  standard error would interleave).

Everything else in a graph starts fresh on every call (resources are per call, datasets, shuffled
ones included, are rebuilt per call: see `tf_function`), so its clients may run in any order.

A map's function may be a `tensorflow` computation or a lambda that calls some (directly, through
the names it captures, or through sequence intrinsics): `reason` looks through all of them. Each
graph's ops are walked once per process, on the GraphDef its `GraphFunction` parsed (nothing is
parsed twice).
"""
from __future__ import annotations

import threading
import weakref
from typing import Iterable, Optional

from tffexec import errors
from tffexec.checks import ast_walk
from tffexec.executors import base
from tffexec.executors import reference_resolving_executor as rre
from tffexec.executors import tensorflow_executor
from tffexec.executors import tf_call_config
from tffexec.executors import tf_loops

#: Ops whose every call shows outside the result, in call order.
ORDERED_EFFECT_OPS = frozenset({"Print", "PrintV2"})
#: Captured values are followed at most this deep (structs of closures of structs ...).
_MAX_DEPTH = 64

_lock = threading.Lock()
# GraphFunction -> reason; a weak key: a graph's answer lives as long as its function.
_by_function: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
# id(lambda proto) -> (proto, reason of the `tensorflow` nodes inside it, its free names); the
# proto is kept so that its id is not reused.
_by_lambda: dict[int, tuple[object, Optional[str], list[str]]] = {}
_LAMBDA_CACHE_LIMIT = 4096


def ops_reason(ops: Iterable[str]) -> Optional[str]:
    """The first of `ops` (a graph's op types, library functions included) that makes the
    graph's calls depend on their order, or None."""
    from tensorflow.python.framework import op_def_registry  # noqa: PLC0415 - TF loads lazily

    for op in ops:
        if op in ORDERED_EFFECT_OPS:
            return op
        op_def = op_def_registry.get(op)
        if op_def is not None and tf_loops.is_random_op(op, op_def.is_stateful):
            return op
    return None


def reason(function: base.ExecValue) -> Optional[str]:
    """Why calls of `function` must run in client order (e.g. "a RandomUniform op"), or None
    when its clients may run on several threads."""
    return _value_reason(function, 0, {})


def _value_reason(value, depth: int, seen: dict) -> Optional[str]:
    """`seen` holds the values looked at (by id; kept alive so that no id is reused)."""
    if depth > _MAX_DEPTH:
        return "values nested deeper than tffexec looks"  # conservative: in order
    while isinstance(value, base.ExecValue):
        if id(value) in seen:
            return None
        seen[id(value)] = value
        rep = value.rep
        if isinstance(rep, tensorflow_executor.LeafFunction):
            return _function_reason(rep.graph_function)
        if isinstance(rep, rre.Closure):
            return _closure_reason(value.owner, rep.comp, rep.scope, depth, seen)
        if isinstance(rep, base.ClosureSpec):
            return _spec_reason(value.owner, rep, depth, seen)
        if isinstance(rep, base.StructRep):
            return _first(_value_reason(v, depth + 1, seen) for _, v in rep.elements)
        value = rep
    return None


def _first(reasons) -> Optional[str]:
    return next((r for r in reasons if r is not None), None)


def _function_reason(graph_function) -> Optional[str]:
    with _lock:
        if graph_function in _by_function:
            return _by_function[graph_function]
    op = ops_reason(node.op for node in tf_call_config.graph_nodes(graph_function.graph_def))
    found = None if op is None else f"a {op} op"
    with _lock:
        _by_function[graph_function] = found
    return found


def _closure_reason(owner, comp, scope: Optional[rre.Scope], depth: int,
                   seen: dict) -> Optional[str]:
    own, free = _lambda_reason(owner, comp, depth, seen)
    if own is not None or scope is None:
        return own
    values = []
    for name in free:
        try:
            values.append(scope.lookup(name))
        except errors.TffexecError:  # an unbound name fails when the function is called
            continue
    return _first(_value_reason(v, depth + 1, seen) for v in values)


def _spec_reason(owner, spec: base.ClosureSpec, depth: int, seen: dict) -> Optional[str]:
    own, _ = _lambda_reason(owner, spec.comp, depth, seen)
    if own is not None:
        return own
    return _first(_value_reason(v, depth + 1, seen) for v in spec.captured.values())


def _lambda_reason(owner, comp, depth: int, seen: dict) -> tuple[Optional[str], list[str]]:
    """The reason of the `tensorflow` computations written inside `comp`, and the names free in
    it (both cached per proto).

    Each is embedded through `owner` (the executor that holds the lambda), as the lambda's call
    will embed it: the graph is parsed, checked and imported once, by the leaf executor, and its
    `GraphFunction` answers. A graph that cannot be embedded makes the map run in client order,
    where its call reports the error and names the client.
    """
    hit = _by_lambda.get(id(comp))
    if hit is not None and hit[0] is comp:
        return hit[1], hit[2]
    found = None
    for node in ast_walk.walk(comp):
        if node.kind != "tensorflow":
            continue
        try:
            found = _value_reason(owner.value(node.comp), depth + 1, seen)
        except errors.TffexecError:
            return "a graph that cannot run", []  # not cached: the call reports it
        if found is not None:
            break
    with _lock:
        if len(_by_lambda) >= _LAMBDA_CACHE_LIMIT:
            _by_lambda.clear()
        free = rre.free_names(comp)
        _by_lambda[id(comp)] = (comp, found, free)
    return found, free

