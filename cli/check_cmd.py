"""`tffexec check CASE...`: check many computations against expected results, TensorFlow
imported once per worker rather than once per computation.

The command is a thin shell: cases come from `tffexec.checking` (discovery, manifests), run in
the worker processes of `tffexec.check_workers`, and are reported by `tffexec.check_report`.
"""
from __future__ import annotations

import json
import time

import click

from tffexec.cli import case_flags
from tffexec.cli import common
from tffexec.formats import atomic

FORMS = ("both", "comp", "native")


@click.command("check", short_help="Check many computations against expected values at once.")
@click.argument("cases", nargs=-1, metavar="CASE...")
@click.option("--manifest", "manifests", multiple=True, type=click.Path(dir_okay=False),
              help="Also check the cases listed in FILE, one a line: COMP ARG EXPECTED "
                   "[CLIENTS] [FLAGS...] (ARG and CLIENTS may be '-'; paths relative to FILE; "
                   "'#' comments). Repeatable.")
@click.option("--form", type=click.Choice(FORMS, case_sensitive=False), default="both",
              show_default=True,
              help="Which computation file of a case directory to check: comp.pb, "
                   "native_comp.pb (named NAME[native]) or both.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cases run at the same time, each in its own worker process.")
@click.option("-x", "--fail-fast", is_flag=True,
              help="Start no more cases after the first that does not pass.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, metavar="FILE.xml",
              allow_from_autoenv=False,
              help="Also write a JUnit XML report (for CI test reports), atomically.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (cases and summary) instead of the lines.")
@common.verbosity_options(envvars=False)
@case_flags.case_options
def check(cases: tuple[str, ...], manifests: tuple[str, ...], form: str, jobs: int,
          fail_fast: bool, junit: str | None, as_json: bool, **params) -> None:
    """Check each CASE: run its computation and compare the result with its expected value.

    A CASE is a case directory, a directory with case directories below it, a case's comp.pb
    or native_comp.pb, or a glob of those ('cases/fed_*'). A case directory holds comp.pb
    and/or native_comp.pb, arg.pb|arg.json|arg.npz (unless the computation takes none),
    expected.pb|expected.json|expected.npz, and optionally meta.json (`num_clients`) and
    case.json (`num_clients`, `rtol`, `atol`, `flags`: run's flags for that case, such as
    ["--allow-op", "Abort"]).

    Cases run in worker processes that import TensorFlow once and check case after case; a case
    that crashes its worker or passes --case-timeout is an ERROR, and a new worker takes the
    next case. Prints `PASS name 12 ms`, `FAIL name: path: got .. vs expected ..` or `ERROR
    name: message (exit N)` per case, in order, and a summary line.

    Exit status: 0 when every case passed; otherwise the highest case status, where a mismatch
    counts 1 and an error its class (3 computation, 4 argument, 5 policy, 6 execution or crash,
    7 no worker, 124 case timeout); 2 for bad CASE arguments or manifest lines.

    \b
    Examples:
      tffexec check examples/cases/
      tffexec check examples/cases/ --jobs 2 --junit report.xml
      tffexec check 'examples/cases/fed_*' --form comp -x
      tffexec check --manifest cases.txt --case-timeout 60 --json
    """
    from tffexec import check_report  # noqa: PLC0415
    from tffexec import check_workers  # noqa: PLC0415
    from tffexec import checking  # noqa: PLC0415

    if not cases and not manifests:
        raise click.UsageError("give at least one CASE or --manifest FILE")
    if junit is not None:
        common.check_output_path(junit, "--junit")  # before any case runs
    found = checking.discover(cases, form=form.lower()) if cases else []
    for manifest in manifests:
        found += checking.read_manifest(manifest)

    resolver = case_flags.Resolver(case_flags.with_tf_threads(params, jobs))
    quiet = click.get_current_context().meta.get("tffexec.quiet", False)
    verbose = int(click.get_current_context().meta.get("tffexec.verbose", 0))
    if not as_json:
        workers = min(jobs, len(found))
        common.note(f"checking {len(found)} case{'s' if len(found) != 1 else ''} in "
                    f"{workers} worker process{'es' if workers != 1 else ''}")

    def on_verdict(verdict) -> None:
        if as_json or (quiet and verdict.passed):
            return
        click.echo(_styled(check_report.line(verdict), verdict.status))
        if verbose and verdict.differences:
            for path, detail in verdict.differences[:10]:
                click.echo(f"    {path}: {detail}  (got vs expected)")

    start = time.perf_counter()
    verdicts = check_workers.check_cases(found, resolver, jobs=jobs, fail_fast=fail_fast,
                                         on_verdict=on_verdict)
    summary = check_report.Summary.of(verdicts, time.perf_counter() - start)
    if junit is not None:
        atomic.write(junit, check_report.junit_xml(verdicts, summary))
    if as_json:
        click.echo(json.dumps(check_report.to_json(verdicts, summary), indent=2))
    else:
        click.echo(_styled(summary.line(), "pass" if summary.exit_code == 0 else "fail"))
    raise click.exceptions.Exit(summary.exit_code)


def _styled(text: str, status: str) -> str:
    """Colour on a terminal (click strips it elsewhere)."""
    color = {"pass": "green", "fail": "red", "error": "red", "skipped": "yellow"}.get(status)
    return click.style(text, fg=color) if color else text

