"""`tffexec convert IN OUT`: a value from one format to another (pb, JSON, npz).

Why: pipelines mix tools — TFF writes `.pb`, numpy users have `.npz`, people edit JSON. The value
is read with a type (from `--type-of COMP`, else from the self-describing pb or tagged JSON input),
checked against it, and written in the other format; nothing is run.
"""
from __future__ import annotations

import click

from tffexec import errors
from tffexec.formats import EXTENSION_FORMATS
from tffexec.cli import common


@click.command("convert", short_help="Convert a value between pb, JSON and npz.")
@click.argument("source", metavar="IN", type=common.INPUT_PATH)
@click.argument("dest", metavar="OUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--type-of", "type_of", type=common.INPUT_PATH, default=None,
              help="Read IN as a value of this computation's parameter type (or result type with "
                   "--result). Needed for npz and plain JSON input; pb and tagged JSON carry "
                   "their type.")
@click.option("--result", "use_result", is_flag=True,
              help="With --type-of: use the computation's result type (for results and "
                   "expected values).")
@click.option("--from", "from_format", type=common.VALUE_FORMAT, default=None,
              help="Format of IN (default: by extension, else sniffed); needed for npz on "
                   "standard input.")
@click.option("--to", "to_format", type=common.VALUE_FORMAT, default=None,
              help="Format of OUT (default: by its extension; json when OUT is '-').")
@click.option("--plain", is_flag=True,
              help="JSON output in the plain hand-written form (follows the type, no tags) "
                   "instead of the lossless tffexec-value/1 envelope.")
@common.timeout_option(", whatever is being read")
@common.verbosity_options(envvars=False)
def convert(source: str, dest: str, type_of: str | None, use_result: bool,
            from_format: str | None, to_format: str | None, plain: bool,
            timeout: float | None) -> None:
    """Convert the value in IN to OUT (pb, JSON or npz; '-' is standard input/output).

    \b
    Examples:
      tffexec convert examples/mean_of_clients/arg.pb arg.npz
      tffexec convert arg.npz arg.json --type-of comp.pb --plain
      tffexec convert result.pb - --type-of comp.pb --result | jq .type
    """
    common.check_single_stdin(source, type_of)
    if use_result and type_of is None:
        raise click.UsageError("--result needs --type-of COMP")
    common.check_output_path(dest, "OUT")
    fmt = to_format or _format_of(dest)
    if plain and fmt != "json":
        raise click.UsageError("--plain applies to JSON output only")
    common.refuse_binary_to_terminal(fmt, dest)

    from tffexec.cli import watchdog  # noqa: PLC0415

    def work() -> bytes:
        """Read, check and encode (on the watchdog's thread: a sequence that never ends or
        a huge input stops at --timeout, and nothing is written)."""
        from tffexec.cli import loaders  # noqa: PLC0415
        from tffexec.formats import loading  # noqa: PLC0415

        type_hint = (loaders.type_of_computation(type_of, use_result) if type_of is not None
                     else None)
        value_input = common.read_input(source, error_class=errors.ArgumentError)
        in_format = loading.detect_format(value_input.data, value_input.name, from_format)
        if type_hint is None and in_format == "npz":
            raise click.UsageError("an npz value does not say its type: add --type-of COMP")
        path = "value" if type_of is None else ("result" if use_result else "arg")
        value, value_type = loading.load_typed_value(value_input.data, type_hint, fmt=in_format,
                                                     name=value_input.name, path=path)
        loaders.guarded(value, value_type, path=path)
        if plain:
            from tffexec.formats import plainjson  # noqa: PLC0415

            payload = plainjson.dumps(plainjson.to_plain(value, value_type)).encode("utf-8")
        else:
            try:
                payload = loading.encode_value(value, value_type, fmt)
            except errors.ArgumentError as e:
                raise e.with_file(dest) from None
        return payload

    payload = watchdog.run_guarded(work, timeout=timeout)
    common.write_result(payload, dest)


def _format_of(dest: str) -> str:
    """OUT's format from its extension; standard output gets JSON, the one format that is
    readable on a terminal and what tools in a pipe (`jq`) take."""
    import pathlib  # noqa: PLC0415

    if dest == "-":
        return "json"
    fmt = EXTENSION_FORMATS.get(pathlib.PurePath(dest).suffix.lower())
    if fmt is not None:
        return fmt
    raise click.UsageError(f"cannot tell the format of OUT {dest!r}: use a .pb, .json or .npz "
                           "name, or --to pb|json|npz")
