"""Helpers shared by test modules: where the cases are, and how to run the installed script.

Test modules run under `--import-mode=importlib`, so they cannot import each other; conftest.py
puts this folder on `sys.path` so that they can all import this one module.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


#: Conformance cases made by real TFF 0.87 and committed in the repository
#: (`examples/make_conformance.py`); the folder names are those of the public corpus.
CONFORMANCE = REPO / "examples" / "conformance"

#: More TFF-made cases (one per intrinsic and feature), committed in the repository.
CASES = REPO / "examples" / "cases"

#: Cases whose answer shows where partial aggregates are merged (a `merge` that is not associative
#: with `accumulate`, e.g. a string join). TFF folds in client order and never merges, so the flat
#: stacks give TFF's answer; a composed stack merges its children's partials by design
#: (tests/test_aggregate_order.py checks how).
MERGE_SHOWS = frozenset({"fed_aggregate_string_join"})

#: The named cases tests refer to (`CORPUS / "fed_select"`): always the committed ones.
CORPUS = CONFORMANCE


def _external_corpus() -> pathlib.Path | None:
    """An optional extra corpus in the same format: `TFFEXEC_CORPUS`, else `../shared/corpus`.

    A `TFFEXEC_CORPUS` that names no folder is an error, not a silent skip.
    """
    env = os.environ.get("TFFEXEC_CORPUS")
    if env:
        path = pathlib.Path(env)
        if not path.is_dir():
            raise pytest.UsageError(f"TFFEXEC_CORPUS={env} is not a directory")
        return path.resolve()
    sibling = REPO.parent / "shared" / "corpus"
    return sibling.resolve() if sibling.is_dir() else None


#: An external corpus whose cases are added to the conformance tests, or None.
EXTERNAL_CORPUS = _external_corpus()


def _cases_in(root: pathlib.Path | None) -> list[pathlib.Path]:
    if root is None or not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "comp.pb").is_file())


def case_roots() -> dict[str, pathlib.Path]:
    """Label -> folder of every case collection the conformance tests run (external last)."""
    roots = {"conformance": CONFORMANCE, "cases": CASES}
    if EXTERNAL_CORPUS is not None:
        roots["corpus"] = EXTERNAL_CORPUS
    return roots


def all_case_dirs() -> list[pathlib.Path]:
    """Every case folder: the committed ones, then the external corpus's when present."""
    return [d for root in case_roots().values() for d in _cases_in(root)]


def case_id(case_dir: pathlib.Path) -> str:
    """`conformance/fed_select`, `cases/fed_broadcast`, `corpus/fed_select`: unique test ids."""
    for label, root in case_roots().items():
        if case_dir.parent == root:
            return f"{label}/{case_dir.name}"
    return f"{case_dir.parent.name}/{case_dir.name}"


def tffexec_script() -> str:
    """The installed `tffexec` console script of the Python running the tests."""
    candidate = pathlib.Path(sys.executable).parent / "tffexec"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("tffexec")
    if not found:
        pytest.fail("the tffexec console script is not installed next to this Python")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's TFFEXEC_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFFEXEC_")}
    env.update(extra)
    return env


def run_with_terminal_stderr(command: list[str], stdout_path: pathlib.Path,
                             env: dict[str, str]) -> tuple[int, bytes]:
    """Runs `command` (in the repository) with standard error on a pseudo-terminal and standard
    output into `stdout_path` (a file: a full pipe would block the run); returns its exit code
    and everything the terminal received."""
    master, slave = pty.openpty()
    with open(stdout_path, "wb") as stdout:
        proc = subprocess.Popen(command, stdout=stdout, stderr=slave, stdin=subprocess.DEVNULL,
                                env=env, cwd=REPO)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed once the process ended
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=60), seen


def sigint_as_from_a_terminal() -> None:
    """`preexec_fn` for a child that receives Ctrl-C: SIGINT back to its default disposition.

    A test run started in the background of a non-interactive shell (`cmd &`, as some CI
    harnesses do) inherits SIGINT ignored, and Python then never installs its Ctrl-C handler in
    the child; a user's terminal delivers Ctrl-C with the default disposition.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def case_param(case_dir: pathlib.Path, value, suffix: str = ""):
    """`pytest.param(value)` with the case's id, marked `external_corpus` when it comes from there
    (`.ci/run` selects those with `-m external_corpus`)."""
    marks = [pytest.mark.external_corpus] if (
        EXTERNAL_CORPUS is not None and case_dir.parent == EXTERNAL_CORPUS) else []
    return pytest.param(value, id=case_id(case_dir) + suffix, marks=marks)


def expect_tolerances() -> tuple[float, float]:
    """`tffexec run --expect`'s default (rtol, atol), read from the command itself."""
    from tffexec.cli import run_cmd  # noqa: PLC0415

    defaults = {param.name: param.default for param in run_cmd.run.params}
    return defaults["rtol"], defaults["atol"]


def check_case_form(runner, case: pathlib.Path, form: str) -> list[str]:
    """Runs one form (`comp.pb` or `native_comp.pb`) of a corpus-format case on `runner`.

    Returns what is wrong: the error, or the paths where the result differs from `expected.pb`
    under `run --expect`'s comparison (empty when it matches). A case whose values come from
    stateful random ops is checked for its type only.
    """
    import federated_language  # noqa: PLC0415

    from tffexec.checks import op_check  # noqa: PLC0415
    from tffexec.formats import compare, loading, values  # noqa: PLC0415
    from tffexec.formats.protos import executor_pb2  # noqa: PLC0415

    meta = json.loads((case / "meta.json").read_text()) if (case / "meta.json").exists() else {}
    comp = loading.load_computation(case / form)
    result_type = federated_language.Type.from_proto(comp.type).result
    arg = (executor_pb2.Value.FromString((case / "arg.pb").read_bytes())
           if (case / "arg.pb").exists() else None)
    try:
        result = runner.run(comp, arg, clients=meta.get("num_clients"))
    except Exception as e:  # noqa: BLE001 - reported, with its kind, as the case's problem
        return [f"{type(e).__name__}: {e}"]
    if meta.get("random") or "stateful random" in str(meta.get("roundtrip_error")):
        values.normalize(result, result_type, path="result")
        return []
    expected = loading.load_value(case / "expected.pb", result_type, path="expected")
    # Loaders check no ops; comparing reads the expected sequences' dataset graphs.
    op_check.check_value(expected, result_type, runner.config.policy, path="expected")
    rtol, atol = expect_tolerances()
    return [f"{path}: {text}" for path, text in compare.value_differences(
        result, expected, result_type, rtol=rtol, atol=atol, path="result")]


def stack_configs() -> dict:
    """The stacks the many-computations checks use, by name (also in child processes)."""
    from tffexec.factories import config as config_lib  # noqa: PLC0415

    return {"local": config_lib.StackConfig(),
            "local-nobatch": config_lib.StackConfig(batch=False),
            "threaded": config_lib.StackConfig(kind="threaded", threads=3, clients_per_thread=1)}


def run_cases_in_order(plan: dict) -> dict:
    """For a child process: every case of `plan["cases"]` in `plan["forms"]` order, on each
    stack of `plan["stacks"]` (one Runner per stack, stack after stack). Returns the number of
    runs and the problems found, one line each."""
    from tffexec import runner as runner_lib  # noqa: PLC0415

    stacks = stack_configs()
    runs, problems = 0, []
    for stack in plan["stacks"]:
        with runner_lib.Runner(stacks[stack]) as runner:
            for case in map(pathlib.Path, plan["cases"]):
                for form in plan["forms"]:
                    if (case / form).exists():
                        runs += 1
                        problems += [f"{stack}: {case.parent.name}/{case.name}/{form}: {p}"
                                     for p in check_case_form(runner, case, form)]
    return {"runs": runs, "problems": problems}


@contextlib.contextmanager
def ray_head(env: dict[str, str], *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A one-CPU Ray head on loopback, started like a user would (`ray start --head --block`,
    with `extra` flags): yields (address, process) and stops exactly that head at the end
    (SIGTERM to the blocking `ray start`, which stops its processes; a global `ray stop` would
    also stop every other Ray on the machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = subprocess.Popen(
        [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--head",
         "--port", str(port), "--num-cpus", "1", "--include-dashboard=false",
         "--disable-usage-stats", "--node-ip-address", "127.0.0.1", *extra, "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("`ray start --head` did not come up")
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", head
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
