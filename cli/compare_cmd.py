"""`tffexec compare A B`: are two value files the same value, by `run --expect`'s rules?

Why a command: results saved by earlier runs, by TFF itself or by another stack are compared in
CI without running anything again; the rules (types must agree, floating-point leaves within
--rtol/--atol, everything else exact) and the report (the first differing paths, then one line)
are those of `run --expect`, so one habit covers both.
"""
from __future__ import annotations

import click

from tffexec import errors
from tffexec.cli import common

#: Differences listed before the summary line; the rest are counted.
MAX_DIFFERENCES_SHOWN = 10


@click.command("compare", short_help="Compare two value files (pb, JSON, npz) like --expect.")
@click.argument("first", metavar="A", type=common.INPUT_PATH)
@click.argument("second", metavar="B", type=common.INPUT_PATH)
@click.option("--type-of", "type_of", type=common.INPUT_PATH, default=None,
              help="Read both as values of this computation's parameter type (result type with "
                   "--result). Needed for npz and plain JSON files; otherwise B is read with the "
                   "type A says.")
@click.option("--result", "use_result", is_flag=True,
              help="With --type-of: use the computation's result type.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="Relative tolerance for floating-point leaves (as run --expect).")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="Absolute tolerance for floating-point leaves (as run --expect).")
@common.verbosity_options(envvars=False)
def compare(first: str, second: str, type_of: str | None, use_result: bool, rtol: float,
            atol: float) -> None:
    """Compare the values in A and B: exit 0 when equal, 1 listing the first differing paths.

    Types must match; floating-point leaves may differ within --rtol/--atol (use 0 for exact),
    every other leaf must be equal. Unreadable files exit 4.

    \b
    Examples:
      tffexec compare result.pb examples/fedavg_round/expected.json
      tffexec compare a.npz b.npz --type-of comp.pb --result --rtol 0 --atol 0
    """
    common.check_single_stdin(first, second, type_of)
    if use_result and type_of is None:
        raise click.UsageError("--result needs --type-of COMP")
    from tffexec.cli import loaders  # noqa: PLC0415
    from tffexec.formats import compare as compare_lib  # noqa: PLC0415
    from tffexec.formats import loading  # noqa: PLC0415

    type_hint = _type_from(type_of, use_result) if type_of is not None else None
    first_input = common.read_input(first, error_class=errors.ArgumentError)
    if type_hint is None and loading.detect_format(first_input.data, first_input.name) == "npz":
        raise click.UsageError("an npz value does not say its type: add --type-of COMP")
    value_a, type_a = loading.load_typed_value(first_input.data, type_hint, name=first_input.name,
                                               path="value")
    second_input = common.read_input(second, error_class=errors.ArgumentError)
    value_b = _load_second(second_input, type_a, first_name=first_input.name)
    for value in (value_a, value_b):
        loaders.guarded(value, type_a, path="value")
    differences = compare_lib.value_differences(value_a, value_b, type_a, rtol=rtol, atol=atol,
                                                path="value")
    tolerances = f"rtol {rtol:g}, atol {atol:g}"
    if not differences:
        common.note(f"ok: {first_input.name} and {second_input.name} hold equal values of type "
                    f"{type_a} ({tolerances})")
        return
    shown = differences[:MAX_DIFFERENCES_SHOWN]
    for path, explanation in shown:
        click.echo(f"{path}: {explanation}  (A vs B)", err=True)
    more = len(differences) - len(shown)
    count = len(differences)
    raise errors.CheckFailed(
        f"{first_input.name} and {second_input.name} differ at {count} "
        f"path{'s' if count != 1 else ''} ({tolerances})"
        + (f" ({more} more not shown)" if more > 0 else ""))


def _type_from(type_of: str, use_result: bool):
    from tffexec.cli import loaders  # noqa: PLC0415

    return loaders.type_of_computation(type_of, use_result)


def _load_second(second: common.Input, type_a, *, first_name: str):
    """B read with A's type; a readable value of another type is a mismatch (exit 1), as for
    `run --expect`, and an unreadable file an argument error (exit 4)."""
    from tffexec.formats import loading  # noqa: PLC0415

    try:
        return loading.load_value(second.data, type_a, name=second.name, path="value")
    except errors.ArgumentError as typed_error:
        try:
            _, found_type = loading.load_typed_value(second.data, None, name=second.name,
                                                     path="value")
        except errors.ArgumentError:
            raise typed_error from None
        raise errors.CheckFailed(f"{first_name} holds a value of type {type_a}, but {second.name} "
                                 f"holds one of type {found_type}") from None
