"""`tffexec convert`, `tffexec template` and `tffexec benchmark` through Click's CliRunner."""
from __future__ import annotations

import io
import json
import pathlib

import federated_language
import numpy as np
import pytest

from tffexec.cli.main import cli
from tffexec.formats import loading
from tffexec.formats import values

REPO = pathlib.Path(__file__).resolve().parents[1]
MEAN = REPO / "examples" / "mean_of_clients"
FEDAVG = REPO / "examples" / "fedavg_round"
SLOW = REPO / "examples" / "slow_loop"



def _invoke(runner, *args, **kwargs):
    return runner.invoke(cli, [str(a) for a in args], **kwargs)


def _types(comp_path):
    function_type = federated_language.Type.from_proto(loading.load_computation(comp_path).type)
    return function_type.parameter, function_type.result


# --- convert ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("chain", [("npz", "json", "pb"), ("json", "npz", "pb"), ("pb", "json")])
def test_convert_chain_keeps_the_value(runner, tmp_path, chain):
    parameter_type, _ = _types(FEDAVG / "comp.pb")
    current = FEDAVG / "arg.pb"
    for i, fmt in enumerate(chain):
        dest = tmp_path / f"step{i}.{fmt}"
        result = _invoke(runner, "convert", current, dest, "--type-of", FEDAVG / "comp.pb")
        assert result.exit_code == 0, result.stderr
        assert result.stdout == ""
        current = dest
    got = loading.load_value(current, parameter_type)
    want = loading.load_value(FEDAVG / "arg.pb", parameter_type)
    assert values.values_equal(got, want, parameter_type) == []


def test_convert_pb_and_tagged_json_need_no_type(runner, tmp_path):
    result = _invoke(runner, "convert", FEDAVG / "expected.pb", tmp_path / "e.json")
    assert result.exit_code == 0, result.stderr
    document = json.loads((tmp_path / "e.json").read_text())
    assert document["type"] == "<model=<w=float32[3],b=float32>@SERVER,loss=float32@SERVER>"
    back = _invoke(runner, "convert", FEDAVG / "expected.json", tmp_path / "e.npz")
    assert back.exit_code == 0, back.stderr
    assert sorted(np.load(tmp_path / "e.npz").files) == ["loss", "model/b", "model/w"]


def test_convert_npz_needs_type_of(runner, tmp_path):
    result = _invoke(runner, "convert", FEDAVG / "arg.npz", tmp_path / "a.json")
    assert result.exit_code == 2
    assert "--type-of" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_convert_result_type_with_result_flag(runner, tmp_path):
    npz = tmp_path / "expected.npz"
    assert _invoke(runner, "convert", FEDAVG / "expected.pb", npz).exit_code == 0
    wrong = _invoke(runner, "convert", npz, tmp_path / "x.pb", "--type-of", FEDAVG / "comp.pb")
    assert wrong.exit_code == 4  # read with the parameter type: a mismatch naming the key
    right = _invoke(runner, "convert", npz, tmp_path / "x.pb", "--type-of", FEDAVG / "comp.pb",
                    "--result")
    assert right.exit_code == 0, right.stderr
    _, result_type = _types(FEDAVG / "comp.pb")
    got = loading.load_value(tmp_path / "x.pb", result_type)
    want = loading.load_value(FEDAVG / "expected.pb", result_type)
    assert values.values_equal(got, want, result_type) == []


def test_convert_plain_json_follows_the_type_and_loads_back(runner):
    result = _invoke(runner, "convert", FEDAVG / "arg.pb", "-", "--to", "json", "--plain")
    assert result.exit_code == 0, result.stderr
    plain = json.loads(result.stdout)
    assert plain["model"] == {"w": [0.0, 0.0, 0.0], "b": 0.0}
    assert len(plain["data"]) == 5 and len(plain["data"][0]["x"]) == 8
    parameter_type, _ = _types(FEDAVG / "comp.pb")
    got = loading.load_value(result.stdout_bytes, parameter_type, fmt="json")
    want = loading.load_value(FEDAVG / "arg.pb", parameter_type)
    assert values.values_equal(got, want, parameter_type) == []


def test_convert_stdin_to_stdout(runner):
    result = _invoke(runner, "convert", "-", "-", "--from", "npz", "--to", "pb", "--type-of",
                     MEAN / "comp.pb", input=(MEAN / "arg.npz").read_bytes())
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == _invoke(runner, "convert", MEAN / "arg.json", "-", "--to", "pb",
                                          "--type-of", MEAN / "comp.pb").stdout_bytes


@pytest.mark.parametrize("args, message", [
    (["out.txt"], "--to"),                      # unknown extension
    (["out.pb", "--plain"], "--plain"),         # --plain with pb
    (["out.pb", "--result"], "--type-of"),      # --result without --type-of
])
def test_convert_usage_errors(runner, tmp_path, args, message):
    result = _invoke(runner, "convert", MEAN / "arg.pb", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_convert_corrupt_input_is_exit_4_and_writes_nothing(runner, tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\xff\xff\xff")
    result = _invoke(runner, "convert", bad, tmp_path / "out.json")
    assert result.exit_code == 4
    assert "bad.pb" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pb"]


# --- template --------------------------------------------------------------------------------------

def test_template_loads_back_for_every_case_with_a_parameter(runner, case_dir):
    parameter_type, _ = _types(case_dir / "comp.pb")
    result = _invoke(runner, "template", case_dir / "comp.pb", "--clients", "2")
    if parameter_type is None:
        assert result.exit_code == 2 and "takes no argument" in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    value = loading.load_value(result.stdout_bytes, parameter_type, fmt="json")
    from tffexec.formats import normalize

    clients = normalize.infer_clients(value, parameter_type)
    assert clients in (None, 2)


@pytest.mark.parametrize("example", [MEAN, FEDAVG, SLOW], ids=lambda p: p.name)
def test_template_runs_as_it_is(runner, tmp_path, example):
    arg = tmp_path / "arg.json"
    made = _invoke(runner, "template", example / "comp.pb", "--output", arg)
    assert made.exit_code == 0 and made.stdout == ""
    result = _invoke(runner, "run", example / "comp.pb", arg, "--format", "json")
    assert result.exit_code == 0, result.stderr


def test_template_has_zeros_of_the_right_shapes_and_one_client(runner):
    result = _invoke(runner, "template", FEDAVG / "comp.pb")
    assert result.exit_code == 0
    skeleton = json.loads(result.stdout)
    assert skeleton["model"] == {"w": [0.0, 0.0, 0.0], "b": 0.0}
    assert len(skeleton["data"]) == 1
    assert np.array(skeleton["data"][0]["x"]).shape == (8, 3)
    assert skeleton["data"][0]["y"] == [0.0] * 8


# --- benchmark -------------------------------------------------------------------------------------

def test_benchmark_json_reports_stages_and_steady_state(runner):
    result = _invoke(runner, "benchmark", MEAN / "comp.pb", MEAN / "arg.pb", "--runs", "4",
                     "--warmup", "2", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "tffexec.benchmark/1"
    assert doc["clients"] == 10 and doc["warmup"] == 2
    assert len(doc["times_s"]) == 4 and doc["steady"]["runs"] == 4
    steady = doc["steady"]
    assert 0 < steady["min_s"] <= steady["median_s"] <= steady["max_s"]
    for key in ("stack_build_s", "first_call_s", "prepare_s"):
        assert doc[key] >= 0
    assert doc["load"]["computation_s"] > 0 and doc["load"]["argument_s"] > 0


def test_benchmark_accepts_stack_flags(runner):
    result = _invoke(runner, "benchmark", FEDAVG / "comp.pb", FEDAVG / "arg.json", "--runs", "2",
                     "--warmup", "0", "--stack", "threaded", "--threads", "2", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["stack"]["stack"] == "threaded" and doc["stack"]["threads"] == 2


def test_benchmark_table_names_each_stage(runner):
    result = _invoke(runner, "benchmark", MEAN / "comp.pb", MEAN / "arg.json", "--runs", "3",
                     env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.stderr
    for label in ("load computation", "build stack", "first call", "steady median"):
        assert label in result.stdout


def test_benchmark_of_no_argument_computation_uses_clients(runner, corpus_dir):
    result = _invoke(runner, "benchmark", corpus_dir / "fed_eval_clients_sum" / "comp.pb",
                     "--clients", "3", "--runs", "2", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["clients"] == 3


def test_benchmark_missing_argument_is_exit_4(runner):
    result = _invoke(runner, "benchmark", MEAN / "comp.pb")
    assert result.exit_code == 4


@pytest.mark.parametrize("flag", ["--runs", "--warmup"])
def test_benchmark_rejects_negative_counts(runner, flag):
    result = _invoke(runner, "benchmark", MEAN / "comp.pb", MEAN / "arg.pb", flag, "-1")
    assert result.exit_code == 2
