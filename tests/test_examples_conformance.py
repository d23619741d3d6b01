"""examples/conformance is a complete, self-contained stand-in for the public corpus.

The cases are written by real TFF 0.87 (examples/make_conformance.py), so a fresh clone can run the
conformance checks without the public corpus beside it. These tests check what the script promises: one
case per corpus case under the same name plus the tff.learning Keras cases, the corpus's files
and meta.json keys, type signatures that tffexec reads the same way, a small footprint, and that
the new kind of case (a tff.learning process step whose argument is a state plus datasets) runs
through `tffexec run --expect`.
"""
from __future__ import annotations

import json
import pathlib

import pytest
from click.testing import CliRunner

from tffexec.cli.main import cli
from tffexec.formats import loading
from tffexec.formats import types as tt

CONFORMANCE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "conformance"

#: The public corpus's case names (issue 13: same folder names), and the Keras learning cases.
CORPUS_NAMES = {
    "fed_aggregate_custom", "fed_broadcast_map_sum", "fed_eval_clients_sum", "fed_eval_server",
    "fed_mean_unweighted", "fed_mean_weighted", "fed_named_struct", "fed_secure_sum",
    "fed_select", "fed_sum_float32", "fed_sum_int32", "fed_value_clients_sum",
    "fed_value_server", "fed_zip_clients", "learn_fedavg_init", "learn_fedavg_logreg_round",
    "scale_fedavg_784x10_100clients_seeded", "scale_map_mean_10", "scale_map_mean_100",
    "scale_map_mean_1000", "seq_sequence_reduce_intrinsic", "seq_tf_reduce_then_sum",
    "tf_add_int32", "tf_dtypes_i64_f64_bool", "tf_matmul_float32", "tf_noarg_const",
    "tf_string_concat", "tf_struct_in_out",
}
LEARNING_NAMES = {"learn_keras_fedavg_init", "learn_keras_fedavg_next"}

#: The corpus's meta.json keys, in its order.
META_KEYS = ["name", "description", "type_signature", "parameter_type", "result_type", "has_arg",
             "computation_kind", "num_clients", "clients_source", "tff_version", "tf_version",
             "runtime", "timing", "sizes", "roundtrip_ok", "roundtrip_error",
             "wire_result_equals_expected"]

CASE_DIRS = sorted(p for p in CONFORMANCE.iterdir() if p.is_dir()) if CONFORMANCE.is_dir() else []


def _meta(case_dir: pathlib.Path) -> dict:
    return json.loads((case_dir / "meta.json").read_text())


def test_folder_holds_every_corpus_case_and_the_learning_cases():
    assert {p.name for p in CASE_DIRS} == CORPUS_NAMES | LEARNING_NAMES


def test_folder_stays_small():
    total = sum(f.stat().st_size for f in CONFORMANCE.rglob("*") if f.is_file())
    assert total < 3 * 1024 * 1024, f"examples/conformance holds {total} bytes"


@pytest.mark.parametrize("conformance_case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_case_has_the_corpus_files_and_meta_keys(conformance_case):
    case_dir = conformance_case
    meta = _meta(case_dir)
    assert list(meta) == META_KEYS
    assert meta["name"] == case_dir.name
    assert meta["tff_version"] == "0.87.0" and meta["roundtrip_ok"] is True
    wanted = {"comp.pb", "native_comp.pb", "expected.pb", "expected.json", "meta.json"}
    if meta["has_arg"]:
        wanted.add("arg.pb")
    assert {f.name for f in case_dir.iterdir()} == wanted
    assert meta["sizes"]["comp_pb"] == (case_dir / "comp.pb").stat().st_size


@pytest.mark.parametrize("conformance_case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_tffexec_reads_the_recorded_type_signature(conformance_case):
    case_dir = conformance_case
    meta = _meta(case_dir)
    for form in ("comp.pb", "native_comp.pb"):
        signature = tt.type_from_proto(loading.load_computation(case_dir / form).type)
        assert tt.type_str(signature) == meta["type_signature"], form
        assert tt.type_str(signature.result) == meta["result_type"], form


def _run_case(name: str, form: str):
    case_dir = CONFORMANCE / name
    args = ["run", str(case_dir / form)]
    if _meta(case_dir)["has_arg"]:
        args.append(str(case_dir / "arg.pb"))
    args += ["--expect", str(case_dir / "expected.pb"), "--quiet"]
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("name,form", [("learn_keras_fedavg_init", "comp.pb"),
                                       ("learn_keras_fedavg_init", "native_comp.pb"),
                                       ("learn_keras_fedavg_next", "comp.pb")])
def test_keras_learning_case_runs_to_tffs_result(name, form):
    result = _run_case(name, form)
    assert result.exit_code == 0, result.output


def test_both_forms_of_the_keras_step_run_in_one_process():
    """Their graphs hold different functions under one name (executors/tf_library.py)."""
    for form in ("comp.pb", "native_comp.pb"):
        result = _run_case("learn_keras_fedavg_next", form)
        assert result.exit_code == 0, f"{form}: {result.output[:300]}"
