"""The flags that choose and shape the execution stack, shared by every command that runs.

`options` adds them to a command; `config_from` turns the parsed values into the `StackConfig`
the Python API takes, so the CLI and the library describe stacks the same way.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import click

from tffexec.cli import common

STACK_CHOICES = ("local", "threaded", "ray")


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
        common.env_option("--stack", "stack", type=click.Choice(STACK_CHOICES), default="local",
                          show_default=True,
                          help="Execution stack: local runs in this process, per-client "
                               "maps on --threads threads and batched calls one at a time with "
                               "all TensorFlow threads; threaded also runs batched chunks side "
                               "by side, sharing TensorFlow's threads among them; ray spreads "
                               "shards of clients over Ray actors (pip install 'tffexec[ray]')."),
        common.env_option("--threads", type=click.IntRange(min=1), default=None,
                          help="Threads that run a per-client map (default: number of cores; "
                               "1: one client after another). Maps with stateful random ops "
                               "run in client order on one thread, so --seed reproduces runs."),
        click.option("--clients-per-thread", type=click.IntRange(min=1), default=None,
                     help="Clients handled by one task of a threaded map (default: clients "
                          "divided evenly over the threads)."),
        common.env_option("--max-fanout", type=click.IntRange(min=2), default=None,
                          help="Split more clients than this into child stacks composed in levels "
                               "(partial aggregates merged with the computation's merge)."),
        common.env_option("--device", type=DeviceType(), default=None,
                          help="Where TensorFlow work runs: cpu, gpu or gpu:N (exit 7 without "
                               "a GPU)."),
        common.env_option("--no-batch", "no_batch", is_flag=True, default=False,
                          help="Run client work one client at a time instead of batching clients "
                               "into one TensorFlow call (for comparison and debugging)."),
        common.env_option("--tf-threads", type=click.IntRange(min=1), default=None,
                          help="TensorFlow intra-op threads (process-wide; default: the "
                               "cores, on the threaded stack divided by its client threads)."),
        *ray_options(),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), command)


STACK_PARAMS = ("stack", "threads", "clients_per_thread", "max_fanout", "device", "tf_threads",
                "no_batch")


def ray_options() -> list[Callable]:
    """--address, --workers, --clients-per-shard, --worker-cpus, --worker-gpus, --shard-retries."""
    return [
        click.option("--address", default=None, metavar="HOST:PORT",
                     envvar=["TFFEXEC_ADDRESS", "RAY_ADDRESS"], show_envvar=True,
                     help="Join the Ray cluster at this address (host:port as printed by `ray "
                          "start --head`, or ray://host:10001) and leave it running; implies "
                          "--stack ray. A cluster with token auth needs RAY_AUTH_TOKEN."),
        common.env_option("--workers", type=click.IntRange(min=1), default=None,
                          help="Ray actors, each holding shards of clients (default: as many "
                               "as the cluster's free CPUs allow at --worker-cpus each)."),
        click.option("--clients-per-shard", type=click.IntRange(min=1), default=None,
                     help="Clients in one Ray shard (default: clients divided evenly over the "
                          "actors)."),
        click.option("--worker-cpus", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="CPUs Ray reserves for each actor (default 1; also its TensorFlow "
                          "threads)."),
        click.option("--worker-gpus", type=click.FloatRange(min=0), default=None,
                     help="GPUs Ray reserves for each actor, fractions allowed (default 0)."),
        click.option("--shard-retries", type=click.IntRange(min=0), default=None,
                     help="Times a shard whose Ray actor died moves to another actor before the "
                          "run fails with exit 7 (default 2)."),
    ]


RAY_PARAMS = ("address", "workers", "clients_per_shard", "worker_cpus", "worker_gpus",
              "shard_retries")
STACK_PARAMS += RAY_PARAMS


def pop_stack_params(params: dict[str, Any]) -> dict[str, Any]:
    """Removes this module's parameters from a command's keyword arguments and returns them."""
    return {name: params.pop(name) for name in STACK_PARAMS if name in params}


def config_from(stack_params: dict[str, Any], **fields):
    """The `StackConfig` for the parsed flags plus `fields` (clients, seed, policy, ...)."""
    from tffexec.factories import config as config_lib  # noqa: PLC0415

    kind, address = _stack_and_address(stack_params)
    ray_fields = {name: stack_params.get(name) for name in RAY_PARAMS
                  if stack_params.get(name) is not None}
    ray_fields.pop("address", None)
    if address is not None:
        ray_fields["address"] = address
    try:
        return config_lib.StackConfig(
            kind=kind,
            threads=stack_params.get("threads"),
            clients_per_thread=stack_params.get("clients_per_thread"),
            max_fanout=stack_params.get("max_fanout"),
            device=stack_params.get("device"),
            tf_threads=stack_params.get("tf_threads"),
            batch=not stack_params.get("no_batch"),
            **ray_fields,
            **fields,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _stack_and_address(stack_params: dict[str, Any]) -> tuple[str, Any]:
    """The stack kind and Ray address: an address implies --stack ray.

    An address on the command line with an explicit --stack local/threaded is a usage error; an
    address from the environment (RAY_ADDRESS) does not override an explicit --stack.
    """
    kind = stack_params.get("stack") or "local"
    address = stack_params.get("address") or None
    if address is None or kind == "ray":
        return kind, address
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        explicit, address_on_command_line = kind != "local", True
    else:
        from click.core import ParameterSource  # noqa: PLC0415

        defaults = (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
        explicit = ctx.get_parameter_source("stack") not in defaults
        address_on_command_line = (ctx.get_parameter_source("address")
                                   is ParameterSource.COMMANDLINE)
    if not explicit:
        return "ray", address
    if address_on_command_line:
        raise click.UsageError(f"--address joins a Ray cluster: it needs --stack ray (or no "
                               f"--stack), not --stack {kind}")
    return kind, None
