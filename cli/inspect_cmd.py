"""`tffexec inspect COMP`: what a computation is, without running it."""
from __future__ import annotations

import click

from tffexec.cli import common

JSON_SCHEMA = "tffexec.inspect/1"


@click.command(short_help="Show what a computation contains, without running it.")
@click.argument("comps", metavar="COMP...", nargs=-1, required=True, type=common.INPUT_PATH)
@click.option("--tree", "show_tree", is_flag=True, help="Also show the AST as a tree.")
@click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="Deepest AST level shown by --tree; deeper nodes are summarised as '…'.",
)
@click.option(
    "--format",
    "output_format",
    type=common.FormatChoice("text", "json"),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@common.timeout_option(", whatever is being read")
@common.verbosity_options(envvars=False)
def inspect(comps: tuple[str, ...], show_tree: bool, depth: int, output_format: str,
            as_json: bool, timeout: float | None) -> None:
    """Show a computation's type signature, node counts, intrinsics, TensorFlow graphs and
    placements.

    COMP is a serialized Computation (`-` reads standard input). Nothing is executed and
    TensorFlow is not imported. With several files, each gets its report (text: separated by a
    blank line; JSON: one document each) and the exit status is the worst.

    \b
    Examples:
      tffexec inspect examples/mean_of_clients/comp.pb
      tffexec inspect comp.pb --tree --depth 3
      tffexec inspect comp.pb --json | jq .type_signature
      tffexec inspect cases/*/comp.pb --json | jq -r .type_signature
    """
    common.check_single_stdin(*comps)
    as_json = as_json or output_format == "json"
    printed = []

    def report(comp: str) -> None:
        _inspect_one(comp, show_tree=show_tree, depth=depth, as_json=as_json,
                     separate=bool(printed))
        printed.append(comp)

    from tffexec.cli import watchdog  # noqa: PLC0415

    watchdog.run_guarded(lambda: common.report_each(list(comps), report), timeout=timeout)


def _inspect_one(comp: str, *, show_tree: bool, depth: int, as_json: bool,
                 separate: bool = False) -> None:
    # Imported here, not at the top: `tffexec --help` must not pay for federated-language.
    from tffexec.cli import loaders
    from tffexec.checks import analysis

    computation, comp_input = loaders.load_computation(comp)
    result = analysis.analyze(computation, size_bytes=len(comp_input.data))
    from tffexec.cli import render

    tree = render.tree(computation, max_depth=depth) if show_tree else None

    if as_json:
        document = {"schema": JSON_SCHEMA, "file": comp_input.name, **result.to_dict()}
        click.echo(render.json_document(document, tree))
        return

    console = common.stdout_console()
    if separate:
        console.print()  # a blank line between text reports
    for line in render.summary_lines(comp_input.name, result):
        console.print(line, soft_wrap=True)
    if tree is not None:
        console.print()
        console.print(render.ast_tree(tree))
