"""`tffexec.run`: one call from a serialized computation and an argument to the result.

The steps are the ones federated-language's execution context takes (tff-runtime-facts.md §1):
check the argument against the parameter type, infer the number of clients from it, get a stack
for that count from the factory (built lazily, cached), embed the argument and the computation,
call, materialise. Unlike TFF, a computation that places values at CLIENTS with no client count
from the argument or `clients=` is an error rather than a silent zero.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Optional, Union

import federated_language
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.factories import config as config_lib
from tffexec.factories import executor_factory
from tffexec.formats import analysis
from tffexec.formats import loading
from tffexec.formats import op_check
from tffexec.formats import policy as policy_lib
from tffexec.formats import values as values_lib
from tffexec.formats.protos import executor_pb2

ComputationLike = Union[str, os.PathLike, bytes, computation_pb2.Computation, Any]


def to_proto(computation: ComputationLike) -> computation_pb2.Computation:
    """A `Computation` proto from a path, bytes, a proto or a federated-language computation."""
    if isinstance(computation, computation_pb2.Computation):
        return computation
    if isinstance(computation, (str, os.PathLike, bytes)):
        source = pathlib.Path(computation) if isinstance(computation, (str, os.PathLike)) and str(
            computation) != "-" else computation
        return loading.load_computation(source)
    to_proto_fn = getattr(computation, "to_proto", None)
    if callable(to_proto_fn):
        return to_proto_fn()
    raise errors.ArgumentError(
        f"cannot run a {type(computation).__name__}: expected a path, bytes, a Computation proto "
        "or a federated-language computation")


def prepare_argument(arg: Any, parameter_type) -> Any:
    """The argument in tffexec's Python representation, checked against the parameter type."""
    if parameter_type is None:
        if arg is not None:
            raise errors.ArgumentError("the computation takes no argument, but one was given")
        return None
    if arg is None:
        raise errors.ArgumentError(f"the computation needs an argument of type {parameter_type}")
    if isinstance(arg, os.PathLike):  # a str stays a value: the parameter may be a string
        arg = loading.load_value(pathlib.Path(arg), parameter_type)
    elif isinstance(arg, executor_pb2.Value):
        arg, _ = values_lib.value_from_proto(arg, parameter_type)
    return values_lib.normalize(arg, parameter_type, path="arg")


def resolve_clients(comp: computation_pb2.Computation, arg: Any, parameter_type,
                    clients: Optional[int], *, max_clients: Optional[int] = None) -> int:
    """The client count: from the argument, from `clients`, checked against each other and
    against `max_clients` (default: the current policy's limit; exceeding it is a PolicyError)."""
    inferred = values_lib.infer_clients(arg, parameter_type) if parameter_type is not None else None
    if inferred is not None and clients is not None and inferred != clients:
        raise errors.ArgumentError(
            f"--clients {clients} disagrees with the argument, which has {inferred} clients")
    limit = policy_lib.current().max_clients if max_clients is None else max_clients
    if inferred is not None or clients is not None:
        count = inferred if inferred is not None else clients
        policy_lib.check_clients(count, limit)
        return count
    if analysis.analyze(comp).uses_clients:
        raise errors.ArgumentError(
            "the computation places values at CLIENTS but the number of clients is unknown: "
            "pass --clients N (or clients=N)")
    return 0


class Runner:
    """Runs computations on stacks from one factory; reuse it to reuse stacks and graphs."""

    def __init__(self, config: Optional[config_lib.StackConfig] = None):
        self.config = config or config_lib.StackConfig()
        self.factory = executor_factory.LazyExecutorFactory(self.config)

    def run(self, computation: ComputationLike, arg: Any = None, *,
            clients: Optional[int] = None) -> Any:
        comp = to_proto(computation)
        policy = self.config.policy
        if getattr(self, "_checked", None) is not comp:  # checked once per computation object
            op_check.check_computation(comp, policy)  # size and ops, before anything runs
            analysis.check(comp)  # types, references, intrinsics: exit 3 with the AST path
            self._checked = comp
        function_type = federated_language.Type.from_proto(comp.type)
        parameter_type = getattr(function_type, "parameter", None)
        arg = prepare_argument(arg, parameter_type)
        if parameter_type is not None:
            op_check.check_value(arg, parameter_type, policy, path="arg")  # dataset graphs
        num_clients = resolve_clients(comp, arg, parameter_type,
                                      clients if clients is not None else self.config.clients,
                                      max_clients=policy.max_clients)
        executor = self.factory.create_executor({federated_language.CLIENTS: num_clients})
        fn = executor.value(comp, function_type)
        if not isinstance(function_type, federated_language.FunctionType):
            return executor.materialize(fn)
        argument = executor.value(arg, parameter_type) if parameter_type is not None else None
        return executor.materialize(executor.call(fn, argument))

    def close(self) -> None:
        self.factory.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(computation: ComputationLike, arg: Any = None, *, clients: Optional[int] = None,
        stack: Optional[config_lib.StackConfig] = None, seed: Optional[int] = None) -> Any:
    """Runs a serialized TFF computation and returns its result.

    Args:
      computation: a path to a `computation.proto` file, its bytes, a `Computation` proto, or a
        federated-language computation.
      arg: the argument: a value file as an `os.PathLike` (`pathlib.Path("arg.pb")`; .pb, .json
        or .npz by extension, else sniffed), a `Value` proto, or tffexec's Python representation
        (numpy arrays, Python numbers and lists are accepted and converted to the parameter's
        dtypes; a `{T}@CLIENTS` value is a list with one member per client; named structs are
        dicts or `Struct`s). A `str` or `bytes` argument is a value, never a path.
      clients: the number of clients when the argument does not determine it.
      stack: a `StackConfig` describing the stack; defaults to the local stack.
      seed: makes random TensorFlow ops reproducible.

    Returns:
      The result in tffexec's Python representation: numpy arrays, `Struct`s for structs, a list
      per client for `{T}@CLIENTS`, the member itself for all-equal and SERVER values.
    """
    config = stack or config_lib.StackConfig()
    if seed is not None:
        import dataclasses  # noqa: PLC0415

        config = dataclasses.replace(config, seed=seed)
    with Runner(config) as runner:
        return runner.run(computation, arg, clients=clients)
