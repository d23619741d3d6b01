"""Checking computations against expected results: cases, how they are found, one case's verdict.

Why a module of its own: a CI job that checks dozens of computations with one `tffexec run
--expect` process each pays TensorFlow's import (seconds of CPU) per computation. `tffexec check`
runs them all through long-lived `Runner`s instead (see `tffexec.check_workers` for the worker
processes that keep a crash or a hung kernel from stopping the rest). This module holds what
does not depend on processes: what a case is (`Case`), where cases come from (`discover`,
`read_manifest`), and what one check does (`CaseRunner.check` -> `Verdict`), with the same
loading, op policy and comparison rules as `tffexec run --expect`.

A case directory holds `comp.pb` and/or `native_comp.pb`, an optional argument (`arg.pb`,
`arg.json` or `arg.npz`), an expected value (`expected.pb`, `expected.json` or `expected.npz`)
and optionally `meta.json` (the corpus' description: `num_clients` is read from it) and
`case.json` (`num_clients`, `rtol`, `atol`, `flags`, `arg`, `expected`; it wins over meta.json).
A directory with both computation files gives two cases, `NAME` and `NAME[native]`, unless a
`form` is chosen.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib
import shlex
import time
from typing import Any, Callable, Iterable, Sequence

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec.formats import VALUE_FORMATS

#: Computation files of a case directory, by form.
COMP_FILES = {"comp": "comp.pb", "native": "native_comp.pb"}
FORMS = ("both", "comp", "native")
ARG_FILES = tuple(f"arg.{fmt}" for fmt in VALUE_FORMATS)
EXPECTED_FILES = tuple(f"expected.{fmt}" for fmt in VALUE_FORMATS)
#: Keys `case.json` may hold (meta.json holds many more; only these are read from it).
CASE_KEYS = ("num_clients", "clients", "rtol", "atol", "flags", "arg", "expected", "description")
DEFAULT_RTOL, DEFAULT_ATOL = 1e-5, 1e-6

PASS, FAIL, ERROR, SKIPPED = "pass", "fail", "error", "skipped"


@dataclasses.dataclass(frozen=True)
class Case:
    """One computation to run and the value it must give.

    Attributes:
      name: how reports call it: the case directory relative to the current directory (plus
        `[native]` for `native_comp.pb`), or for a manifest line the computation's path.
      comp: the computation file.
      expected: the expected value file (None: missing, which `problem` then explains).
      arg: the argument file, None for a computation without parameter.
      clients: the client count when the argument does not tell it (meta.json's `num_clients`).
      rtol, atol: tolerances for floating-point leaves (None: the run's defaults).
      flags: extra `tffexec run`-style flags (`--allow-op Abort`, `--stack threaded`, ...),
        read by the CLI (`tffexec.cli.case_flags`).
      source: where the case was defined (a directory or `manifest:line`), for messages.
      compare: meta.json's `compare` object for results TFF returns in a random order
        (`tffexec.formats.row_sets`), or None.
      problem: why the case cannot run at all (a bad case.json, no expected value), with its
        exit code; such a case is reported as an error without running anything.
    """

    name: str
    comp: pathlib.Path
    expected: pathlib.Path | None
    arg: pathlib.Path | None = None
    clients: int | None = None
    rtol: float | None = None
    atol: float | None = None
    flags: tuple[str, ...] = ()
    source: str = ""
    problem: tuple[str, int] | None = None
    compare: Any = None


@dataclasses.dataclass(frozen=True)
class CaseSettings:
    """How to run one case: the stack (with its op policy), the client count, tolerances and
    the time it may take (None: no limit; only enforced by `tffexec.check_workers`)."""

    config: Any = None  # a tffexec.StackConfig; None: the default local stack
    clients: int | None = None
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    timeout: float | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one case.

    `exit_code` is what `tffexec run --expect` would have exited with: 0 for a pass, 1 for a
    mismatch, the error class (3 computation, 4 argument, 5 policy, 6 execution, 124 timeout,
    ...) for an error; 0 for a case that was not run (`status` SKIPPED).
    """

    name: str
    status: str
    exit_code: int = 0
    message: str = ""
    seconds: float | None = None
    differences: tuple[tuple[str, str], ...] = ()
    comp: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASS


def verdict_for_error(case: Case, error: errors.TffexecError, seconds: float | None = None
                      ) -> Verdict:
    """A FAIL (exit 1, e.g. an expected value of another type) or ERROR verdict for `error`."""
    status = FAIL if error.exit_code == errors.CheckFailed.exit_code else ERROR
    return Verdict(case.name, status, error.exit_code, error.one_line(), seconds,
                   comp=str(case.comp))


def not_run(case: Case, reason: str) -> Verdict:
    return Verdict(case.name, SKIPPED, 0, reason, comp=str(case.comp))


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """0 when every case passed, else the highest case status (a mismatch counts 1, so any
    error class outranks it)."""
    return max((v.exit_code for v in verdicts), default=0)


# ------------------------------------------------------------------------------------ discovery

def display_path(path: str | os.PathLike) -> str:
    """`path` relative to the current directory when it lies below it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative == ".." or relative.startswith(".." + os.sep) else relative


def is_case_dir(path: pathlib.Path) -> bool:
    return any((path / name).is_file() for name in COMP_FILES.values())


def discover(patterns: Sequence[str], *, form: str = "both") -> list[Case]:
    """The cases named by `patterns`: case directories, directories holding case directories
    at any depth, computation files (`.../comp.pb`: that form of its directory), or glob
    patterns of those. Order: as given, each directory's cases sorted by path; duplicates once.

    Raises:
      tffexec.errors.UsageError: a pattern names nothing, or a directory holds no case.
    """
    if form not in FORMS:
        raise errors.UsageError(f"unknown form {form!r}; expected one of {', '.join(FORMS)}")
    cases: list[Case] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [
            pattern]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise errors.UsageError("no such file or directory" if not glob.has_magic(pattern)
                                    else "the pattern matches nothing", file=pattern)
        found: list[Case] = []
        for match in matches:
            found += _cases_at(pathlib.Path(match), form, strict=not glob.has_magic(pattern))
        if not found:
            raise errors.UsageError(
                f"no case found (a case directory holds {' or '.join(COMP_FILES.values())} "
                f"and {'|'.join(EXPECTED_FILES)}"
                f"{'' if form == 'both' else f'; --form {form}'})", file=pattern)
        cases += found
    return _unique(cases)


def _cases_at(path: pathlib.Path, form: str, *, strict: bool) -> list[Case]:
    """The cases at one path; what is not a case is an error when the path was named
    explicitly (`strict`), and skipped when a glob matched it (`cases/*` matches a README)."""
    if path.is_file():
        forms = [f for f, name in COMP_FILES.items() if path.name == name]
        if not forms:
            if not strict:
                return []
            raise errors.UsageError(
                f"not a case: expected a case directory or its {' or '.join(COMP_FILES.values())}"
                " (quote a glob to let tffexec skip what is not a case)", file=display_path(path))
        return case_dir_cases(path.parent, forms)
    if is_case_dir(path):
        return case_dir_cases(path, _forms(form))
    found: list[Case] = []
    for root, dirs, _ in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = pathlib.Path(root)
        if here != path and is_case_dir(here):
            found += case_dir_cases(here, _forms(form))
            dirs[:] = []  # a case directory's subfolders are its own business
    return found


def _forms(form: str) -> list[str]:
    return list(COMP_FILES) if form == "both" else [form]


def _unique(cases: list[Case]) -> list[Case]:
    seen: set[tuple[str, str]] = set()
    out = []
    for case in cases:
        key = (os.path.abspath(case.comp), str(case.arg), str(case.expected))
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out


def case_dir_cases(directory: pathlib.Path, forms: Iterable[str]) -> list[Case]:
    """The cases of one case directory, one per present computation file of `forms`."""
    name = display_path(directory)
    settings: dict[str, Any] = {}
    problem = None
    try:
        settings = _read_case_files(directory)
    except errors.TffexecError as e:
        problem = (e.one_line(), e.exit_code)
    arg = _pick(directory, settings.get("arg"), ARG_FILES)
    expected = _pick(directory, settings.get("expected"), EXPECTED_FILES)
    if expected is None and problem is None:
        problem = (f"{name}: no expected value ({', '.join(EXPECTED_FILES)})",
                   errors.UsageError.exit_code)
    cases = []
    for form in forms:
        comp = directory / COMP_FILES[form]
        if not comp.is_file():
            continue
        cases.append(Case(
            name=name if form == "comp" else f"{name}[{form}]", comp=comp, expected=expected,
            arg=arg, clients=settings.get("clients"), rtol=settings.get("rtol"),
            atol=settings.get("atol"), flags=tuple(settings.get("flags", ())), source=name,
            problem=problem, compare=settings.get("compare")))
    return cases


def _pick(directory: pathlib.Path, chosen: str | None, candidates: Sequence[str]
          ) -> pathlib.Path | None:
    if chosen is not None:
        return directory / chosen
    return next((directory / n for n in candidates if (directory / n).is_file()), None)


def _read_case_files(directory: pathlib.Path) -> dict[str, Any]:
    """Settings from meta.json (only `num_clients`, `rtol`, `atol`, `flags`) then case.json
    (any of `CASE_KEYS`; an unknown key is an error, as it is probably a typo)."""
    settings: dict[str, Any] = {}
    for file_name, strict in (("meta.json", False), ("case.json", True)):
        path = directory / file_name
        if not path.is_file():
            continue
        label = display_path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise errors.UsageError(f"unreadable: {e}", file=label) from None
        if not isinstance(document, dict):
            raise errors.UsageError("expected a JSON object", file=label)
        if strict:
            unknown = sorted(set(document) - set(CASE_KEYS))
            if unknown:
                raise errors.UsageError(f"unknown key {unknown[0]!r}; known keys: "
                                        f"{', '.join(CASE_KEYS)}", file=label)
        settings.update(_case_settings(document, label, strict=strict))
    return settings


def _case_settings(document: dict, label: str, *, strict: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    clients = document.get("num_clients", document.get("clients"))
    if clients is not None:
        if not isinstance(clients, int) or isinstance(clients, bool) or clients < 0:
            raise errors.UsageError(f"num_clients: expected a count >= 0, got {clients!r}",
                                    file=label)
        out["clients"] = clients
    for key in ("rtol", "atol"):
        if document.get(key) is not None:
            value = document[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise errors.UsageError(f"{key}: expected a number >= 0, got {value!r}",
                                        file=label)
            out[key] = float(value)
    if document.get("flags") is not None:
        out["flags"] = _flags(document["flags"], label)
    from tffexec.formats import row_sets  # noqa: PLC0415 - numpy only when a case is read

    if not strict and row_sets.is_spec(document.get("compare")):
        out["compare"] = document["compare"]
    if strict:
        for key in ("arg", "expected"):
            value = document.get(key)
            if value is not None:
                if not isinstance(value, str) or not value or os.path.isabs(value):
                    raise errors.UsageError(f"{key}: expected a file name in the case "
                                            f"directory, got {value!r}", file=label)
                out[key] = value
    return out


def _flags(value: Any, label: str) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise errors.UsageError(f"flags: expected a list of strings (or one string), got {value!r}",
                            file=label)


def read_manifest(path: str | os.PathLike) -> list[Case]:
    """The cases of a manifest file: one per line, `COMP ARG EXPECTED [CLIENTS] [FLAGS...]`.

    Fields are separated by blanks (shell quoting for names with blanks); `ARG` and `CLIENTS`
    may be `-` (no argument / not given); paths are relative to the manifest's directory; `#`
    starts a comment. FLAGS are `tffexec run`-style flags, as in case.json's `flags`
    (`--rtol 1e-4`, `--allow-op Abort`). A case is named by its COMP as written in the line
    (with `:LINE` of the manifest added when a COMP appears twice).

    Raises:
      tffexec.errors.UsageError: the manifest is unreadable or a line is malformed (naming
        `manifest:line`).
    """
    label = display_path(path)
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise errors.UsageError(f"cannot read: {getattr(e, 'strerror', None) or e}",
                                file=label) from None
    base = pathlib.Path(path).parent
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{label}:{number}"
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as e:
            raise errors.UsageError(f"cannot split the line: {e}", file=where) from None
        if not fields:
            continue
        rows.append((where, fields))
    cases = []
    counts: dict[str, int] = {}
    for _, fields in rows:
        counts[fields[0]] = counts.get(fields[0], 0) + 1
    for where, fields in rows:
        cases.append(_manifest_case(base, where, fields, duplicate=counts[fields[0]] > 1))
    if not cases:
        raise errors.UsageError("no cases in the manifest", file=label)
    return cases


def _manifest_case(base: pathlib.Path, where: str, fields: list[str], *, duplicate: bool) -> Case:
    syntax = "expected COMP ARG EXPECTED [CLIENTS] [FLAGS...] (ARG and CLIENTS may be '-')"
    positional = []
    for field in fields:
        if field.startswith("--") and len(positional) >= 3:
            break
        positional.append(field)
        if len(positional) == 4:
            break
    flags = fields[len(positional):]
    if len(positional) < 3 or any(f.startswith("--") for f in positional[:3]):
        raise errors.UsageError(syntax, file=where)
    comp, arg, expected = positional[:3]
    clients = None
    if len(positional) == 4 and positional[3] != "-":
        text = positional[3]
        if not text.isdigit():
            raise errors.UsageError(f"CLIENTS: expected a count or '-', got {text!r}; {syntax}",
                                    file=where)
        clients = int(text)
    return Case(
        name=f"{comp} ({where})" if duplicate else comp, comp=base / comp,
        expected=base / expected, arg=None if arg == "-" else base / arg, clients=clients,
        flags=tuple(flags), source=where)


# ------------------------------------------------------------------------------- one case

def load_expected(source, result_type, *, name: str, label: str = "--expect",
                  policy: policy_lib.Policy | None = None) -> Any:
    """The expected value, read with the computation's result type, under `policy` (default:
    `tffexec.policy.DEFAULT`): its limits, and its op check for any dataset graph in the value,
    run if the comparison reads the graph.

    A readable value of another type is a failed check (`CheckFailed`, exit 1: the result
    cannot match it); an unreadable file is an argument problem (exit 4).
    """
    from tffexec.checks import op_check  # noqa: PLC0415
    from tffexec.formats import loading  # noqa: PLC0415

    policy = policy or policy_lib.DEFAULT
    try:
        expected = loading.load_value(source, result_type, name=name, path="expected",
                                      policy=policy)
        op_check.guard_value(expected, result_type, policy, path="expected")
        return expected
    except errors.ArgumentError as typed_error:
        try:
            _, found_type = loading.load_typed_value(source, None, name=name, path="expected")
        except errors.ArgumentError:
            raise errors.ArgumentError(f"{label}: {typed_error.one_line()}") from None
        raise errors.CheckFailed(
            f"the result has type {result_type}, but {name} holds a value of type "
            f"{found_type} ({typed_error.message})") from None


class CaseRunner:
    """Checks cases one after another in this process, keeping one `Runner` per stack
    configuration (so stacks and imported graphs are reused across cases)."""

    def __init__(self) -> None:
        self._runners: dict[Any, Any] = {}

    def check(self, case: Case, settings: CaseSettings | None = None) -> Verdict:
        """Runs `case` and compares its result; never raises for a problem of the case."""
        settings = settings or default_settings(case)
        if case.problem is not None:
            message, code = case.problem
            return Verdict(case.name, FAIL if code == 1 else ERROR, code, message,
                           comp=str(case.comp))
        config = self._config(settings)
        start = time.perf_counter()
        try:
            differences = self._run(case, settings, config)
        except errors.TffexecError as e:
            return verdict_for_error(case, e, time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001 - one broken case must not stop the others
            return Verdict(case.name, ERROR, errors.InternalError.exit_code,
                           f"internal error: {type(e).__name__}: {' '.join(str(e).split())}",
                           time.perf_counter() - start, comp=str(case.comp))
        seconds = time.perf_counter() - start
        if differences:
            return Verdict(case.name, FAIL, errors.CheckFailed.exit_code,
                           mismatch_message(differences), seconds, tuple(differences),
                           comp=str(case.comp))
        return Verdict(case.name, PASS, 0, "", seconds, comp=str(case.comp))

    def _config(self, settings: CaseSettings):
        from tffexec.factories import config as config_lib  # noqa: PLC0415

        return settings.config or config_lib.StackConfig()

    def _runner(self, config):
        from tffexec import runner as runner_lib  # noqa: PLC0415

        runner = self._runners.get(config)
        if runner is None:
            runner = self._runners[config] = runner_lib.Runner(config)
        return runner

    def _run(self, case: Case, settings: CaseSettings, config) -> list[tuple[str, str]]:
        from tffexec import preflight  # noqa: PLC0415
        from tffexec.formats import compare  # noqa: PLC0415
        from tffexec.formats import loading  # noqa: PLC0415
        from tffexec.formats import row_sets  # noqa: PLC0415

        comp_name = display_path(case.comp)
        computation = loading.load_computation(case.comp, name=comp_name, policy=config.policy)
        sig = preflight.signature(computation, file=comp_name)
        argument = None
        if case.arg is not None:
            argument = preflight.load_checked_value(case.arg, sig.parameter_type,
                                                    policy=config.policy,
                                                    name=display_path(case.arg), path="arg")
        elif sig.parameter_type is not None:
            raise errors.ArgumentError(
                f"the computation needs an argument of type {sig.parameter_type}, and the case "
                f"has none ({', '.join(ARG_FILES)})", file=case.source or None)
        expected = load_expected(case.expected, sig.result_type,
                                 name=display_path(case.expected), label="expected value",
                                 policy=config.policy)
        try:
            result = self._runner(config).run(computation, argument, clients=settings.clients)
        except errors.ComputationError as e:
            raise e.with_file(comp_name) from None
        result, expected = row_sets.canonical(result, expected, case.compare)
        return compare.value_differences(result, expected, sig.result_type, rtol=settings.rtol,
                                         atol=settings.atol, path="result")

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()

    def __enter__(self) -> "CaseRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_settings(case: Case, base: CaseSettings | None = None) -> CaseSettings:
    """`base` (default: the local stack, run's tolerances) with the case's own client count
    and tolerances. Case `flags` need the CLI's parser (`tffexec.cli.case_flags`): a case that
    has them is refused here rather than run without them."""
    if case.flags:
        raise errors.UsageError(
            f"the case has flags ({' '.join(case.flags)}); run it with `tffexec check`, or pass "
            "settings that apply them", file=case.source or None)
    base = base or CaseSettings()
    return dataclasses.replace(
        base, clients=case.clients if case.clients is not None else base.clients,
        rtol=case.rtol if case.rtol is not None else base.rtol,
        atol=case.atol if case.atol is not None else base.atol)


def mismatch_message(differences: Sequence[tuple[str, str]]) -> str:
    """`result.x: got 1.5 vs expected 2.0`, plus how many more paths differ.

    `formats.compare` explains a difference as `A vs B` (got vs expected), after a prefix such
    as `3 of 4 differ; first at [2]: ` for arrays; the words go around the values.
    """
    path, explanation = differences[0]
    head, sep, values = explanation.rpartition(": ")
    if " vs " in values:
        got, _, want = values.partition(" vs ")
        explanation = f"{head}{sep}got {got} vs expected {want}"
    more = len(differences) - 1
    suffix = f" ({more} more path{'s' if more != 1 else ''} differ{'s' if more == 1 else ''})" \
        if more else ""
    return f"{path}: {explanation}{suffix}"


SettingsFor = Callable[[Case], CaseSettings]
