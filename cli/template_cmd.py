"""`tffexec template COMP`: a skeleton argument a person fills in.

Why: the quickest way to the right argument shape is to start from one. The skeleton is plain
JSON following the parameter type — zeros of the right shapes, empty strings, `false` — with one
client (or `--clients N`), so it loads back and runs as it is, and its layout shows what goes
where.
"""
from __future__ import annotations

import click

from tffexec import errors
from tffexec.cli import common


@click.command("template", short_help="Write a skeleton argument (plain JSON of zeros).")
@click.argument("comp", type=common.INPUT_PATH)
@click.option("--clients", type=click.IntRange(min=0), default=1, show_default=True,
              help="Entries in each {T}@CLIENTS list.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              allow_from_autoenv=False, help="Write to FILE instead of standard output (atomically).")
@common.verbosity_options(envvars=False)
def template(comp: str, clients: int, output: str | None) -> None:
    """Write a skeleton argument for COMP: plain JSON with zeros of the right shapes.

    Dimensions of unknown size get one entry and sequences one element. Fill in the numbers and
    pass the file to `tffexec run COMP FILE`.

    \b
    Examples:
      tffexec template examples/fedavg_round/comp.pb > arg.json
      tffexec template comp.pb --clients 3 --output arg.json
    """
    common.check_output_path(output, "--output")
    from tffexec import preflight  # noqa: PLC0415
    from tffexec.cli import loaders  # noqa: PLC0415
    from tffexec.formats import plainjson  # noqa: PLC0415

    computation, comp_input = loaders.load_computation(comp)
    sig = preflight.signature(computation, file=comp_input.name)
    if sig.parameter_type is None:
        raise errors.UsageError("the computation takes no argument: run it without ARG",
                                file=comp_input.name)
    from tffexec.formats import limits  # noqa: PLC0415
    from tffexec import policy as policy_lib  # noqa: PLC0415

    # The skeleton is built in memory: refuse before building one no machine can hold.
    size = limits.type_bytes(sig.parameter_type, clients)
    if size > policy_lib.DEFAULT_MAX_VALUE_BYTES:
        raise limits.too_large("the skeleton argument", size, policy_lib.DEFAULT_MAX_VALUE_BYTES,
                               "the default --max-value-bytes", file=comp_input.name)
    try:
        text = plainjson.dumps(plainjson.skeleton(sig.parameter_type, clients))
    except errors.ArgumentError as e:
        raise e.with_file(comp_input.name) from None
    common.write_result(text.encode("utf-8"), output)
