"""Every intrinsic tffexec implements, with its kind: the one list the rest derives from.

federated-language keeps one `IntrinsicDef` per intrinsic as "the ultimate source of ground
truth" for the code that deals with intrinsics; this is that list made local. It imports neither
TensorFlow nor federated-language (only `tffexec.errors`), so `tffexec inspect` and `validate`
(which only need the URIs) stay fast. Each executor's table is derived from it, and
`tests/test_intrinsic_registry.py` checks that every table covers exactly the URIs of its kinds:

- the static allow list (`checks/analysis.py` `SUPPORTED_INTRINSICS`): every URI;
- the federating executor's handlers and, registered beside each one, its composing rule
  (`executors/federated_intrinsics.py` `INTRINSICS`, `COMPOSE`): every placed kind and the
  generic operators;
- the sequence executor's handlers (`executors/sequence_executor.py` `HANDLERS`): the sequence
  and generic kinds.

Type facts are not kept here (they need federated-language's types): `checks/intrinsic_types.py`
checks each intrinsic node's declared type against federated-language's definition of its URI,
or, for the URIs with `in_federated_language=False`, against the signature it keeps beside them.

`generic_zero` is the one *constant*: its type is a value type, not a function, so executors
embed it as a zero when it is created instead of calling a handler.

Adding an intrinsic: see docs/adding-an-intrinsic.md.
"""
from __future__ import annotations

import dataclasses
import enum

from tffexec import errors


class Kind(str, enum.Enum):
    """What an intrinsic does with placements, which decides where it runs in a stack."""

    PLACEMENT = "placement"  # places or moves values: value_at, eval_at, broadcast, zip
    CLIENT_MAP = "client map"  # a function applied to every client's value
    SERVER = "server"  # a function applied to the server's value
    AGGREGATION = "aggregation"  # CLIENTS values reduced to one SERVER value
    SECURE_AGGREGATION = "secure aggregation"  # aggregations with bounds or a modulus
    SELECT = "select"  # per-client sequences of keyed slices of a SERVER value
    SEQUENCE = "sequence"  # maps and folds over the elements of an unplaced sequence
    GENERIC = "generic"  # arithmetic on placed or unplaced values of any structure


#: The kinds that take or make placed values: the federating executor implements them.
PLACED_KINDS = frozenset({Kind.PLACEMENT, Kind.CLIENT_MAP, Kind.SERVER, Kind.AGGREGATION,
                          Kind.SECURE_AGGREGATION, Kind.SELECT})


@dataclasses.dataclass(frozen=True)
class IntrinsicDef:
    """One intrinsic: its URI (as in `Intrinsic.uri` of computation.proto) and its kind.

    Attributes:
      uri: the intrinsic's URI.
      kind: what it does (see `Kind`).
      constant: a value rather than a function (`generic_zero`).
      in_federated_language: whether federated-language's `intrinsic_defs` defines it (checked
        against it in tests/test_analysis.py); False for URIs only TFF's backends define.
    """

    uri: str
    kind: Kind
    constant: bool = False
    in_federated_language: bool = True


def _defs(kind: Kind, *uris: str) -> list[IntrinsicDef]:
    return [IntrinsicDef(uri, kind) for uri in uris]


#: URI -> definition, for every intrinsic tffexec implements: federated-language 0.5.4's
#: `intrinsic_defs` registry (tests/test_analysis.py checks it against it) plus
#: `federated_secure_modular_sum`, which older TFF releases defined in `intrinsic_defs` and 0.87
#: in `backends/mapreduce/intrinsics.py`. Grouped by kind.
INTRINSICS: dict[str, IntrinsicDef] = {d.uri: d for d in [
    *_defs(Kind.PLACEMENT, "federated_value_at_server", "federated_value_at_clients",
           "federated_eval_at_server", "federated_eval_at_clients", "federated_broadcast",
           "federated_zip_at_clients", "federated_zip_at_server"),
    *_defs(Kind.CLIENT_MAP, "federated_map", "federated_map_all_equal"),
    *_defs(Kind.SERVER, "federated_apply"),
    *_defs(Kind.AGGREGATION, "federated_sum", "federated_mean", "federated_weighted_mean",
           "federated_min", "federated_max", "federated_aggregate"),
    *_defs(Kind.SECURE_AGGREGATION, "federated_secure_sum", "federated_secure_sum_bitwidth"),
    IntrinsicDef("federated_secure_modular_sum", Kind.SECURE_AGGREGATION,
                 in_federated_language=False),
    *_defs(Kind.SELECT, "federated_select", "federated_secure_select"),
    *_defs(Kind.SEQUENCE, "sequence_map", "sequence_reduce", "sequence_sum"),
    *_defs(Kind.GENERIC, "generic_plus", "generic_multiply", "generic_divide"),
    IntrinsicDef("generic_zero", Kind.GENERIC, constant=True),
]}

#: Every supported URI.
SUPPORTED: frozenset[str] = frozenset(INTRINSICS)

GENERIC_ZERO = "generic_zero"


def uris(*kinds: Kind, constants: bool = True) -> frozenset[str]:
    """The URIs of the given kinds (`constants=False` leaves out `generic_zero`)."""
    return frozenset(d.uri for d in INTRINSICS.values()
                     if d.kind in kinds and (constants or not d.constant))


def is_constant(uri: str) -> bool:
    """Whether `uri` names a constant intrinsic (embedded as a value, never called)."""
    definition = INTRINSICS.get(uri)
    return definition is not None and definition.constant


#: The callable URIs the federating executor (and, through its composing rules, the composing
#: executor) handles: every placed kind plus the generic operators on placed values.
FEDERATED = uris(*PLACED_KINDS, Kind.GENERIC, constants=False)
#: The callable URIs the sequence executor handles on unplaced values.
UNPLACED = uris(Kind.SEQUENCE, Kind.GENERIC, constants=False)


def require(uri: str, among: frozenset[str], layer: str) -> None:
    """Refuses (as a bug) a handler registered in `layer` for a URI not among its kinds."""
    if uri not in among:
        raise errors.InternalError(
            f"{uri} is not {layer} intrinsic in tffexec.intrinsics; add it there first")


def unknown(uri: str) -> str:
    """The message for a URI tffexec does not implement, listing those it does."""
    return f"unknown intrinsic {uri!r}; supported: {', '.join(sorted(SUPPORTED))}"
