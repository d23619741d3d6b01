"""The flags that set what an untrusted computation may do (`--allow-op`, `--trust`, limits).

Flags that weaken security are explicit only: they never come from environment variables.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import click


def options(command: Callable) -> Callable:
    """Adds --allow-op and --trust."""
    decorators = [
        click.option("--allow-op", "allow_op", multiple=True, metavar="NAME",
                     allow_from_autoenv=False,
                     help="Allow this TensorFlow op on top of the built-in allowlist "
                          "(repeatable)."),
        click.option("--trust", is_flag=True, allow_from_autoenv=False,
                     help="Run every TensorFlow op in the computation (limits still apply)."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), command)


POLICY_PARAMS = ("allow_op", "trust")


def pop_policy_params(params: dict[str, Any]) -> dict[str, Any]:
    return {name: params.pop(name) for name in POLICY_PARAMS if name in params}


def policy_from(policy_params: dict[str, Any]):
    from tffexec.formats import policy as policy_lib  # noqa: PLC0415

    return policy_lib.Policy(trust=bool(policy_params.get("trust")),
                             allowed_ops=frozenset(policy_params.get("allow_op") or ()))
