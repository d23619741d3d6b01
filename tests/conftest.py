"""Shared fixtures: where the corpus and the generated example cases live."""
from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # tffexec_test_support

from tffexec_test_support import CORPUS, REPO  # noqa: E402

CASES = REPO / "examples" / "cases"


def case_dirs() -> list[pathlib.Path]:
    """Every corpus case (real TFF 0.87 output) and every generated example case."""
    dirs = sorted(p for p in CORPUS.iterdir() if (p / "comp.pb").exists()) if CORPUS.is_dir() else []
    dirs += sorted(p for p in CASES.iterdir() if (p / "comp.pb").exists()) if CASES.is_dir() else []
    return dirs


@pytest.fixture(scope="session")
def corpus_dir() -> pathlib.Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the corpus is missing at {CORPUS}; set TFFEXEC_CORPUS")
    return CORPUS


def pytest_generate_tests(metafunc):
    """Parametrizes `case_dir` over all cases and `case_form` over (case, comp file) pairs."""
    if "case_dir" in metafunc.fixturenames:
        dirs = case_dirs()
        metafunc.parametrize("case_dir", dirs, ids=[f"{d.parent.name}/{d.name}" for d in dirs])
    if "case_form" in metafunc.fixturenames:
        pairs = [(d, form) for d in case_dirs() for form in ("comp.pb", "native_comp.pb")
                 if (d / form).exists()]
        metafunc.parametrize("case_form", pairs,
                             ids=[f"{d.parent.name}/{d.name}/{f}" for d, f in pairs])
