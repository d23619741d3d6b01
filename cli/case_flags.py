"""A case's own flags (case.json `flags`, manifest FLAGS) on top of `tffexec check`'s flags.

Cases may say how they must run (`--allow-op Abort`, `--stack threaded --threads 2`, `--rtol
1e-4`, `--case-timeout 60`): the flags `tffexec run` has for that, parsed by the same click
options (`stack_flags`, `policy_flags`), so a case's flags mean exactly what they mean on the
command line. A flag a case gives replaces the command line's value; `--allow-op` adds to it.
Only flags written in the case count (the environment is read once, for the command line).
"""
from __future__ import annotations

from typing import Any

import click

from tffexec import checking
from tffexec import errors
from tffexec.cli import policy_flags
from tffexec.cli import stack_flags

#: Parameters of `tffexec check` (and of a case's flags) beyond the stack and policy flags.
CASE_PARAMS = ("clients", "seed", "rtol", "atol", "case_timeout")


def case_options(command):
    """The options a case's flags may use (and `tffexec check` takes for all cases)."""
    decorators = [
        click.option("--seed", type=int, default=None, envvar="TFFEXEC_SEED", show_envvar=True,
                     help="Make random TensorFlow ops reproducible (as in `run`)."),
        click.option("--rtol", type=click.FloatRange(min=0), default=checking.DEFAULT_RTOL,
                     show_default=True,
                     help="Relative tolerance for floating-point leaves (a case's case.json "
                          "`rtol` wins)."),
        click.option("--atol", type=click.FloatRange(min=0), default=checking.DEFAULT_ATOL,
                     show_default=True,
                     help="Absolute tolerance for floating-point leaves (a case's case.json "
                          "`atol` wins)."),
        click.option("--case-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=None, metavar="SECONDS",
                     help="Stop a case after this many seconds (exit class 124; its worker "
                          "process is replaced, even inside a TensorFlow kernel)."),
        stack_flags.options,
        policy_flags.options,
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@click.command("case flags", add_help_option=False)
@click.option("--clients", type=click.IntRange(min=0), default=None)
@case_options
def _case_flags_command(**_params) -> None:
    """Only parses: `make_context` fills `ctx.params`."""


class Resolver:
    """Turns a case into its `CaseSettings`: the command line's values, then the case's files
    (meta.json/case.json), then the case's flags."""

    def __init__(self, params: dict[str, Any]):
        self._base = dict(params)
        self._cache: dict[tuple[str, ...], tuple[Any, dict[str, Any]]] = {}

    def __call__(self, case: checking.Case) -> checking.CaseSettings:
        config, given = self._resolve(case.flags, case.source)
        tolerance = {k: getattr(case, k) for k in ("rtol", "atol") if getattr(case, k) is not None}
        tolerance.update({k: given[k] for k in ("rtol", "atol") if k in given})
        return checking.CaseSettings(
            config=config,
            clients=given.get("clients", case.clients),
            rtol=tolerance.get("rtol", self._base["rtol"]),
            atol=tolerance.get("atol", self._base["atol"]),
            timeout=given.get("case_timeout", self._base["case_timeout"]))

    def _resolve(self, flags: tuple[str, ...], source: str) -> tuple[Any, dict[str, Any]]:
        if flags not in self._cache:
            given = _parse(flags, source) if flags else {}
            params = {**self._base, **given}
            if "allow_op" in given:
                params["allow_op"] = tuple(self._base.get("allow_op") or ()) + given["allow_op"]
            stack_params = stack_flags.pop_stack_params(dict(params))
            policy = policy_flags.build_policy(policy_flags.pop_policy_params(dict(params)))
            try:
                config = stack_flags.config_from(stack_params, seed=params.get("seed"),
                                                 policy=policy)
            except click.UsageError as e:
                raise errors.UsageError(f"flags: {e.format_message()}", file=source) from None
            self._cache[flags] = (config, given)
        return self._cache[flags]


def _parse(flags: tuple[str, ...], source: str) -> dict[str, Any]:
    """The parameters `flags` set explicitly (defaults and environment variables left out)."""
    from click.core import ParameterSource  # noqa: PLC0415

    try:
        ctx = _case_flags_command.make_context("flags", list(flags))
    except click.ClickException as e:
        raise errors.UsageError(f"flags {' '.join(flags)!r}: {e.format_message()}",
                                file=source or None) from None
    return {name: value for name, value in ctx.params.items()
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}


def with_tf_threads(params: dict[str, Any], jobs: int) -> dict[str, Any]:
    """Parallel workers share the cores: without `--tf-threads`, each gets its share."""
    if jobs <= 1 or params.get("tf_threads") is not None:
        return params
    from tffexec import tf_runtime  # noqa: PLC0415 - light: TensorFlow is imported lazily

    return {**params, "tf_threads": max(1, tf_runtime.cores() // jobs)}
