"""The commands agree with each other: --format names, -v/-q/--debug on either side of the
command, --output into a missing folder, several files for inspect/validate, --clients that
changes nothing, `run --plain`, `convert X -`, `compare`, `--version` (click's CliRunner)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tffexec.cli import main

from tffexec_test_support import REPO

MEAN = REPO / "examples" / "mean_of_clients"  # ({float32}@CLIENTS -> float32@SERVER), no graphs
FEDAVG = REPO / "examples" / "fedavg_round"  # -> <model=<w,b>@SERVER,loss=float32@SERVER>
SERVER_ONLY = REPO / "examples" / "cases" / "generic_plus_server"  # no CLIENTS placement



def invoke(runner, *args, **kwargs):
    return runner.invoke(main.cli, [str(a) for a in args], **kwargs)


def _documents(text: str) -> list:
    """Every JSON document in a stream of them (what `jq` reads)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        document, i = decoder.raw_decode(text, i)
        out.append(document)
    return out


# --- run --plain ---------------------------------------------------------------------------------

def test_run_plain_prints_the_plain_json_that_jq_reads(runner):
    result = invoke(runner, "run", FEDAVG / "comp.pb", FEDAVG / "arg.pb", "--plain")
    assert result.exit_code == 0, result.stderr
    plain = json.loads(result.stdout)
    assert sorted(plain) == ["loss", "model"] and sorted(plain["model"]) == ["b", "w"]
    expected = invoke(runner, "convert", FEDAVG / "expected.pb", "-", "--plain")
    assert expected.exit_code == 0, expected.stderr
    assert np.float32(plain["loss"]) == pytest.approx(json.loads(expected.stdout)["loss"],
                                                      rel=1e-5)


def test_run_plain_matches_convert_plain_of_the_saved_result(runner, tmp_path):
    saved = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "-o", tmp_path / "r.pb")
    assert saved.exit_code == 0, saved.stderr
    plain = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--plain")
    converted = invoke(runner, "convert", tmp_path / "r.pb", "-", "--plain")
    assert plain.stdout == converted.stdout and json.loads(plain.stdout) == 21.0


def test_plain_from_the_environment(runner):
    result = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", env={"TFFEXEC_PLAIN": "1"})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == 21.0


def test_plain_from_the_environment_leaves_other_formats_alone(runner, tmp_path):
    result = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "-o", tmp_path / "r.pb",
                    env={"TFFEXEC_PLAIN": "1"})
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "r.pb").read_bytes() == (MEAN / "expected.pb").read_bytes()


def test_plain_flag_with_a_binary_format_is_a_usage_error(runner):
    result = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--plain", "--format", "pb")
    assert result.exit_code == 2
    assert "--plain writes JSON" in result.stderr


def test_plain_into_a_json_file(runner, tmp_path):
    result = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--plain", "-o",
                    tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text()) == 21.0


# --- --format names ------------------------------------------------------------------------------

def _format_option(command):
    return next((p for p in command.params if p.name and "format" in p.name
                 and "--format" in p.opts), None)


def test_every_format_option_says_text_and_takes_the_old_names_case_insensitively():
    commands = {name: _format_option(cmd) for name, cmd in main.cli.commands.items()}
    with_format = {name: option for name, option in commands.items() if option is not None}
    assert {"run", "inspect", "iterate", "benchmark"} <= set(with_format)
    for name, option in with_format.items():
        assert "text" in option.type.choices, name
        assert "pretty" not in option.type.choices and "table" not in option.type.choices, name
        for alias in ("pretty", "table", "Pretty", "TABLE", "Text"):
            assert option.type.convert(alias, option, None) == "text", (name, alias)
        assert option.type.convert("JSON", option, None) == "json", name


@pytest.mark.parametrize("spelling", ["text", "pretty", "TEXT"])
def test_run_text_format_under_its_names(runner, spelling):
    result = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--format", spelling)
    assert result.exit_code == 0, result.stderr
    assert "float32@SERVER" in result.stdout and "{" not in result.stdout


@pytest.mark.parametrize("spelling", ["json", "JSON", "Json"])
def test_inspect_json_format_is_case_insensitive(runner, spelling):
    result = invoke(runner, "inspect", MEAN / "comp.pb", "--format", spelling)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["schema"] == "tffexec.inspect/1"


def test_value_formats_are_case_insensitive(runner):
    result = invoke(runner, "convert", MEAN / "arg.pb", "-", "--to", "JSON")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "tffexec-value/1"


def test_benchmark_has_format_json(runner):
    result = invoke(runner, "benchmark", MEAN / "comp.pb", MEAN / "arg.pb", "--runs", 1,
                    "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "tffexec.benchmark/1" and "import_tensorflow_s" in document


# --- -v / -q / --debug before and after every command ----------------------------------------

def _bad_invocations(tmp_path) -> dict[str, tuple[list, int]]:
    """Per command: arguments that fail on a garbage input file, and the exit code."""
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff\xfe not a protobuf")
    clients = tmp_path / "clients"
    clients.mkdir(exist_ok=True)
    return {
        "inspect": ([bad], 3),
        "validate": ([bad], 3),
        "run": ([bad], 3),
        "benchmark": ([bad], 3),
        "template": ([bad], 3),
        "convert": ([bad, tmp_path / "out.json"], 4),
        "compare": ([bad, bad], 4),
        "iterate": (["--init", bad, "--next", bad, "--data", clients, "--rounds", 1], 3),
    }


def test_every_command_takes_the_global_flags():
    """New commands too: -v, -q and --debug are accepted after every command."""
    for name, command in main.cli.commands.items():
        options = {opt for param in command.params for opt in param.opts}
        assert {"-v", "-q", "--debug"} <= options, name


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("flag", ["-v", "-q", "--debug"])
def test_global_flags_work_before_and_after_each_command(runner, tmp_path, where, flag):
    invocations = _bad_invocations(tmp_path)
    assert set(invocations) >= set(main.cli.commands) - {"check"}  # a new command: add it here
    for name, (args, code) in invocations.items():
        argv = [flag, name, *args] if where == "before" else [name, *args, flag]
        result = invoke(runner, *argv)
        assert result.exit_code == code, (name, argv, result.stderr)
        assert result.stderr.rstrip().splitlines()[-1].startswith("Error: "), (name, argv)
        has_traceback = "Traceback (most recent call last)" in result.stderr
        assert has_traceback == (flag == "--debug"), (name, argv, result.stderr)


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_silences_notes(runner, where):
    args = ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--expect", MEAN / "expected.pb"]
    loud = invoke(runner, *args)
    assert loud.exit_code == 0 and loud.stderr.startswith("ok: ")
    quiet = invoke(runner, *(["-q", *args] if where == "before" else [*args, "-q"]))
    assert quiet.exit_code == 0 and quiet.stderr == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_logs_stages(runner, where):
    args = ["run", MEAN / "comp.pb", MEAN / "arg.pb"]
    result = invoke(runner, *(["-v", *args] if where == "before" else [*args, "-v"]))
    assert result.exit_code == 0, result.stderr
    assert "tffexec: load computation: started" in result.stderr


# --- --output into a missing folder ----------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["run", MEAN / "comp.pb", MEAN / "arg.pb", "--output", "{missing}/r.json"],
    ["template", MEAN / "comp.pb", "--output", "{missing}/t.json"],
    ["convert", MEAN / "arg.pb", "{missing}/a.json"],
    ["iterate", "--next", FEDAVG / "comp.pb", "--state", FEDAVG / "arg.pb", "--data", FEDAVG,
     "--rounds", "1", "--output", "{missing}/s.pb"],
    ["iterate", "--next", FEDAVG / "comp.pb", "--state", FEDAVG / "arg.pb", "--data", FEDAVG,
     "--rounds", "1", "--metrics", "{missing}/m.jsonl"],
], ids=["run", "template", "convert", "iterate-output", "iterate-metrics"])
def test_output_into_a_missing_directory_is_a_usage_error(runner, tmp_path, command):
    missing = tmp_path / "no" / "such"
    result = invoke(runner, *(str(a).format(missing=missing) for a in command))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    assert f"the directory {missing} does not exist" in result.stderr
    assert not (tmp_path / "no").exists()


# --- convert to standard output ------------------------------------------------------------------

def test_convert_to_standard_output_defaults_to_json(runner):
    result = invoke(runner, "convert", MEAN / "arg.pb", "-")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["format"] == "tffexec-value/1" and document["type"] == "{float32}@CLIENTS"


# --- several files for inspect and validate -------------------------------------------------

def test_inspect_several_files_reports_each(runner):
    result = invoke(runner, "inspect", MEAN / "comp.pb", FEDAVG / "comp.pb")
    assert result.exit_code == 0, result.stderr
    files = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("file ")]
    assert files == [str(MEAN / "comp.pb"), str(FEDAVG / "comp.pb")]


def test_inspect_several_files_as_json_is_one_document_each(runner):
    result = invoke(runner, "inspect", MEAN / "comp.pb", FEDAVG / "comp.pb", "--json")
    assert result.exit_code == 0, result.stderr
    assert [d["file"] for d in _documents(result.stdout)] == [str(MEAN / "comp.pb"),
                                                              str(FEDAVG / "comp.pb")]


def test_inspect_goes_on_after_a_bad_file_and_exits_with_its_error(runner, tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"garbage")
    result = invoke(runner, "inspect", MEAN / "comp.pb", bad, FEDAVG / "comp.pb", "--json")
    assert result.exit_code == 3
    assert len(_documents(result.stdout)) == 2
    assert result.stderr.splitlines() == [
        f"Error: {bad}: not a serialized computation: truncated or corrupt protobuf bytes"]


def test_validate_several_computations_exit_with_the_worst(runner, tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"garbage")
    ok = invoke(runner, "validate", MEAN / "comp.pb", FEDAVG / "comp.pb", "--clients", 3)
    assert ok.exit_code == 0, ok.stderr
    assert [line.split()[1] for line in ok.stdout.splitlines()] == [
        f"{MEAN / 'comp.pb'}:", f"{FEDAVG / 'comp.pb'}:"]
    worst = invoke(runner, "validate", MEAN / "comp.pb", bad, FEDAVG / "comp.pb")
    assert worst.exit_code == 3  # 1 (no client count) for two, 3 for the unreadable one
    errors = [line for line in worst.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 3 and str(bad) in errors[1]


def test_validate_comp_and_arg_keeps_its_meaning(runner):
    result = invoke(runner, "validate", MEAN / "comp.pb", MEAN / "arg.pb")
    assert result.exit_code == 0, result.stderr
    assert f"argument {MEAN / 'arg.pb'} matches the parameter type" in result.stdout


# --- --clients that changes nothing ---------------------------------------------------------

def test_clients_without_clients_placements_is_a_note(runner):
    result = invoke(runner, "run", SERVER_ONLY / "comp.pb", SERVER_ONLY / "arg.pb",
                    "--clients", 3)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (f"note: --clients 3 has no effect: {SERVER_ONLY / 'comp.pb'} places "
                             "no values at CLIENTS\n")
    assert json.loads(result.stdout)["type"] == "int32@SERVER"


def test_clients_without_clients_placements_is_an_error_under_strict(runner):
    result = invoke(runner, "run", SERVER_ONLY / "comp.pb", SERVER_ONLY / "arg.pb",
                    "--clients", 3, "--strict")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: --clients 3 has no effect")


def test_clients_for_a_clients_computation_says_nothing(runner):
    result = invoke(runner, "run", MEAN / "comp.pb", MEAN / "arg.pb", "--clients", 10,
                    "--strict")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


# --- compare ----------------------------------------------------------------------------------

def test_compare_equal_files_in_different_formats(runner):
    result = invoke(runner, "compare", FEDAVG / "expected.pb", FEDAVG / "expected.json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(f"ok: {FEDAVG / 'expected.pb'} and ")


def test_compare_reports_the_first_differing_path(runner, tmp_path):
    document = json.loads((FEDAVG / "expected.json").read_text())
    loss = document["value"]["struct"][1]["value"]["federated"]["values"][0]
    loss["value"] = loss["value"] + 1.0
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(document))
    result = invoke(runner, "compare", FEDAVG / "expected.pb", changed)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("value.loss: ") and lines[0].endswith("(A vs B)")
    assert lines[-1] == (f"Error: {FEDAVG / 'expected.pb'} and {changed} differ at 1 path "
                         "(rtol 1e-05, atol 1e-06)")


def test_compare_tolerances_decide(runner, tmp_path):
    document = json.loads((FEDAVG / "expected.json").read_text())
    loss = document["value"]["struct"][1]["value"]["federated"]["values"][0]
    loss["value"] = loss["value"] * (1 + 1e-3)
    near = tmp_path / "near.json"
    near.write_text(json.dumps(document))
    assert invoke(runner, "compare", FEDAVG / "expected.pb", near).exit_code == 1
    assert invoke(runner, "compare", FEDAVG / "expected.pb", near, "--rtol", "1e-2").exit_code == 0


def test_compare_values_of_different_types_is_a_mismatch(runner):
    result = invoke(runner, "compare", FEDAVG / "expected.pb", FEDAVG / "model.pb")
    assert result.exit_code == 1
    assert "holds one of type <w=float32[3],b=float32>@SERVER" in result.stderr


def test_compare_npz_needs_a_type(runner):
    no_type = invoke(runner, "compare", MEAN / "arg.npz", MEAN / "arg.pb")
    assert no_type.exit_code == 2 and "--type-of" in no_type.stderr
    typed = invoke(runner, "compare", MEAN / "arg.npz", MEAN / "arg.pb", "--type-of",
                   MEAN / "comp.pb")
    assert typed.exit_code == 0, typed.stderr


def test_compare_unreadable_file_is_exit_4(runner, tmp_path):
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"garbage")
    result = invoke(runner, "compare", MEAN / "arg.pb", bad)
    assert result.exit_code == 4
    assert result.stderr.startswith(f"Error: {bad}: ")


# --- --version ------------------------------------------------------------------------------------

def test_version_lists_extras_and_the_os(runner):
    import platform

    result = invoke(runner, "--version")
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in result.stdout.splitlines()}
    for extra, enables in (("ray", "--stack ray"), ("matplotlib", "iterate --plot")):
        assert enables in lines[extra]
    assert lines["OS"].startswith(platform.system())
