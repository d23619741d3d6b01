"""federated-language types from their protos, converted once per distinct proto.

Why: one intrinsic's type appears several times in an AST (the intrinsic node, the call's
function, often the enclosing lambda), and the static checks read each of them; federated-
language's `Type.from_proto` costs time that grows faster than the type's width. Converting each
distinct serialized type once keeps `validate` from paying it three or four times.
"""
from __future__ import annotations

import functools
from typing import Any

from federated_language.proto import computation_pb2


def type_of(proto: computation_pb2.Type) -> Any:
    """The `federated_language.Type` of `proto` (raises what `Type.from_proto` raises)."""
    return _from_bytes(proto.SerializeToString(deterministic=True))


@functools.lru_cache(maxsize=256)
def _from_bytes(data: bytes) -> Any:
    from federated_language.types import computation_types  # noqa: PLC0415 - numpy, ml_dtypes

    return computation_types.Type.from_proto(computation_pb2.Type.FromString(data))
