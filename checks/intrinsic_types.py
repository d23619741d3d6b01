"""Is an intrinsic's declared type an instance of its definition?

An `intrinsic` node carries the concrete type it is used at (`federated_sum` at
`({int32}@CLIENTS -> int32@SERVER)`). Executors trust that type: they place results where it
says and pick handlers by it. A node declared at a type its definition does not admit (a
`federated_sum` at `(int32@SERVER -> int32@SERVER)`) would run to a wrong answer or fail deep in
an executor, so the static analysis refuses it, naming the AST path.

The definitions are federated-language's own `IntrinsicDef` type signatures (type variables
unified by its `check_concrete_instance_of`, the check TFF applies when it builds an intrinsic);
the few URIs tffexec supports that federated-language does not define
(`IntrinsicDef.in_federated_language` False in `tffexec.intrinsics`) have their signatures here,
in `_LOCAL_SIGNATURES`. `tests/test_static_agree.py` checks every registry URI has one.

Checking is cached per (URI, type): a computation reuses the same few intrinsic types, and the
types are converted once per distinct proto (`type_cache`).
"""
from __future__ import annotations

import functools
from typing import Any

from federated_language.proto import computation_pb2

from tffexec import intrinsics
from tffexec.checks import type_cache


def _local_signatures() -> dict[str, Any]:
    """Signatures of the registry's URIs that federated-language does not define."""
    from federated_language.types import computation_types as ct  # noqa: PLC0415
    from federated_language.types import placements  # noqa: PLC0415

    value, modulus = ct.AbstractType("V"), ct.AbstractType("M")
    return {
        # <{V}@CLIENTS, M> -> V@SERVER (tff-runtime-facts.md: TFF 0.87 mapreduce intrinsics)
        "federated_secure_modular_sum": ct.FunctionType(
            [ct.FederatedType(value, placements.CLIENTS), modulus],
            ct.FederatedType(value, placements.SERVER)),
    }


@functools.lru_cache(maxsize=None)
def definition(uri: str) -> Any:
    """The generic type signature `uri` is defined with, or None for a URI tffexec does not know."""
    from federated_language.compiler import intrinsic_defs  # noqa: PLC0415

    registered = intrinsics.INTRINSICS.get(uri)
    if registered is None:
        return None
    if not registered.in_federated_language:
        return _local_signatures().get(uri)
    found = intrinsic_defs.uri_to_intrinsic_def(uri)
    return None if found is None else found.type_signature


def mismatch(uri: str, declared: computation_pb2.Type) -> str | None:
    """Why `declared` is not a type `uri` can be used at, or None when it is (or when the URI or
    the type is unknown or unreadable: those are reported by their own checks)."""
    if declared.WhichOneof("type") is None or definition(uri) is None:
        return None
    try:
        compact = type_cache.compact_type_of(declared)
        if compact is not None and _mismatch(uri, compact) is None:
            return None  # wide structs replaced by stand-ins: passing here passes in full
        concrete = type_cache.type_of(declared)
    except Exception:  # noqa: BLE001 - an invalid type is reported where it is declared
        return None
    return _mismatch(uri, concrete)


@functools.lru_cache(maxsize=1024)
def _mismatch(uri: str, concrete: Any) -> str | None:
    from federated_language.types import type_analysis  # noqa: PLC0415

    generic = definition(uri)
    try:
        type_analysis.check_concrete_instance_of(concrete, generic)
    except TypeError as e:
        # federated-language's messages restate both full types first; keep the reason.
        reason = str(e).split(", but ", 1)[-1].rstrip(".")
        return (f"intrinsic {uri!r} is declared with type {concrete}, which its definition "
                f"{generic} does not admit: {reason}")
    return None
