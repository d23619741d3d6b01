"""`tffexec.run`: one call from a serialized computation and an argument to the result.

The steps are the ones federated-language's execution context takes (tff-runtime-facts.md §1),
split in two, as ONNX's reference evaluator splits `_init` from `run`:

- `Runner.prepare`: check the computation (once per computation), check the argument against
  the parameter type, infer the number of clients from it (`tffexec.preflight`);
- `Runner.call`: get a stack for that count from the factory (built lazily, cached), embed the
  argument and the computation, call, materialise.

`Runner.run` is the two in one. Unlike TFF, a computation that places values at CLIENTS with no
client count from the argument or `clients=` is an error rather than a silent zero.
"""
from __future__ import annotations

import collections
import os
import pathlib
import time
from typing import Any, Optional, Union

import federated_language
from federated_language.proto import computation_pb2

from tffexec import preflight
from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import stages
from tffexec.factories import config as config_lib
from tffexec.factories import executor_factory
from tffexec.checks import analysis
from tffexec.formats import columns as columns_lib
from tffexec.formats import loading

# The pieces of a prepared run, importable from here as well (`Runner.prepare` returns them).
Prepared = preflight.Prepared
Signature = preflight.Signature
signature = preflight.signature
prepare_argument = preflight.prepare_argument

#: How many computations a Runner remembers as checked (a training loop alternates two).
CHECKED_COMPUTATIONS = 16

ComputationLike = Union[str, os.PathLike, bytes, computation_pb2.Computation, Any]


def to_proto(computation: ComputationLike,
             policy: policy_lib.Policy = policy_lib.DEFAULT) -> computation_pb2.Computation:
    """A `Computation` proto from a path, bytes, a proto or a federated-language computation
    (a file or bytes read under `policy`'s size limit)."""
    if isinstance(computation, computation_pb2.Computation):
        return computation
    if isinstance(computation, (str, os.PathLike, bytes)):
        source = pathlib.Path(computation) if isinstance(computation, (str, os.PathLike)) and str(
            computation) != "-" else computation
        return loading.load_computation(source, policy=policy)
    to_proto_fn = getattr(computation, "to_proto", None)
    if callable(to_proto_fn):
        return to_proto_fn()
    raise errors.ArgumentError(
        f"cannot run a {type(computation).__name__}: expected a path, bytes, a Computation proto "
        "or a federated-language computation")


class Runner:
    """Runs computations on stacks from one factory; reuse it to reuse stacks and graphs.

    `run` is `call(prepare(...))`. `prepare` does everything that does not need a stack: the
    checks of the computation (once per computation object: its analysis is kept), the argument's
    conversion and checks, the client count. `call` runs a `Prepared` on the stack for its client
    count, and may be repeated: a benchmark or a loop of rounds on one argument prepares once.
    """

    def __init__(self, config: Optional[config_lib.StackConfig] = None):
        self.config = config or config_lib.StackConfig()
        self.factory = executor_factory.LazyExecutorFactory(self.config)
        # id(computation) -> (computation, its analysis), the most recent CHECKED_COMPUTATIONS;
        # the proto is kept, so its id is not reused while it is here.
        self._checked: collections.OrderedDict[
            int, tuple[computation_pb2.Computation, analysis.Analysis]] = collections.OrderedDict()
        self.prepares = 0  # how many times `prepare` ran (observable by tests and tools)

    def check(self, computation: ComputationLike) -> analysis.Analysis:
        """The analysis of a computation that passed the static checks and the op policy.

        Done once per computation object; raises `ComputationError` (exit 3) or `PolicyError`
        (exit 5) naming the AST path.
        """
        comp = to_proto(computation, self.config.policy)
        hit = self._checked.get(id(comp))
        if hit is not None and hit[0] is comp:
            self._checked.move_to_end(id(comp))
            return hit[1]
        result = preflight.check_computation(comp, self.config.policy, preflight.Problems())
        self._checked[id(comp)] = (comp, result)
        while len(self._checked) > CHECKED_COMPUTATIONS:
            self._checked.popitem(last=False)
        return result

    def prepare(self, computation: ComputationLike, arg: Any = None, *,
                clients: Optional[int] = None) -> preflight.Prepared:
        """Checks the computation and the argument and settles the client count; builds nothing.

        Args: as for `run`.

        Raises:
          tffexec.errors.ComputationError: the computation is unusable (exit 3).
          tffexec.errors.ArgumentError: the argument does not fit the parameter type, or the
            client count is unknown or disagrees with `clients` (exit 4).
          tffexec.errors.PolicyError: an op or a limit the policy refuses (exit 5).
        """
        with stages.stage(stages.PREPARE):
            self.prepares += 1
            comp = to_proto(computation, self.config.policy)
            return preflight.prepare(
                comp, arg, clients if clients is not None else self.config.clients,
                policy=self.config.policy, problems=preflight.Problems(),
                checked=self.check(comp))

    def stack(self, prepared: preflight.Prepared):
        """The stack `call` runs `prepared` on: built on first use, then cached per client count."""
        return self.factory.create_executor({federated_language.CLIENTS: prepared.clients})

    def call(self, prepared: preflight.Prepared, *, columns: bool = False) -> Any:
        """Runs a prepared computation on the stack for its client count (built on first use).

        `columns=True` returns `{T}@CLIENTS` results as they were computed, as
        `tffexec.ClientColumns` where batched (one array per tensor leaf, leading axis =
        clients), instead of a list per client: for results of many clients that are written
        to npz or summarised, no per-client object is built.
        """
        function_type = prepared.signature.function_type
        executor = self.stack(prepared)
        rounds = self.factory.compiled_rounds(prepared.clients, executor)
        if rounds is not None and prepared.signature.parameter_type is not None:
            # A round called again runs as one compiled TensorFlow function (`tf_round`).
            result = rounds.call(prepared.computation, function_type, prepared.argument)
            if result is not None:
                return result if columns else columns_lib.as_lists(result,
                                                                   function_type.result)
        began = time.perf_counter()
        fn = executor.value(prepared.computation, function_type)
        if not isinstance(function_type, federated_language.FunctionType):
            result, result_type = executor.materialize(fn), function_type
        else:
            parameter_type = prepared.signature.parameter_type
            argument = (executor.value(prepared.argument, parameter_type)
                        if parameter_type is not None else None)
            result = executor.materialize(executor.call(fn, argument))
            result_type = function_type.result
        if rounds is not None:
            rounds.ran_on_stack(prepared.computation, time.perf_counter() - began)
        return result if columns else columns_lib.as_lists(result, result_type)

    def run(self, computation: ComputationLike, arg: Any = None, *,
            clients: Optional[int] = None) -> Any:
        """`call(prepare(computation, arg, clients=clients))`."""
        return self.call(self.prepare(computation, arg, clients=clients))

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
        dtypes; a `{T}@CLIENTS` value is a list with one member per client, or columns: a numpy
        array whose first axis is the clients, or a dict/`Struct` of such arrays for a struct
        member, taken without splitting it into members; named structs are dicts or `Struct`s). A `str` or `bytes` argument is a value, never a path.
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
