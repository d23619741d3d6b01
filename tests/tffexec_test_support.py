"""Helpers shared by test modules: where the corpus is, and how to run the installed script.

Test modules run under `--import-mode=importlib`, so they cannot import each other; conftest.py
puts this folder on `sys.path` so that they can all import this one module.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _corpus_dir() -> pathlib.Path:
    env = os.environ.get("TFFEXEC_CORPUS")
    for candidate in ([pathlib.Path(env)] if env else []) + [
            REPO.parent / "shared" / "corpus", pathlib.Path("/work/shared/corpus")]:
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "corpus"  # missing: the tests using it fail, loudly


#: Real TFF 0.87 cases (read-only; `TFFEXEC_CORPUS` overrides where they are).
CORPUS = _corpus_dir()


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


def sigint_as_from_a_terminal() -> None:
    """`preexec_fn` for a child that receives Ctrl-C: SIGINT back to its default disposition.

    A test run started in the background of a non-interactive shell (`cmd &`, as some CI
    harnesses do) inherits SIGINT ignored, and Python then never installs its Ctrl-C handler in
    the child; a user's terminal delivers Ctrl-C with the default disposition.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
