"""`tffexec validate`: ok on the corpus, one line per problem, exit codes 0/1/3/4."""
from __future__ import annotations

import json
import pathlib

import pytest
from federated_language.proto import computation_pb2 as pb
from federated_language.proto import data_type_pb2

from tffexec.cli import main

from tffexec_test_support import CORPUS


MEAN = CORPUS / "fed_mean_weighted"  # (<x={float32}@CLIENTS,w={float32}@CLIENTS> -> float32@SERVER), 5 clients
CORPUS_CASES = sorted(c.name for c in (CORPUS.iterdir() if CORPUS.is_dir() else ()) if (c / "meta.json").is_file())



def invoke(runner, *args, input=None):
    return runner.invoke(main.cli, [str(a) for a in args], input=input, catch_exceptions=False)


def _write(tmp_path: pathlib.Path, comp: pb.Computation, name: str = "comp.pb") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(comp.SerializeToString())
    return path


def _int32() -> pb.Type:
    return pb.Type(tensor=pb.TensorType(dtype=data_type_pb2.DT_INT32))


def _fn(param: pb.Type | None, result: pb.Type) -> pb.Type:
    ft = pb.FunctionType(result=result)
    if param is not None:
        ft.parameter.CopyFrom(param)
    return pb.Type(function=ft)


# --- fine computations -------------------------------------------------------------------------

@pytest.mark.parametrize("case", CORPUS_CASES)
@pytest.mark.parametrize("name", ["comp.pb", "native_comp.pb"])
def test_with_corpus_case_and_clients_is_ok(runner, case, name):
    meta = json.loads((CORPUS / case / "meta.json").read_text())
    args = ["validate", CORPUS / case / name, "--clients", str(meta.get("num_clients") or 3)]
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {CORPUS / case / name}: {meta['type_signature']}")
    assert result.stderr == ""


@pytest.mark.parametrize("case", CORPUS_CASES)
def test_with_corpus_case_and_its_argument_is_ok(runner, case):
    meta = json.loads((CORPUS / case / "meta.json").read_text())
    args = ["validate", CORPUS / case / "comp.pb"]
    if meta["has_arg"]:
        args.append(CORPUS / case / "arg.pb")
    else:  # some no-argument computations still place values at CLIENTS
        args += ["--clients", str(meta.get("num_clients") or 3)]
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ")


def test_quickstart_with_argument_reports_clients(runner):
    result = invoke(runner, "validate", MEAN / "comp.pb", MEAN / "arg.pb")
    assert result.exit_code == 0, result.output
    assert "5 clients" in result.stdout


def test_tensorflow_only_computation_needs_no_clients(runner, tmp_path):
    result = invoke(runner, "validate", CORPUS / "tf_add_int32" / "comp.pb")
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"ok: {CORPUS / 'tf_add_int32' / 'comp.pb'}: (<x=int32,y=int32> -> int32); "
                             "1 node; 1 TensorFlow graph\n")


def test_stdin_dash(runner):
    result = invoke(runner, "validate", "-", "--clients", "2", input=(MEAN / "comp.pb").read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: <stdin>: ")


# --- problems: exit 1, one line each on stderr -----------------------------------------------------

def _problem_lines(result) -> list[str]:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "found" in lines[-1]
    return lines[:-1]


def test_without_client_count_is_a_problem(runner):
    lines = _problem_lines(invoke(runner, "validate", MEAN / "comp.pb"))
    assert lines == [f"{MEAN / 'comp.pb'}: <root>: computation places values at CLIENTS but "
                     "the number of clients is unknown: pass an argument with CLIENTS values or "
                     "--clients N"]


def test_with_several_problems_one_line_each(runner, tmp_path):
    data = pb.Computation(type=_int32(), data=pb.Data(uri="file://x"))
    bad_intrinsic = pb.Computation(type=_fn(_int32(), _int32()),
                                   intrinsic=pb.Intrinsic(uri="federated_teleport"))
    dangling = pb.Computation(type=_int32(), reference=pb.Reference(name="ghost"))
    call = pb.Computation(type=_int32(), call=pb.Call(function=bad_intrinsic, argument=dangling))
    body = pb.Computation(type=_int32(), block=pb.Block(
        local=[pb.Block.Local(name="a", value=data), pb.Block.Local(name="b", value=call)],
        result=pb.Computation(type=_int32(), reference=pb.Reference(name="b"))))
    comp = pb.Computation(type=_fn(_int32(), _int32()))
    getattr(comp, "lambda").parameter_name = "x"
    getattr(comp, "lambda").result.CopyFrom(body)
    path = _write(tmp_path, comp)
    lines = _problem_lines(invoke(runner, "validate", path))
    assert len(lines) == 3
    assert lines[0].startswith(f"{path}: lambda.result.block.local[0](a): unsupported node kind 'data'")
    assert lines[1] == f"{path}: lambda.result.block.local[1](b).call.function: unsupported intrinsic 'federated_teleport'"
    assert lines[2] == f"{path}: lambda.result.block.local[1](b).call.argument: reference to unbound name 'ghost'"


def test_with_argument_for_no_argument_computation(runner, tmp_path):
    comp = CORPUS / "tf_noarg_const" / "comp.pb"
    lines = _problem_lines(invoke(runner, "validate", comp, MEAN / "arg.pb"))
    assert len(lines) == 1 and "takes no argument" in lines[0]


def test_with_clients_disagreeing_with_argument(runner):
    lines = _problem_lines(invoke(runner, "validate", MEAN / "comp.pb", MEAN / "arg.pb",
                                  "--clients", "7"))
    assert lines == [f"{MEAN / 'comp.pb'}: <root>: --clients 7 disagrees with the argument's 5 clients"]


# --- unreadable inputs keep their own exit codes -------------------------------------------------

def test_with_unreadable_argument_exit_4(runner, tmp_path):
    bad = tmp_path / "arg.pb"
    bad.write_bytes(b"\xff\xff\xff\xff")
    result = invoke(runner, "validate", MEAN / "comp.pb", bad)
    assert result.exit_code == 4, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")


def test_with_argument_of_wrong_type_exit_4(runner):
    result = invoke(runner, "validate", MEAN / "comp.pb", CORPUS / "tf_add_int32" / "arg.pb")
    assert result.exit_code == 4, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")


def test_two_stdin_inputs_is_usage_error(runner):
    result = invoke(runner, "validate", "-", "-")
    assert result.exit_code == 2


def test_with_zero_clients_is_accepted_as_run_accepts_it(runner):
    # `run --clients 0` runs a computation over no clients (a sum of nothing is 0), so validate
    # must not refuse the flag value: the client-count rules are `run`'s (tffexec.preflight).
    comp = CORPUS / "fed_value_clients_sum" / "comp.pb"
    result = invoke(runner, "validate", comp, "--clients", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("; 0 clients")
