"""`tffexec run` flags through Click's CliRunner: --arg, --expect, pretty summaries and --full,
-q/-v/--debug, --timeout, environment variables."""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from tffexec.cli.main import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
MEAN = REPO / "examples" / "mean_of_clients"
FEDAVG = REPO / "examples" / "fedavg_round"
SLOW = REPO / "examples" / "slow_loop"
CASES = REPO / "examples" / "cases"



def _invoke(runner, *args, **kwargs):
    return runner.invoke(cli, [str(a) for a in args], **kwargs)


# --- --arg NAME=FILE -------------------------------------------------------------------------------

@pytest.mark.parametrize("data_file", ["data.npz", "data.json"])
def test_arg_pieces_assemble_the_struct_argument(runner, data_file):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", f"model={FEDAVG / 'model.pb'}",
                     "--arg", f"data={FEDAVG / data_file}", "--expect", FEDAVG / "expected.pb")
    assert result.exit_code == 0, result.stderr
    assert "ok: result matches" in result.stderr


def test_arg_pieces_in_any_order_give_the_same_result(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", f"data={FEDAVG / 'data.npz'}",
                     "--arg", f"model={FEDAVG / 'model.pb'}", "--format", "json")
    whole = _invoke(runner, "run", FEDAVG / "comp.pb", FEDAVG / "arg.pb", "--format", "json")
    assert result.exit_code == 0 and whole.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(whole.stdout)


def test_arg_unknown_name_is_exit_4_listing_the_element_names(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", f"model={FEDAVG / 'model.pb'}",
                     "--arg", f"dat={FEDAVG / 'data.json'}")
    assert result.exit_code == 4
    assert "'dat'" in result.stderr and "model, data" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_arg_missing_element_is_exit_4_naming_it(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", f"model={FEDAVG / 'model.pb'}")
    assert result.exit_code == 4
    assert "missing --arg for element data" in result.stderr


def test_arg_given_twice_is_usage_error(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", f"model={FEDAVG / 'model.pb'}",
                     "--arg", f"model={FEDAVG / 'model.pb'}", "--arg", f"data={FEDAVG / 'data.json'}")
    assert result.exit_code == 2
    assert "given twice" in result.stderr


def test_arg_without_equals_sign_is_usage_error(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", "model")
    assert result.exit_code == 2
    assert "NAME=FILE" in result.stderr


def test_arg_and_positional_argument_together_is_usage_error(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", FEDAVG / "arg.pb",
                     "--arg", f"model={FEDAVG / 'model.pb'}")
    assert result.exit_code == 2


def test_arg_piece_of_wrong_type_names_the_file_and_element_path(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", f"model={FEDAVG / 'data.json'}",
                     "--arg", f"data={FEDAVG / 'data.json'}")
    assert result.exit_code == 4
    assert "data.json" in result.stderr and "arg.model" in result.stderr


def test_arg_for_a_non_struct_parameter_is_exit_4(runner):
    result = _invoke(runner, "run", MEAN / "comp.pb", "--arg", f"readings={MEAN / 'arg.json'}")
    assert result.exit_code == 4
    assert "pass it as ARG" in result.stderr


def test_arg_names_unnamed_elements_by_position(runner, tmp_path):
    case = CASES / "generic_plus_int32"  # <int32[3],int32[3]>
    (tmp_path / "a.json").write_text("[1, 2, 3]")
    (tmp_path / "b.json").write_text("[10, 20, 30]")
    result = _invoke(runner, "run", case / "comp.pb", "--arg", f"0={tmp_path / 'a.json'}",
                     "--arg", f"1={tmp_path / 'b.json'}", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["value"]["value"] == [11, 22, 33]


def test_arg_piece_may_come_from_stdin(runner):
    result = _invoke(runner, "run", FEDAVG / "comp.pb", "--arg", f"model={FEDAVG / 'model.pb'}",
                     "--arg", "data=-", "--expect", FEDAVG / "expected.json",
                     input=(FEDAVG / "data.json").read_bytes())
    assert result.exit_code == 0, result.stderr


# --- --expect ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("expected", ["expected.pb", "expected.json"])
def test_expect_match_exits_0_and_prints_no_result(runner, expected):
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", MEAN / expected)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("ok: result matches")


def test_expect_accepts_npz_and_prints_result_with_format(runner, tmp_path):
    npz = tmp_path / "expected.npz"
    converted = _invoke(runner, "convert", FEDAVG / "expected.pb", npz)
    assert converted.exit_code == 0, converted.stderr
    result = _invoke(runner, "run", FEDAVG / "comp.pb", FEDAVG / "arg.npz", "--expect", npz,
                     "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "tffexec-value/1"


def _tensor_envelope(type_str, value):
    return json.dumps({"format": "tffexec-value/1", "type": type_str, "value": value})


def test_expect_mismatch_exits_1_listing_path_and_both_values(runner, tmp_path):
    expected = json.loads((FEDAVG / "expected.json").read_text())
    model = expected["value"]["struct"][0]["value"]["federated"]["values"][0]["struct"]
    model[0]["value"]["value"][1] = 42.0  # w[1]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(expected))
    result = _invoke(runner, "run", FEDAVG / "comp.pb", FEDAVG / "arg.pb", "--expect", wrong)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("result.model.w: 1 of 3 differ; first at [1]: ")
    assert "vs 42.0" in lines[0] and "(got vs expected)" in lines[0]
    assert lines[-1].startswith("Error: result differs from ") and "at 1 path" in lines[-1]
    assert result.stdout == ""


def test_expect_tolerances_decide_a_near_miss(runner, tmp_path):
    near = tmp_path / "near.json"
    near.write_text(_tensor_envelope("float32@SERVER", {"federated": {
        "placement": "server", "all_equal": True,
        "values": [{"dtype": "float32", "shape": [], "value": 21.001}]}}))
    strict = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", near)
    assert strict.exit_code == 1
    assert "result: 21.0 vs 21.00" in strict.stderr
    loose = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", near,
                    "--rtol", "1e-4")
    assert loose.exit_code == 0, loose.stderr
    absolute = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", near,
                       "--rtol", "0", "--atol", "0.01")
    assert absolute.exit_code == 0, absolute.stderr


def test_expect_of_another_type_is_a_failed_check(runner):
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb",
                     "--expect", FEDAVG / "expected.json")
    assert result.exit_code == 1
    assert "holds a value of type <model=" in result.stderr


def test_expect_unreadable_file_is_exit_4(runner, tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\xff\xff")
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", bad)
    assert result.exit_code == 4
    assert "--expect" in result.stderr and "bad.pb" in result.stderr


def test_expect_with_output_writes_the_result_too(runner, tmp_path):
    out = tmp_path / "result.pb"
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect",
                     MEAN / "expected.json", "--output", out)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb",
                                       "--format", "pb").stdout_bytes


# --- pretty output ----------------------------------------------------------------------------------

def test_pretty_summarises_large_tensors_and_full_prints_them(runner):
    summary = _invoke(runner, "run", SLOW / "comp.pb", SLOW / "arg.json", "--format", "pretty",
                      env={"COLUMNS": "200"})
    assert summary.exit_code == 0, summary.stderr
    assert "shape 64×64" in summary.stdout and "4,096 items" in summary.stdout
    assert "min " in summary.stdout and "mean " in summary.stdout and "max " in summary.stdout
    assert len(summary.stdout.splitlines()) < 10
    full = _invoke(runner, "run", SLOW / "comp.pb", SLOW / "arg.json", "--format", "pretty",
                   "--full", env={"COLUMNS": "200"})
    assert full.exit_code == 0
    assert "…" not in full.stdout and len(full.stdout.splitlines()) >= 64


def test_pretty_shows_client_counts_and_limits_clients_shown(runner, tmp_path):
    arg = tmp_path / "arg.json"
    arg.write_text(json.dumps([[float(i)] * 3 for i in range(12)]))
    case = CASES / "fed_zip_at_clients_nested"
    template = _invoke(runner, "template", case / "comp.pb", "--clients", "12")
    assert template.exit_code == 0
    result = _invoke(runner, "run", case / "comp.pb", "-", "--format", "pretty",
                     input=template.stdout, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "12 clients" in result.stdout
    assert "2 more clients (--full shows all)" in result.stdout
    full = _invoke(runner, "run", case / "comp.pb", "-", "--format", "pretty", "--full",
                   input=template.stdout, env={"COLUMNS": "200"})
    assert "client 11" in full.stdout


def test_pretty_shows_elements_per_client_for_sequences(runner):
    case = CASES / "seq_tf_dataset_out_clients"
    meta = json.loads((case / "meta.json").read_text())
    args = [case / "comp.pb"] + ([case / "arg.pb"] if (case / "arg.pb").exists() else [])
    result = _invoke(runner, "run", *args, "--clients", meta["num_clients"], "--format", "pretty",
                     env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "elements per client: 1..4 (total 10)" in result.stdout


# --- -q / -v / --debug --------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["group", "command"])
def test_verbose_logs_stages_to_stderr_only(runner, where):
    args = ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--format", "json"]
    args = ["-v", *args] if where == "group" else [*args, "-v"]
    result = _invoke(runner, *args)
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)  # stdout is the result only
    lines = result.stderr.splitlines()
    for stage in ("load computation", "load argument", "prepare", "build stack", "run"):
        assert f"tffexec: {stage}: started" in lines
        assert any(line.startswith(f"tffexec: {stage}: done in ") for line in lines)


def test_verbose_from_environment(runner):
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect",
                     MEAN / "expected.pb", env={"TFFEXEC_VERBOSE": "1"})
    assert result.exit_code == 0
    assert "tffexec: run: started" in result.stderr


def test_quiet_silences_notes_but_not_errors(runner):
    ok = _invoke(runner, "-q", "run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect",
                 MEAN / "expected.pb")
    assert ok.exit_code == 0 and ok.stderr == ""
    bad = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--clients", "3", "-q")
    assert bad.exit_code == 4 and bad.stderr.startswith("Error: ")


@pytest.mark.parametrize("where", ["group", "command"])
def test_debug_shows_traceback_of_a_real_failure(runner, where):
    args = ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--clients", "3"]
    args = ["--debug", *args] if where == "group" else [*args, "--debug"]
    result = _invoke(runner, *args)
    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: --clients 3 disagrees")


# --- --timeout, environment, outputs ---------------------------------------------------------------

def test_timeout_reached_is_exit_124_with_one_line_and_no_output(runner, tmp_path):
    out = tmp_path / "result.json"
    # ~40 us per step: the abandoned worker finishes in the background about 1.5 s later.
    (tmp_path / "n.json").write_text("40000")
    result = _invoke(runner, "run", SLOW / "comp.pb", tmp_path / "n.json", "--timeout", "0.2",
                     "--output", out)
    assert result.exit_code == 124
    assert result.stderr == "Error: stopped after --timeout 0.2 s; no output written\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "n.json"]


def test_timeout_not_reached_changes_nothing(runner):
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--timeout", "60",
                     "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["type"] == "float32@SERVER"


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_timeout_must_be_positive_seconds(runner, value):
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--timeout", value)
    assert result.exit_code == 2


def test_clients_and_seed_and_timeout_come_from_environment(runner, corpus_dir):
    comp = corpus_dir / "fed_eval_clients_sum" / "comp.pb"
    result = _invoke(runner, "run", comp, "--format", "json",
                     env={"TFFEXEC_CLIENTS": "4", "TFFEXEC_SEED": "7", "TFFEXEC_TIMEOUT": "60"})
    assert result.exit_code == 0, result.stderr
    four = json.loads(result.stdout)["value"]["federated"]["values"][0]["value"]
    expected = json.loads((corpus_dir / "fed_eval_clients_sum" / "expected.json").read_text())
    assert four == expected["value"]["federated"]["values"][0]["value"]  # TFF's, for 4 clients
    flag_wins = _invoke(runner, "run", comp, "--format", "json", "--clients", "2",
                        env={"TFFEXEC_CLIENTS": "4"})
    assert json.loads(flag_wins.stdout)["value"]["federated"]["values"][0]["value"] * 2 == four


def test_bad_environment_value_is_usage_error_naming_the_variable(runner):
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb",
                     env={"TFFEXEC_STACK": "cluster"})
    assert result.exit_code == 2
    assert "cluster" in result.stderr


@pytest.mark.parametrize("name", ["TFFEXEC_TRUST", "TFFEXEC_RUN_TRUST", "TFFEXEC_ALLOW_OP",
                                  "TFFEXEC_RUN_ALLOW_OP"])
def test_security_flags_never_come_from_environment(name):
    import click

    from tffexec.cli import run_cmd

    ctx = click.Context(run_cmd.run, info_name="run", auto_envvar_prefix="TFFEXEC_RUN")
    for param in run_cmd.run.params:
        if param.name in ("trust", "allow_op"):
            os.environ[name] = "1" if "TRUST" in name else "Foo"
            try:
                assert param.resolve_envvar_value(ctx) is None
            finally:
                del os.environ[name]


def test_output_with_unknown_extension_is_usage_error(runner, tmp_path):
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--output",
                     tmp_path / "result.txt")
    assert result.exit_code == 2 and "--format" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_output_format_flag_overrides_extension(runner, tmp_path):
    out = tmp_path / "result.bin"
    result = _invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--output", out,
                     "--format", "json")
    assert result.exit_code == 0
    assert json.loads(out.read_text())["type"] == "float32@SERVER"


def test_npz_argument_on_stdin_needs_arg_format(runner):
    data = (MEAN / "arg.npz").read_bytes()
    result = _invoke(runner, "run", MEAN / "comp.pb", "-", "--arg-format", "npz", "--format",
                     "npz", input=data)
    assert result.exit_code == 0, result.stderr
    import io

    assert float(np.load(io.BytesIO(result.stdout_bytes))["value"]) == 21.0


def test_verbose_logs_executor_client_work(runner):
    result = _invoke(runner, "-v", "run", FEDAVG / "comp.pb", FEDAVG / "arg.npz", "--expect",
                     FEDAVG / "expected.pb")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "tffexec: federated_map: started (5 to do)" in lines
    assert any(line.startswith("tffexec: federated_map: done (5) in ") for line in lines)
