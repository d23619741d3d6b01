"""Function-typed arguments: computations handed to a computation as (part of) its argument.

A parameter of function type receives a serialized `Computation` (a `Value.computation`). It
runs like the computation itself, so it gets the same checks before anything runs: one
`analysis.analyze` pass under the policy (its graphs' ops, node kinds, intrinsics and their
types, references), plus whether tffexec can call it where it is:

- only a function that is the *whole* argument is embedded as a callable: the stacks embed a
  struct argument element by element as values, so a computation inside a struct or placed at
  CLIENTS/SERVER would reach the call as data. Such an argument is refused with that reason,
  rather than with a run-time "not a function" for a value whose type is a function;
- a node that is a value (a struct, literal or placement) cannot be called whatever its
  declared type says.

`tffexec.preflight` runs `problems` for `run` (raising the first) and for `validate` (listing
them all), so the two agree.
"""
from __future__ import annotations


from typing import Any, Iterator

import federated_language as fl
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.checks import analysis
from tffexec.formats import types
from tffexec.formats.diagnostics import child, item

#: Root node kinds that make a value, never a function.
_VALUE_KINDS = frozenset({"struct", "literal", "placement"})


def computation_values(value: Any, type_spec, path: str = "arg"
                       ) -> Iterator[tuple[str, computation_pb2.Computation]]:
    """(path, computation) for every function-typed place of `value` holding a computation.

    `value` is in tffexec's representation (as `preflight` converts it): `Struct`s for structs,
    a list per client for `{T}@CLIENTS`, the member itself for all-equal and SERVER values.
    """
    if not types.contains(type_spec, fl.FunctionType):
        return  # nothing to find: a value holds computations only where its type says so
    pending = [(path, value, type_spec)]
    while pending:
        here, v, t = pending.pop()
        if isinstance(t, fl.FunctionType):
            if isinstance(v, computation_pb2.Computation):
                yield here, v
        elif isinstance(t, fl.StructType) and isinstance(v, structure.Struct):
            named = structure.to_elements(v)
            pending.extend((child(here, named[i][0], i), named[i][1], t[i])
                           for i in reversed(range(min(len(named), len(t)))))
        elif isinstance(t, fl.FederatedType):
            per_client = isinstance(v, (list, tuple)) and not t.all_equal
            members = [(item(here, i), m) for i, m in enumerate(v)] if per_client else [(here, v)]
            pending.extend((p, m, t.member) for p, m in reversed(members))


def problems(value: Any, type_spec, policy, path: str = "arg") -> list[analysis.Problem]:
    """Every problem of the computations in a function-typed argument, each at its place in the
    value (`arg.f`), the AST path inside it leading the message."""
    out: list[analysis.Problem] = []
    for here, comp in computation_values(value, type_spec, path):
        try:
            found_problems = analysis.analyze(comp, policy=policy).problems
        except errors.ComputationError as e:  # no type, or an unreadable one: nothing to call
            out.append(analysis.Problem(here, f"the computation is unusable: {e.message}"))
            continue
        if here != path:
            out.append(analysis.Problem(here, (
                f"a computation of type {analysis.type_string(comp.type)} inside the argument "
                "cannot be called: tffexec calls a function-typed argument only when it is the "
                "whole argument (pass the function itself, or define it inside COMP)")))
        kind = comp.WhichOneof("computation")
        if kind in _VALUE_KINDS:
            out.append(analysis.Problem(here, (
                f"a {kind} node cannot be called, though it is declared with the function type "
                f"{analysis.type_string(comp.type)}")))
        for found in found_problems:
            where = "" if found.path == analysis.ROOT_PATH else f"{found.path}: "
            out.append(analysis.Problem(here, where + found.message, refused=found.refused))
    return out
