"""The flags that choose and shape the execution stack, shared by every command that runs.

`options` adds them to a command; `config_from` turns the parsed values into the `StackConfig`
the Python API takes, so the CLI and the library describe stacks the same way.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import click

STACK_CHOICES = ("local", "threaded")


class DeviceType(click.ParamType):
    """`cpu`, `gpu` or `gpu:N`."""

    name = "DEVICE"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        kind, sep, index = text.partition(":")
        if kind in ("cpu", "gpu") and (not sep or index.isdigit()):
            return text
        self.fail(f"{value!r} is not a device; expected cpu, gpu or gpu:N", param, ctx)


def options(command: Callable) -> Callable:
    """Adds --stack, --threads, --clients-per-thread, --max-fanout, --device, --tf-threads."""
    decorators = [
        click.option("--stack", "stack", type=click.Choice(STACK_CHOICES), default="local",
                     show_default=True, envvar="TFFEXEC_STACK", show_envvar=True,
                     help="Execution stack: local runs client work on one thread; threaded runs "
                          "it on a pool of threads."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     envvar="TFFEXEC_THREADS", show_envvar=True,
                     help="Client threads of the threaded stack (default: number of cores)."),
        click.option("--clients-per-thread", type=click.IntRange(min=1), default=None,
                     help="Clients handled by one task of the threaded stack (default: clients "
                          "divided evenly over the threads)."),
        click.option("--max-fanout", type=click.IntRange(min=2), default=None,
                     envvar="TFFEXEC_MAX_FANOUT", show_envvar=True,
                     help="Split more clients than this into child stacks composed in levels "
                          "(partial aggregates merged with the computation's merge)."),
        click.option("--device", type=DeviceType(), default=None, envvar="TFFEXEC_DEVICE",
                     show_envvar=True,
                     help="Where TensorFlow work runs: cpu, gpu or gpu:N (exit 7 without a GPU)."),
        click.option("--no-batch", "no_batch", is_flag=True, default=False,
                     envvar="TFFEXEC_NO_BATCH", show_envvar=True,
                     help="Run client work one client at a time instead of batching clients "
                          "into one TensorFlow call (for comparison and debugging)."),
        click.option("--tf-threads", type=click.IntRange(min=1), default=None,
                     envvar="TFFEXEC_TF_THREADS", show_envvar=True,
                     help="TensorFlow intra-op threads (process-wide; default: cores divided by "
                          "client threads)."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), command)


STACK_PARAMS = ("stack", "threads", "clients_per_thread", "max_fanout", "device", "tf_threads",
                "no_batch")


def pop_stack_params(params: dict[str, Any]) -> dict[str, Any]:
    """Removes this module's parameters from a command's keyword arguments and returns them."""
    return {name: params.pop(name) for name in STACK_PARAMS if name in params}


def config_from(stack_params: dict[str, Any], **fields):
    """The `StackConfig` for the parsed flags plus `fields` (clients, seed, policy, ...)."""
    from tffexec.factories import config as config_lib  # noqa: PLC0415

    try:
        return config_lib.StackConfig(
            kind=stack_params.get("stack") or "local",
            threads=stack_params.get("threads"),
            clients_per_thread=stack_params.get("clients_per_thread"),
            max_fanout=stack_params.get("max_fanout"),
            device=stack_params.get("device"),
            tf_threads=stack_params.get("tf_threads"),
            batch=not stack_params.get("no_batch"),
            **fields,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
