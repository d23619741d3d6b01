"""What `pip install tffexec[...]` gets: the built wheel's metadata and files, and a run without TF.

The wheel is built offline from a copy of the sources (setuptools' PEP 517 backend in a child
process, no network, nothing written into the repository) and read as pip would read it.
"""
from __future__ import annotations

import configparser
import email.parser
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from tffexec_test_support import REPO, clean_env

# What setup.cfg maps into the `tffexec` package, plus what its metadata reads.
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE",
           "api", "checks", "cli", "executors", "factories", "formats")
TENSORFLOW_NAMES = {"tensorflow", "tensorflow-cpu"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The wheel setuptools builds from the repository's sources."""
    root = tmp_path_factory.mktemp("wheel")
    src, out = root / "src", root / "out"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True,
                          text=True, timeout=300, env=clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


def _metadata(wheel: pathlib.Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def _requirements_by_extra(wheel: pathlib.Path) -> dict[str, set[str]]:
    """Extra ('' for the base install) -> the distribution names it requires."""
    by_extra: dict[str, set[str]] = {}
    for line in _metadata(wheel).get_all("Requires-Dist"):
        requirement, _, marker = line.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        project = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0).lower()
        by_extra.setdefault(extra.group(1) if extra else "", set()).add(project)
    return by_extra


def test_base_install_requires_no_tensorflow(wheel):
    base = _requirements_by_extra(wheel)[""]
    assert "federated-language" in base and "numpy" in base
    assert not base & TENSORFLOW_NAMES, base


def test_each_tensorflow_extra_pulls_only_its_own_distribution(wheel):
    extras = _requirements_by_extra(wheel)
    assert extras["tensorflow"] & TENSORFLOW_NAMES == {"tensorflow"}
    assert extras["tensorflow-cpu"] & TENSORFLOW_NAMES == {"tensorflow-cpu"}


def test_tensorflow_appears_under_no_other_extra_than_its_own_and_test(wheel):
    with_tf = {extra for extra, names in _requirements_by_extra(wheel).items()
               if names & TENSORFLOW_NAMES}
    assert with_tf == {"tensorflow", "tensorflow-cpu", "test"}


def test_test_extra_brings_tensorflow_and_the_test_tools(wheel):
    extras = _requirements_by_extra(wheel)
    assert {"tensorflow", "pytest", "hypothesis", "setuptools"} <= extras["test"]
    assert set(_metadata(wheel).get_all("Provides-Extra")) >= {
        "tensorflow", "tensorflow-cpu", "test", "ray", "plot"}


def test_tensorflow_extras_record_a_minimum_version(wheel):
    lines = [line for line in _metadata(wheel).get_all("Requires-Dist")
             if re.match(r"tensorflow(-cpu)?\b", line)]
    assert lines and all(re.search(r">=\s*2\.\d+", line) for line in lines), lines


def test_wheel_ships_the_license_and_py_typed(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "tffexec/py.typed" in names
        licenses = [n for n in names if ".dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
        assert len(licenses) == 1, names
        assert archive.read(licenses[0]) == (REPO / "LICENSE").read_bytes()


def test_license_file_is_the_license_setup_cfg_declares():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert config["metadata"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it


# --- a run without TensorFlow ----------------------------------------------------------------------

# `None` in sys.modules makes `import tensorflow` fail exactly as it does when no TensorFlow
# distribution is installed (ModuleNotFoundError for "tensorflow").
_WITHOUT_TF = ("import sys; sys.modules['tensorflow'] = None; "
               "from tffexec.cli.main import main; sys.argv[0] = 'tffexec'; main()")


def _run_without_tensorflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WITHOUT_TF, *args], cwd=REPO, text=True,
                          capture_output=True, timeout=300, env=clean_env())


def test_run_needing_tensorflow_without_it_names_the_extras_and_exits_7():
    proc = _run_without_tensorflow("run", "examples/fedavg_round/comp.pb",
                                   "examples/fedavg_round/arg.pb")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert "TensorFlow" in lines[0] and "not installed" in lines[0]
    assert "tffexec[tensorflow]" in lines[0] and "tffexec[tensorflow-cpu]" in lines[0]


def test_graph_free_run_works_without_tensorflow():
    proc = _run_without_tensorflow("run", "examples/mean_of_clients/comp.pb",
                                   "examples/mean_of_clients/arg.json", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert '"float32@SERVER"' in proc.stdout
