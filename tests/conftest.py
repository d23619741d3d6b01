"""Shared fixtures: where the committed conformance cases (and an optional external corpus) live."""
from __future__ import annotations

import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # tffexec_test_support

from tffexec_test_support import (  # noqa: E402
    CONFORMANCE, EXTERNAL_CORPUS, all_case_dirs, case_id, case_param)


def case_dirs() -> list[pathlib.Path]:
    """Every committed case (real TFF 0.87 output) and, when present, the external corpus's."""
    return all_case_dirs()


@pytest.fixture
def runner(monkeypatch):
    """click's CliRunner in an environment without the developer's TFFEXEC_* settings.

    (Modules that need a tffexec `Runner` under this name define their own fixture.)"""
    from click.testing import CliRunner  # noqa: PLC0415 - only the CLI tests need it

    for key in list(os.environ):
        if key.startswith("TFFEXEC_"):
            monkeypatch.delenv(key)
    return CliRunner()


@pytest.fixture
def leaf_calls(monkeypatch) -> list:
    """The function types of the calls the leaf TensorFlow executor makes (one per client, or
    per server value, when a call is not batched), in order."""
    from tffexec.executors import tensorflow_executor  # noqa: PLC0415

    calls: list = []
    original = tensorflow_executor.TensorFlowExecutor.call

    def counting(self, function, argument=None):
        calls.append(function.type_signature)
        return original(self, function, argument)

    monkeypatch.setattr(tensorflow_executor.TensorFlowExecutor, "call", counting)
    return calls


@pytest.fixture(scope="session")
def corpus_dir() -> pathlib.Path:
    """The committed conformance cases (named like the public corpus: `fed_select`, ...)."""
    if not CONFORMANCE.is_dir():
        pytest.fail(f"the committed conformance cases are missing at {CONFORMANCE}")
    return CONFORMANCE


def pytest_generate_tests(metafunc):
    """Parametrizes `case_dir` over all cases and `case_form` over (case, comp file) pairs."""
    if "case_dir" in metafunc.fixturenames:
        metafunc.parametrize("case_dir", [case_param(d, d) for d in case_dirs()])
    if "case_form" in metafunc.fixturenames:
        metafunc.parametrize("case_form", [
            case_param(d, (d, form), suffix=f"/{form}") for d in case_dirs()
            for form in ("comp.pb", "native_comp.pb") if (d / form).exists()])


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "external_corpus: a test of a case from the external corpus (TFFEXEC_CORPUS)")


def _corpus_line() -> str:
    if EXTERNAL_CORPUS is None:
        return ("external corpus: none (set TFFEXEC_CORPUS=DIR, or place it at ../shared/corpus, "
                "to add its cases to the conformance tests)")
    count = sum(1 for d in all_case_dirs() if d.parent == EXTERNAL_CORPUS)
    return f"external corpus: {EXTERNAL_CORPUS} ({count} cases added)"


def pytest_report_header(config):
    return _corpus_line()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(_corpus_line())
