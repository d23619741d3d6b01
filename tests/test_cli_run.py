"""`tffexec run`: results on stdout or in a file, in every format, and one-line errors."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tffexec.cli.main import cli
from tffexec.formats import loading
from tffexec.formats import values

REPO = pathlib.Path(__file__).resolve().parents[1]
MEAN = REPO / "examples" / "mean_of_clients"


def test_run_prints_json_result_when_stdout_is_not_a_terminal(runner):
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb")])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["format"] == "tffexec-value/1"
    assert document["type"] == "float32@SERVER"
    expected = json.loads((MEAN / "expected.json").read_text())
    assert document["value"] == expected["value"]


def test_run_accepts_plain_json_argument(runner):
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.json"),
                                 "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["value"] == json.loads(
        (MEAN / "expected.json").read_text())["value"]


def test_run_pretty_format_shows_type_and_value(runner):
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb"),
                                 "--format", "pretty"])
    assert result.exit_code == 0, result.stderr
    assert "float32@SERVER" in result.stdout


@pytest.mark.parametrize("suffix", [".pb", ".json", ".npz"])
def test_run_output_file_round_trips_to_expected_value(runner, tmp_path, suffix):
    out = tmp_path / f"result{suffix}"
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb"),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    comp = loading.load_computation(MEAN / "comp.pb")
    import federated_language

    result_type = federated_language.Type.from_proto(comp.type).result
    got = loading.load_value(out, result_type)
    expected = loading.load_value(MEAN / "expected.pb", result_type)
    assert values.values_equal(got, expected, result_type, rtol=1e-6) == []


def test_run_pb_to_stdout_is_a_value_proto(runner):
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb"),
                                 "--format", "pb"])
    assert result.exit_code == 0
    from tffexec.formats.protos import executor_pb2

    value = executor_pb2.Value.FromString(result.stdout_bytes)
    assert value.WhichOneof("value") == "federated"


def test_run_reads_computation_from_stdin(runner):
    result = runner.invoke(cli, ["run", "-", str(MEAN / "arg.json")],
                           input=(MEAN / "comp.pb").read_bytes())
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["type"] == "float32@SERVER"


def test_clients_disagreeing_with_argument_is_exit_4(runner):
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb"),
                                 "--clients", "3"])
    assert result.exit_code == 4
    assert "3" in result.stderr and "10" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_client_count_is_exit_4_naming_the_flag(runner, corpus_dir):
    result = runner.invoke(cli, ["run", str(corpus_dir / "fed_eval_clients_sum" / "comp.pb")])
    assert result.exit_code == 4
    assert "--clients" in result.stderr


def test_no_arg_computation_with_clients_flag_runs(runner, corpus_dir):
    result = runner.invoke(cli, ["run", str(corpus_dir / "fed_eval_clients_sum" / "comp.pb"),
                                 "--clients", "4", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    # TFF's result for 4 clients (each evaluates the same constant; the sum is 4 times it).
    expected = json.loads((corpus_dir / "fed_eval_clients_sum" / "expected.json").read_text())
    assert json.loads(result.stdout)["value"] == expected["value"]


def test_argument_of_wrong_type_is_exit_4_with_path(runner, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([1.0, "x"] + [0.0] * 8))
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(bad)])
    assert result.exit_code == 4
    assert "bad.json" in result.stderr and "arg[1]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_argument_is_exit_4(runner):
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb")])
    assert result.exit_code == 4
    assert "{float32}@CLIENTS" in result.stderr


def test_failed_run_leaves_no_output_file(runner, tmp_path):
    out = tmp_path / "result.json"
    result = runner.invoke(cli, ["run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb"),
                                 "--clients", "2", "--output", str(out)])
    assert result.exit_code == 4
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_corrupt_computation_is_exit_3(runner, tmp_path):
    bad = tmp_path / "comp.pb"
    bad.write_bytes((MEAN / "comp.pb").read_bytes()[:40])
    result = runner.invoke(cli, ["run", str(bad), str(MEAN / "arg.pb")])
    assert result.exit_code == 3
    assert "comp.pb" in result.stderr and "Traceback" not in result.stderr


def test_installed_console_script_runs_example_in_a_pipe():
    proc = subprocess.run(
        [sys.executable, "-m", "tffexec", "run", str(MEAN / "comp.pb"), str(MEAN / "arg.pb")],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["type"] == "float32@SERVER"
    assert proc.stderr == ""
