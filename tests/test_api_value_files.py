"""The Python API's value files: `tffexec.load_value` / `tffexec.save_value`, paths as `run`
arguments, and what `dir(tffexec)` shows."""
from __future__ import annotations

import pathlib

import federated_language as fl
import numpy as np
import pytest
from federated_language.common_libs import structure

import tffexec
from tffexec import errors
from tffexec.formats import compare
from tffexec.formats import loading

from tffexec_test_support import REPO

CASES = REPO / "examples" / "cases"
MEAN = REPO / "examples" / "mean_of_clients"  # ({float32}@CLIENTS -> float32@SERVER), no graphs
TFF_MADE = sorted(p.parent for p in CASES.glob("*/arg.pb"))


def _parameter_type(case: pathlib.Path) -> fl.Type:
    return fl.Type.from_proto(loading.load_computation(case / "comp.pb").type).parameter


def test_dir_lists_the_public_names_including_lazy_ones():
    names = dir(tffexec)
    for public in ("run", "Runner", "StackConfig", "install_context", "load_value", "save_value",
                   "__version__"):
        assert public in names
    assert "_LAZY" not in names and "annotations" not in names
    assert set(tffexec.__all__) <= set(names)


def test_package_docstring_documents_load_and_save():
    assert "tffexec.load_value(" in tffexec.__doc__ and "tffexec.save_value(" in tffexec.__doc__


@pytest.mark.parametrize("case", TFF_MADE, ids=lambda p: p.name)
def test_pb_saved_from_a_tff_made_file_is_byte_identical(case, tmp_path):
    parameter = _parameter_type(case)
    value = tffexec.load_value(case / "arg.pb", parameter)
    tffexec.save_value(value, tmp_path / "arg.pb", parameter)
    assert (tmp_path / "arg.pb").read_bytes() == (case / "arg.pb").read_bytes()


@pytest.mark.parametrize("suffix", [".pb", ".json", ".npz"])
def test_save_then_load_gives_the_same_value(tmp_path, suffix):
    case = CASES / "fed_weighted_mean_struct"
    parameter = _parameter_type(case)
    value = tffexec.load_value(case / "arg.pb", parameter)
    target = tmp_path / f"arg{suffix}"
    tffexec.save_value(value, target, parameter)
    again = tffexec.load_value(str(target), parameter)  # a str is a path for load_value
    assert compare.value_differences(again, value, parameter) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary left


def test_load_value_takes_bytes_and_sniffs_the_format():
    data = (MEAN / "arg.json").read_bytes()
    from_bytes = tffexec.load_value(data, _parameter_type(MEAN))
    from_file = tffexec.load_value(MEAN / "arg.json", _parameter_type(MEAN))
    assert compare.value_differences(from_bytes, from_file, _parameter_type(MEAN)) == []


def test_load_value_without_type_reads_a_self_describing_pb():
    value = tffexec.load_value(MEAN / "expected.pb")
    assert np.asarray(value).dtype == np.float32


def test_save_value_infers_the_type_of_arrays_and_structs(tmp_path):
    value = structure.Struct([("w", np.array([1.5, 2.25], np.float32)), ("n", np.int32(3))])
    tffexec.save_value(value, tmp_path / "v.pb")
    loaded = tffexec.load_value(tmp_path / "v.pb")
    assert loaded.w.tolist() == [1.5, 2.25] and loaded.w.dtype == np.float32
    assert int(loaded.n) == 3 and loaded.n.dtype == np.int32


def test_save_value_of_a_list_without_type_asks_for_it(tmp_path):
    with pytest.raises(errors.ArgumentError, match="pass type="):
        tffexec.save_value([np.float32(1.0), np.float32(2.0)], tmp_path / "v.pb")
    assert not list(tmp_path.iterdir())


def test_save_value_with_unknown_extension_names_the_file(tmp_path):
    with pytest.raises(errors.ArgumentError, match=r"v\.txt"):
        tffexec.save_value(np.float32(1.0), tmp_path / "v.txt")


def test_load_value_of_a_wrong_type_names_the_file_and_place():
    with pytest.raises(errors.ArgumentError, match="arg.pb") as raised:
        tffexec.load_value(MEAN / "arg.pb", fl.TensorType(np.int32))
    assert "int32" in str(raised.value)


def test_run_takes_a_path_argument_in_any_format():
    results = {suffix: tffexec.run(MEAN / "comp.pb", MEAN / f"arg{suffix}")
               for suffix in (".pb", ".json", ".npz")}
    expected = tffexec.load_value(MEAN / "expected.pb")
    for result in results.values():
        assert float(result) == float(expected)


def test_runner_run_takes_a_path_argument():
    with tffexec.Runner() as runner:
        result = runner.run(MEAN / "comp.pb", pathlib.Path(MEAN / "arg.pb"))
    assert float(result) == float(tffexec.load_value(MEAN / "expected.pb"))


def test_a_str_argument_stays_a_value_not_a_path():
    # The parameter is {float32}@CLIENTS: a file name given as str is not read from disk.
    with pytest.raises(errors.ArgumentError) as raised:
        tffexec.run(MEAN / "comp.pb", str(MEAN / "arg.pb"))
    assert "cannot read" not in str(raised.value)


def test_a_path_argument_that_does_not_exist_is_an_argument_error(tmp_path):
    with pytest.raises(errors.ArgumentError, match="missing.pb"):
        tffexec.run(MEAN / "comp.pb", tmp_path / "missing.pb")
