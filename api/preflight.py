"""`tffexec.preflight`: may this computation run on this argument? The pre-flight, written once.

`Runner.prepare` and `tffexec validate` both call `prepare` here, in two modes:

- *raising* (`Problems(collect=False)`, what `run` uses): the first problem is raised as the error
  its kind names (exit 3 for an unusable computation, 4 for an argument or client-count problem,
  5 for what the policy refuses);
- *collecting* (`Problems(collect=True)`, what `validate` uses): every problem is recorded, so
  that all of them can be listed at once.

Why one function for both: `validate` promises to find what `run` would refuse. With the static
checks, the op policy, the dataset-graph check and the client-count rules written once, the two
cannot disagree, and each rule has one message.

What is checked, in order: the computation's size limit; one `analysis.analyze` pass (node kinds,
intrinsics, references, types, and every graph's ops against the policy, each GraphDef parsed
once); the signature; the argument against the parameter type (converted to tffexec's
representation, its client count found in the same walk); the dataset graphs inside the
argument; the client count. Unreadable inputs (a value of the wrong type, a computation without a
type) raise in both modes: there is nothing further to check.

TensorFlow-free: the GraphDefs are read with tffexec's own parser, so `validate` stays fast.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any, Optional

from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec.checks import analysis
from tffexec.checks import type_cache
from tffexec.checks import argument_functions
from tffexec.formats import loading
from tffexec.formats import normalize
from tffexec.checks import op_check
from tffexec import policy as policy_lib
from tffexec.formats import values as values_lib
from tffexec.formats.protos import executor_pb2

#: What `run` says when a computation places values at CLIENTS and nothing says how many.
UNKNOWN_CLIENTS = ("computation places values at CLIENTS but the number of clients is unknown: "
                   "pass an argument with CLIENTS values or --clients N")


class Problems:
    """Where the checks put what they find: raised at once, or collected (`collect=True`).

    Collected problems are kept apart by where they are: in the computation (`computation`) or
    in the argument (`argument`), so that a report can name the right file.
    """

    def __init__(self, *, collect: bool = False):
        self.collect = collect
        self.computation: list[analysis.Problem] = []
        self.argument: list[analysis.Problem] = []

    def __len__(self) -> int:
        return len(self.computation) + len(self.argument)

    def add(self, error: errors.TffexecError) -> None:
        """Raises `error`, or (collecting) records it as a problem of the computation at its
        path (the root for a client count)."""
        if not self.collect:
            raise error
        self.computation.append(analysis.Problem(error.path or analysis.ROOT_PATH, error.message))


class Signature:
    """A computation's function type, split the way the commands need it.

    Converted from the proto when first asked for: `validate COMP` never needs the converted
    type (its checks read protos), and for a type of 10^5 struct elements federated-language
    takes seconds to build one. `signature()` converts at once, so that `run` fails early.
    """

    def __init__(self, computation: computation_pb2.Computation, *, file: str | None = None):
        self._proto = computation.type
        self._file = file

    @functools.cached_property
    def function_type(self) -> Any:
        """The computation's `federated_language.Type` (a `FunctionType` for a function)."""
        try:
            return type_cache.type_of(self._proto)  # shared with the static checks
        except Exception as e:  # noqa: BLE001 - federated-language raises several kinds
            message = e.message if isinstance(e, errors.TffexecError) else str(e)
            raise errors.ComputationError(f"unreadable type signature: {message}",
                                          file=self._file) from None

    @property
    def parameter_type(self) -> Any:
        """The parameter type; None for a no-argument function or a non-function."""
        return getattr(self.function_type, "parameter", None)

    @property
    def result_type(self) -> Any:
        """The result type (the type itself for a non-function)."""
        return getattr(self.function_type, "result", self.function_type)


def signature(computation: computation_pb2.Computation, *, file: str | None = None) -> Signature:
    """The computation's type, or a `ComputationError` naming `file` when it is unreadable."""
    sig = Signature(computation, file=file)
    _ = sig.function_type  # converted now: an unreadable type fails here, not mid-run
    return sig


@dataclasses.dataclass(frozen=True, eq=False)  # no __eq__: comparing arguments can run TF
class Prepared:
    """A computation and its argument, checked and ready to call on a stack of `clients`.

    Made by `Runner.prepare`; `Runner.call` runs it, as often as wanted (the argument is never
    changed by a call).
    """

    computation: computation_pb2.Computation
    signature: Signature
    argument: Any
    clients: int
    analysis: analysis.Analysis

    @property
    def uses_clients(self) -> bool:
        """Whether the computation places values at CLIENTS (else a client count changes nothing)."""
        return self.analysis.uses_clients


def check_computation(computation: computation_pb2.Computation, policy: policy_lib.Policy,
                      problems: Problems, *, size_bytes: int | None = None) -> analysis.Analysis:
    """The once-per-computation checks: the size limit, then one `analysis.analyze` pass.

    Raising, a refused op comes first (`PolicyError`), then the first other problem
    (`ComputationError`), each with the AST path and how many more there are.

    Raises (in both modes):
      tffexec.errors.PolicyError: the computation is larger than the policy allows.
      tffexec.errors.ComputationError: it has no type, or an invalid one.
    """
    policy.check_computation_bytes(computation.ByteSize() if size_bytes is None else size_bytes)
    result = analysis.analyze(computation, size_bytes=size_bytes, policy=policy)
    if problems.collect:
        problems.computation.extend(result.problems)
        return result
    _raise_first(result.problems, errors.ComputationError)
    return result


def _raise_first(found: list[analysis.Problem], unusable_error: type[errors.TffexecError]) -> None:
    """Raises the first refused op (`PolicyError`), else the first other problem as
    `unusable_error`, each with its path and how many more there are."""
    refused = [p for p in found if p.refused]
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise errors.PolicyError(refused[0].message + more, path=refused[0].path)
    unusable = [p for p in found if not p.refused]
    if unusable:
        # Running a computation analysis knows to be broken would fail deep in an executor, or
        # after side effects such as partial client work; refusing it here names the AST path.
        message = unusable[0].message
        if message.startswith("unsupported intrinsic"):
            message += f"; supported: {', '.join(sorted(analysis.SUPPORTED_INTRINSICS))}"
        more = (f" (and {len(unusable) - 1} more; see `tffexec validate`)"
                if len(unusable) > 1 else "")
        raise unusable_error(message + more, path=unusable[0].path)


def prepare_argument(arg: Any, parameter_type) -> Any:
    """The argument in tffexec's Python representation, checked against the parameter type."""
    return _convert_argument(arg, parameter_type)[0]


def _convert_argument(arg: Any, parameter_type,
                      policy: policy_lib.Policy = policy_lib.DEFAULT) -> tuple[Any, Optional[int]]:
    """(the argument converted and checked, the client count it implies)."""
    if parameter_type is None:
        if arg is not None:
            raise errors.ArgumentError("the computation takes no argument, but one was given")
        return None, None
    if arg is None:
        raise errors.ArgumentError(f"the computation needs an argument of type {parameter_type}")
    if isinstance(arg, os.PathLike):  # a str stays a value: the parameter may be a string
        arg = loading.load_value(pathlib.Path(arg), parameter_type, policy=policy)
    elif isinstance(arg, executor_pb2.Value):
        arg, _ = values_lib.value_from_proto(arg, parameter_type)
    return normalize.normalize_counting(arg, parameter_type, path="arg")


def check_argument(value: Any, parameter_type, policy: policy_lib.Policy,
                   problems: Problems) -> None:
    """The dataset graphs and the function-typed computations inside the argument, against the
    policy (see `checks.argument_functions` for what a computation in an argument must be).

    Raising, the sequences are also bound to `policy`, so that they are read under it later; a
    refused op is a `PolicyError`, an unusable computation an `ArgumentError`.
    """
    functions = argument_functions.problems(value, parameter_type, policy, path="arg")
    if not problems.collect:
        op_check.check_value(value, parameter_type, policy, path="arg")
        _raise_first(functions, errors.ArgumentError)
        return
    for path, finding in op_check.value_findings(value, parameter_type, policy, path="arg"):
        problems.argument.append(analysis.Problem(path, finding.describe(), refused=True))
    problems.argument.extend(functions)


def load_checked_value(source: Any, type_spec, *, policy: policy_lib.Policy, name: str,
                       path: str, fmt: str | None = None) -> Any:
    """A value file read under `policy`'s limits, its dataset graphs checked against `policy`
    now, so that a refused op names the file (the loaders themselves check no ops). A later
    `prepare` of the value finds its sequences checked and does not parse them again."""
    value = loading.load_value(source, type_spec, fmt=fmt, name=name, path=path, policy=policy)
    try:
        op_check.check_value(value, type_spec, policy, path=path)
    except errors.PolicyError as e:
        raise e.with_file(name) from None
    return value


def client_count(uses_clients: bool, *, clients: Optional[int], argument_clients: Optional[int],
                 max_clients: int, problems: Problems) -> int:
    """The number of clients to build the stack for; the one home of the client-count rules.

    The argument's count wins; `clients` (`--clients`, `clients=`) must agree with it and is used
    when the argument has none. The count must be within the policy's `max_clients`. A
    computation that places values at CLIENTS needs a count from one of the two; one that does
    not gets 0 when none is given.
    """
    if clients is not None and argument_clients is not None and clients != argument_clients:
        problems.add(errors.ArgumentError(
            f"--clients {clients} disagrees with the argument's {argument_clients} clients"))
    count = argument_clients if argument_clients is not None else clients
    if count is not None:
        try:
            policy_lib.check_clients(count, max_clients)
        except errors.PolicyError as e:
            problems.add(e)
        return count
    if uses_clients:
        problems.add(errors.ArgumentError(UNKNOWN_CLIENTS))
    return 0


def prepare(computation: computation_pb2.Computation, arg: Any, clients: Optional[int], *,
            policy: policy_lib.Policy, problems: Problems,
            checked: analysis.Analysis | None = None,
            size_bytes: int | None = None) -> Prepared:
    """Checks `computation` (unless `checked` holds its analysis already) and `arg`, and settles
    the client count. See the module docstring for the two modes.

    Collecting, a missing argument (`arg=None`) is not a problem: `validate COMP` checks the
    computation alone, and the client count must then come from `clients`.
    """
    if checked is None:
        checked = check_computation(computation, policy, problems, size_bytes=size_bytes)
    if arg is None and problems.collect:  # nothing needs the converted type
        sig, value, argument_clients = Signature(computation), None, None
    else:
        sig = signature(computation)
        value, argument_clients = _convert_argument(arg, sig.parameter_type, policy)
    if value is not None:
        check_argument(value, sig.parameter_type, policy, problems)
    count = client_count(checked.uses_clients, clients=clients,
                         argument_clients=argument_clients, max_clients=policy.max_clients,
                         problems=problems)
    return Prepared(computation, sig, value, count, checked)
