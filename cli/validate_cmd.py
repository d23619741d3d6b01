"""`tffexec validate COMP [ARG]`: check that tffexec can run a computation, without running it."""
from __future__ import annotations

import click

from tffexec import errors
from tffexec.formats import EXTENSION_FORMATS
from tffexec.cli import common
from tffexec.cli import policy_flags


@click.command(short_help="Check that tffexec can run COMP (and ARG), without running it.")
@click.argument("files", metavar="COMP [ARG] | COMP...", nargs=-1, required=True,
                type=common.INPUT_PATH)
@click.option(
    "--clients",
    type=click.IntRange(min=0),
    default=None,
    help="Number of clients (needed when CLIENTS values come from nowhere else).",
)
@click.option(
    "--arg-format",
    type=common.VALUE_FORMAT,
    default=None,
    help="Format of ARG (default: from its file extension).",
)
@common.verbosity_options(envvars=False)
@policy_flags.options
def validate(files: tuple[str, ...], clients: int | None, arg_format: str | None,
             **flags) -> None:
    """Check COMP (and ARG, if given) without executing anything; or several computations.

    Checks that the computation parses; that every node kind and intrinsic is supported, and
    every intrinsic declared at a type its definition admits; that every reference is bound;
    that ARG, if given, reads as a value of the parameter type, and that any computation in it
    (a function-typed argument) passes these same checks and can be called; that
    the number of clients is known when values are placed at CLIENTS; and that `run` would not
    refuse it by policy: every TensorFlow op in its graphs and in dataset values of ARG is
    allowed (same allowlist, --allow-op and --trust as `run`) and the client count is within
    --max-clients.

    Prints `ok: ...` and exits 0 when tffexec can run it; a type signature longer than
    2000 characters is abbreviated on that line to its start and end, with its length
    (`tffexec inspect COMP --json | jq -r .type_signature` prints it whole). Otherwise prints
    one line per problem on standard error and exits 1. Unreadable inputs exit 3 (COMP) or 4 (ARG); inputs
    over a size limit exit 5.

    Several computations (`validate a.pb b.pb c.pb`) get one report each and the exit status is
    the worst. Two files are COMP and ARG when the second is a value (.json, .npz, or a pb that
    holds a value rather than a computation).

    \b
    Examples:
      tffexec validate examples/mean_of_clients/comp.pb examples/mean_of_clients/arg.pb
      tffexec validate comp.pb --clients 10
      tffexec validate cases/*/comp.pb
    """
    common.check_single_stdin(*files)
    # Limits apply while loading; ops are reported below rather than refused.
    policy = policy_flags.policy_from(policy_flags.pop_policy_params(flags))
    if len(files) == 2 and _is_value_file(files[1], policy):
        _validate_one(files[0], files[1], clients, arg_format, policy)
        return
    common.report_each(list(files), lambda comp: _validate_one(comp, None, clients, arg_format,
                                                               policy))


def _is_value_file(path: str, policy) -> bool:
    """Whether the second of two files is an argument rather than another computation.

    Read under the smaller of the two size limits: a file over the value limit is refused as
    ARG anyway, and sniffing `/dev/zero` must not read a computation's worth of it."""
    import pathlib  # noqa: PLC0415

    if EXTENSION_FORMATS.get(pathlib.PurePath(path).suffix.lower()) in ("json", "npz"):
        return True
    if path == "-":
        return True  # a computation on standard input is given first: `cat c.pb | validate - a`
    from tffexec import errors as errors_lib  # noqa: PLC0415
    from tffexec.formats import loading  # noqa: PLC0415

    from tffexec.cli import common  # noqa: PLC0415

    try:
        limit = min(policy.max_computation_bytes, policy.max_value_bytes)
        loading.parse_computation(common.read_input(
            path, error_class=errors_lib.ComputationError, limit=limit).data)
    except (errors_lib.ComputationError, errors_lib.PolicyError):
        return True  # not a computation (or over its limit): read as ARG, whose errors name it
    return False


def _validate_one(comp: str, arg: str | None, clients: int | None, arg_format: str | None,
                  policy) -> None:
    # Imported here, not at the top: `tffexec --help` must not pay for federated-language.
    from tffexec import preflight
    from tffexec.cli import loaders
    from tffexec.checks import analysis

    computation, comp_input = loaders.load_computation(comp, policy=policy)
    problems = preflight.Problems(collect=True)
    try:
        # The checks `run` makes (`Runner.prepare`), collecting every problem instead of raising.
        result = preflight.check_computation(computation, policy, problems,
                                            size_bytes=len(comp_input.data))
    except errors.TffexecError as e:
        raise e.with_file(comp_input.name) from None

    value = argument_clients = None
    if arg is not None:
        if result.parameter_type is None:
            problems.computation.append(analysis.Problem(
                analysis.ROOT_PATH, "the computation takes no argument, but ARG "
                f"{common.display_name(arg)} was given"))
        else:
            try:
                value, _, argument_clients = loaders.load_argument_value(
                    arg, computation.type.function.parameter, fmt=arg_format, policy=policy)
            except errors.PolicyError as e:
                if e.path is None:
                    raise  # the file itself is over a limit: unreadable, exit 5 as for run
                # A limit a place inside the argument exceeds (its client count, a tensor's
                # declared size): a problem `run` refuses, reported here with the others.
                problems.argument.append(analysis.Problem(e.path, e.message, refused=True))
    try:
        if not problems.argument:  # without the argument, its checks would only add noise
            preflight.prepare(computation, value, clients, policy=policy, problems=problems,
                              checked=result)
    except errors.ComputationError as e:
        raise e.with_file(comp_input.name) from None
    except errors.TffexecError as e:
        raise (e.with_file(common.display_name(arg)) if arg is not None else e) from None

    if problems:
        for problem in problems.computation:
            click.echo(f"{comp_input.name}: {problem}", err=True)
        for problem in problems.argument:
            click.echo(f"{common.display_name(arg)}: {problem}", err=True)
        raise errors.CheckFailed(f"{_plural(len(problems), 'problem')} found",
                                 file=comp_input.name)

    details = [abbreviated_signature(result.type_signature), _plural(result.total_nodes, "node")]
    if result.intrinsics:
        details.append(_plural(sum(result.intrinsics.values()), "intrinsic call"))
    if result.graphs:
        details.append(_plural(len(result.graphs), "TensorFlow graph"))
    client_count = clients if clients is not None else argument_clients
    if client_count is not None:
        details.append(_plural(client_count, "client"))
    if arg is not None:
        details.append(f"argument {common.display_name(arg)} matches the parameter type")
    click.echo(f"ok: {comp_input.name}: " + "; ".join(details))


#: Longest type signature the ok line shows whole (a struct of 10^6 elements prints 14 MB).
MAX_SIGNATURE_CHARS = 2000
_TAIL_CHARS = 200


def abbreviated_signature(signature: str) -> str:
    """`signature`, or its start and end around "…" with its length when it is over
    `MAX_SIGNATURE_CHARS`, so the ok line stays of bounded length."""
    if len(signature) <= MAX_SIGNATURE_CHARS:
        return signature
    head = MAX_SIGNATURE_CHARS - _TAIL_CHARS
    return (f"{signature[:head]}…{signature[-_TAIL_CHARS:]} (type signature abbreviated: "
            f"{len(signature):,} characters)")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
