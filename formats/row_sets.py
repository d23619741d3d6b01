"""Results that TFF itself returns in a random order: compare their rows as a set.

TFF's IBLT heavy hitters (`examples/cases/iblt_heavy_hitters`) decode strings through a
`RandomShuffleQueueV2`, so the rows (`heavy_hitters[i]`, `heavy_hitters_counts[i]`, ...) come in
a different order on every call, and the result carries the round's wall-clock timestamp. The
case's `meta.json` says so in a `compare` object:

    {"kind": "rows_as_set", "row_members": [...], "exact_members": [...],
     "ignored_members": [...]}

`canonical` puts both values in one form before the ordinary comparison: the row members of the
result's struct (a struct at the server or a plain struct) sorted by row, and the ignored members
taken from the expected value. Any other value, or no `compare`, is left as it is.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from federated_language.common_libs import structure

ROWS_AS_SET = "rows_as_set"


def is_spec(spec: Any) -> bool:
    """Whether `spec` is a `compare` object this module understands."""
    return (isinstance(spec, dict) and spec.get("kind") == ROWS_AS_SET
            and all(isinstance(spec.get(key, []), list) for key in
                    ("row_members", "exact_members", "ignored_members")))


def _sorted_rows(members: dict[str, Any], names: list[str]) -> dict[str, Any]:
    columns = [np.asarray(members[name]) for name in names]
    if not columns or any(c.ndim != 1 or len(c) != len(columns[0]) for c in columns):
        return members
    keys = list(zip(*(c.tolist() for c in columns)))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return {**members, **{name: c[order] for name, c in zip(names, columns)}}


def canonical(result: Any, expected: Any, spec: Any) -> tuple[Any, Any]:
    """(result, expected) with rows sorted and ignored members equalised (see the module)."""
    if not is_spec(spec) or not all(isinstance(v, structure.Struct) for v in (result, expected)):
        return result, expected
    got = dict(structure.iter_elements(result))
    want = dict(structure.iter_elements(expected))
    names = [n for n in spec.get("row_members", []) if n in got and n in want]
    got, want = _sorted_rows(got, names), _sorted_rows(want, names)
    for name in spec.get("ignored_members", []):
        if name in got and name in want:
            got[name] = want[name]
    order = [name for name, _ in structure.iter_elements(result)]
    return (structure.Struct([(n, got[n]) for n in order]),
            structure.Struct([(n, want[n]) for n in order]))
