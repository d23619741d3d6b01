"""Static checks that agree with the run (issue 15 §5): what `run` refuses, `validate` reports.

Intrinsics declared at a type their definition does not admit, function-typed arguments, and
function libraries that shadow TensorFlow's primitive ops; each through the CLI (click's
CliRunner), `run` and `validate` side by side.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
from federated_language.proto import array_pb2
from federated_language.proto import computation_pb2 as pb
from federated_language.proto import data_type_pb2

from tffexec import intrinsics
from tffexec.checks import analysis
from tffexec.checks import intrinsic_types
from tffexec.cli import main
from tffexec.formats.protos import executor_pb2 as ex
from tffexec.formats.protos import tf_graph_pb2

from tffexec_test_support import CORPUS, all_case_dirs, clean_env, tffexec_script


def invoke(runner, *args):
    return runner.invoke(main.cli, [str(a) for a in args], catch_exceptions=False)


def int32() -> pb.Type:
    return pb.Type(tensor=pb.TensorType(dtype=data_type_pb2.DT_INT32))


def at(member: pb.Type, uri: str, all_equal: bool | None = None) -> pb.Type:
    """`member` placed at `uri` (all equal at the server, as TFF writes it, unless told)."""
    all_equal = uri == "server" if all_equal is None else all_equal
    return pb.Type(federated=pb.FederatedType(
        placement=pb.PlacementSpec(value=pb.Placement(uri=uri)), all_equal=all_equal,
        member=member))


def fn_type(param: pb.Type | None, result: pb.Type) -> pb.Type:
    ft = pb.FunctionType(result=result)
    if param is not None:
        ft.parameter.CopyFrom(param)
    return pb.Type(function=ft)


def apply_intrinsic(uri: str, param: pb.Type, result: pb.Type) -> pb.Computation:
    """`(x -> uri(x))` with the intrinsic declared `(param -> result)`."""
    body = pb.Computation(type=result, call=pb.Call(
        function=pb.Computation(type=fn_type(param, result), intrinsic=pb.Intrinsic(uri=uri)),
        argument=pb.Computation(type=param, reference=pb.Reference(name="x"))))
    comp = pb.Computation(type=fn_type(param, result))
    getattr(comp, "lambda").parameter_name = "x"
    getattr(comp, "lambda").result.CopyFrom(body)
    return comp


def write(tmp_path: pathlib.Path, message, name: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(message.SerializeToString())
    return path


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- 1. intrinsic types against their definitions ------------------------------------------------

INTRINSIC_PATH = "lambda.result.call.function"


def test_every_registry_intrinsic_has_a_definition_to_check_against():
    missing = [uri for uri in intrinsics.SUPPORTED if intrinsic_types.definition(uri) is None]
    assert missing == []


def test_federated_sum_declared_server_to_server_is_refused_by_run_exit_3(runner, tmp_path):
    server = at(int32(), "server")
    comp = write(tmp_path, apply_intrinsic("federated_sum", server, server), "comp.pb")
    (tmp_path / "arg.json").write_text("5")
    line = one_line_error(invoke(runner, "run", comp, tmp_path / "arg.json"), 3)
    assert INTRINSIC_PATH in line
    assert "federated_sum" in line and "int32@SERVER -> int32@SERVER" in line
    assert "placement" in line  # the reason: the parameter must be placed at CLIENTS


def test_federated_sum_declared_server_to_server_is_a_validate_problem(runner, tmp_path):
    server = at(int32(), "server")
    comp = write(tmp_path, apply_intrinsic("federated_sum", server, server), "comp.pb")
    result = invoke(runner, "validate", comp, "--clients", "2")
    assert result.exit_code == 1, result.output
    problems = result.stderr.strip().splitlines()[:-1]
    assert len(problems) == 1
    assert problems[0].startswith(f"{comp}: {INTRINSIC_PATH}: intrinsic 'federated_sum' is "
                                  "declared with type (int32@SERVER -> int32@SERVER)")


def test_installed_script_refuses_a_wrongly_declared_intrinsic_in_one_line(tmp_path):
    # A real process: the exit status and stderr a shell sees, nothing written.
    server = at(int32(), "server")
    comp = write(tmp_path, apply_intrinsic("federated_sum", server, server), "comp.pb")
    (tmp_path / "arg.json").write_text("5")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run([tffexec_script(), "run", str(comp), str(tmp_path / "arg.json"),
                           "--output", str(tmp_path / "out.json")],
                          capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{comp}: {INTRINSIC_PATH}: intrinsic 'federated_sum'" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# Each: (uri, declared parameter, declared result), all wrong in one way.
WRONG_DECLARATIONS = {
    "sum result at clients": ("federated_sum", at(int32(), "clients"), at(int32(), "clients")),
    "broadcast from clients": ("federated_broadcast", at(int32(), "clients"),
                               at(int32(), "clients", all_equal=True)),
    "broadcast not all equal": ("federated_broadcast", at(int32(), "server"),
                                at(int32(), "clients")),
    "mean changes the member": ("federated_mean", at(int32(), "clients"),
                                at(pb.Type(tensor=pb.TensorType(dtype=data_type_pb2.DT_FLOAT)),
                                   "server")),
    "value_at_server of a placed value": ("federated_value_at_server", at(int32(), "server"),
                                          at(int32(), "server")),
    "sequence_sum of a tensor": ("sequence_sum", int32(), int32()),
    "modular sum unplaced": ("federated_secure_modular_sum",
                             pb.Type(struct=pb.StructType(element=[
                                 pb.StructType.Element(value=int32()),
                                 pb.StructType.Element(value=int32())])),
                             at(int32(), "server")),
}


@pytest.mark.parametrize("name", sorted(WRONG_DECLARATIONS))
def test_intrinsic_declared_outside_its_definition_is_a_problem(name):
    uri, param, result = WRONG_DECLARATIONS[name]
    found = analysis.analyze(apply_intrinsic(uri, param, result)).problems
    assert [(p.path, p.refused) for p in found
            if "declared with type" in p.message] == [(INTRINSIC_PATH, False)]


def test_modular_sum_declared_as_defined_is_accepted():
    param = pb.Type(struct=pb.StructType(element=[
        pb.StructType.Element(value=at(int32(), "clients")),
        pb.StructType.Element(value=int32())]))
    comp = apply_intrinsic("federated_secure_modular_sum", param, at(int32(), "server"))
    assert analysis.analyze(comp).problems == []


def _case_computations() -> list[pathlib.Path]:
    return [case / name for case in all_case_dirs()
            for name in ("comp.pb", "native_comp.pb") if (case / name).is_file()]


def test_every_tff_made_case_declares_its_intrinsics_as_defined():
    checked = 0
    for path in _case_computations():
        comp = pb.Computation.FromString(path.read_bytes())
        for node in analysis.walk(comp):
            if node.kind == "intrinsic":
                uri, declared = node.comp.intrinsic.uri, node.comp.type
                assert intrinsic_types.mismatch(uri, declared) is None, f"{path}: {node.path}"
                checked += 1
    assert checked > 50


# --- 2. function-typed arguments -------------------------------------------------------------------

ADD = pb.Computation.FromString((CORPUS / "tf_add_int32" / "comp.pb").read_bytes())  # <x,y> -> int32
PAIR = ADD.type.function.parameter


def int32_value(v: int) -> ex.Value:
    return ex.Value(array=array_pb2.Array(dtype=data_type_pb2.DT_INT32, shape=array_pb2.ArrayShape(),
                                          int32_list=array_pb2.Array.IntList(value=[v])))


def int32_literal(v: int) -> pb.Computation:
    return pb.Computation(type=int32(), literal=pb.Literal(value=int32_value(v).array))


def calls_its_argument() -> pb.Computation:
    """`(f -> f(<x=3,y=4>))`: the whole argument is a function."""
    pair = pb.Computation(type=PAIR, struct=pb.Struct(element=[
        pb.Struct.Element(name="x", value=int32_literal(3)),
        pb.Struct.Element(name="y", value=int32_literal(4))]))
    comp = pb.Computation(type=fn_type(ADD.type, int32()))
    getattr(comp, "lambda").parameter_name = "f"
    getattr(comp, "lambda").result.CopyFrom(pb.Computation(type=int32(), call=pb.Call(
        function=pb.Computation(type=ADD.type, reference=pb.Reference(name="f")), argument=pair)))
    return comp


def calls_a_struct_element() -> pb.Computation:
    """`(<f, a> -> f(a))`: the function is one element of a struct argument."""
    p_type = pb.Type(struct=pb.StructType(element=[pb.StructType.Element(name="f", value=ADD.type),
                                                   pb.StructType.Element(name="a", value=PAIR)]))

    def select(i: int, t: pb.Type) -> pb.Computation:
        return pb.Computation(type=t, selection=pb.Selection(
            source=pb.Computation(type=p_type, reference=pb.Reference(name="p")), index=i))

    comp = pb.Computation(type=fn_type(p_type, int32()))
    getattr(comp, "lambda").parameter_name = "p"
    getattr(comp, "lambda").result.CopyFrom(pb.Computation(type=int32(), call=pb.Call(
        function=select(0, ADD.type), argument=select(1, PAIR))))
    return comp


def struct_argument(function: pb.Computation) -> ex.Value:
    element = ex.Value.Struct.Element
    pair = ex.Value(struct=ex.Value.Struct(element=[element(name="x", value=int32_value(3)),
                                                    element(name="y", value=int32_value(4))]))
    return ex.Value(struct=ex.Value.Struct(element=[
        element(name="f", value=ex.Value(computation=function)), element(name="a", value=pair)]))


def with_read_file(function: pb.Computation) -> pb.Computation:
    out = pb.Computation()
    out.CopyFrom(function)
    graph = tf_graph_pb2.GraphDef.FromString(out.tensorflow.graph_def.value)
    graph.node.add(name="peek", op="ReadFile")
    out.tensorflow.graph_def.value = graph.SerializeToString()
    return out


def run_and_validate(runner, tmp_path, comp: pb.Computation, arg: ex.Value):
    comp_path, arg_path = write(tmp_path, comp, "comp.pb"), write(tmp_path, arg, "arg.pb")
    return (invoke(runner, "run", comp_path, arg_path, "--format", "json"),
            invoke(runner, "validate", comp_path, arg_path), arg_path)


def validate_problems(result) -> list[str]:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.stderr.strip().splitlines()[:-1]


def test_function_argument_that_is_the_whole_argument_runs_and_validates(runner, tmp_path):
    ran, validated, _ = run_and_validate(runner, tmp_path, calls_its_argument(),
                                         ex.Value(computation=ADD))
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["value"]["value"] == 7
    assert validated.exit_code == 0, validated.output


def test_function_argument_with_a_refused_op_is_exit_5_and_a_validate_problem(runner, tmp_path):
    ran, validated, arg_path = run_and_validate(runner, tmp_path, calls_its_argument(),
                                                ex.Value(computation=with_read_file(ADD)))
    line = one_line_error(ran, 5)
    assert str(arg_path) in line and "'ReadFile'" in line and "'peek'" in line
    (problem,) = validate_problems(validated)
    assert problem.startswith(f"{arg_path}: arg: forbidden TensorFlow op 'ReadFile'")


def test_function_argument_with_a_wrongly_typed_intrinsic_is_exit_4_and_a_validate_problem(
        runner, tmp_path):
    summing = pb.Computation(type=ADD.type, intrinsic=pb.Intrinsic(uri="federated_sum"))
    ran, validated, arg_path = run_and_validate(runner, tmp_path, calls_its_argument(),
                                                ex.Value(computation=summing))
    line = one_line_error(ran, 4)
    assert str(arg_path) in line and "intrinsic 'federated_sum' is declared with type" in line
    (problem,) = validate_problems(validated)
    assert problem.startswith(f"{arg_path}: arg: intrinsic 'federated_sum' is declared")


def test_function_inside_a_struct_argument_is_refused_naming_why_not_a_function(
        runner, tmp_path):
    ran, validated, arg_path = run_and_validate(runner, tmp_path, calls_a_struct_element(),
                                                struct_argument(ADD))
    line = one_line_error(ran, 4)
    assert "not a function" not in line
    assert f"{arg_path}: arg.f: a computation of type (<x=int32,y=int32> -> int32)" in line
    assert "only when it is the whole argument" in line
    (problem,) = validate_problems(validated)
    assert problem in line


def test_function_inside_a_struct_argument_lists_every_problem_in_validate(runner, tmp_path):
    ran, validated, arg_path = run_and_validate(runner, tmp_path, calls_a_struct_element(),
                                                struct_argument(with_read_file(ADD)))
    assert "'ReadFile'" in one_line_error(ran, 5)  # a refused op comes first, as for COMP
    problems = validate_problems(validated)
    assert len(problems) == 2
    assert all(p.startswith(f"{arg_path}: arg.f: ") for p in problems)
    assert any("only when it is the whole argument" in p for p in problems)
    assert any("'ReadFile'" in p for p in problems)


@pytest.mark.parametrize("kind", ["struct", "placement"])
def test_function_argument_that_is_a_value_node_cannot_be_called(runner, tmp_path, kind):
    value_node = pb.Computation(type=ADD.type)
    if kind == "struct":
        value_node.struct.SetInParent()
    else:
        value_node.placement.uri = "clients"
    ran, validated, arg_path = run_and_validate(runner, tmp_path, calls_its_argument(),
                                                ex.Value(computation=value_node))
    assert f"a {kind} node cannot be called" in one_line_error(ran, 4)
    assert any(f"a {kind} node cannot be called" in p for p in validate_problems(validated))


# --- 3. function libraries that shadow primitive ops ---------------------------------------------

def with_library(function: pb.Computation, *, function_name: str | None = None,
                 call_it: bool = False, gradient: tuple[str, str] | None = None,
                 also: str | None = None) -> pb.Computation:
    """`function` (a tensorflow node) with a library function (and `also` another) and/or a
    gradient mapping added; `call_it` adds a node whose op is the function's name."""
    out = pb.Computation()
    out.CopyFrom(function)
    graph = tf_graph_pb2.GraphDef.FromString(out.tensorflow.graph_def.value)
    if function_name is not None:
        graph.library.function.add().signature.name = function_name
        if call_it:
            graph.node.add(name="calls_it", op=function_name)
    if also is not None:
        graph.library.function.add().signature.name = also
    if gradient is not None:
        graph.library.gradient.add(function_name=gradient[0], gradient_func=gradient[1])
    out.tensorflow.graph_def.value = graph.SerializeToString()
    return out


def run_and_validate_computation(runner, tmp_path, comp: pb.Computation):
    comp_path = write(tmp_path, comp, "comp.pb")
    (tmp_path / "arg.json").write_text('{"x": 3, "y": 4}')
    return (invoke(runner, "run", comp_path, tmp_path / "arg.json"),
            invoke(runner, "validate", comp_path, tmp_path / "arg.json"), comp_path)


@pytest.mark.parametrize("name", ["ReadFile", "Add"])
def test_node_calling_a_library_function_named_like_a_primitive_op_is_exit_5(
        runner, tmp_path, name):
    ran, validated, comp_path = run_and_validate_computation(
        runner, tmp_path, with_library(ADD, function_name=name, call_it=True))
    line = one_line_error(ran, 5)
    assert f"{comp_path}: <root>: library function {name!r}" in line
    assert "shadow" in line and "(and 1 more)" in line  # the calling node is the other
    problems = validate_problems(validated)
    assert len(problems) == 2
    assert any(f"node 'calls_it'" in p and f"names the library function {name!r}" in p
               for p in problems)


def test_library_function_named_like_a_primitive_op_is_refused_without_a_caller(
        runner, tmp_path):
    ran, validated, _ = run_and_validate_computation(
        runner, tmp_path, with_library(ADD, function_name="Sub"))  # ADD has no Sub node
    assert "library function 'Sub'" in one_line_error(ran, 5)
    assert len(validate_problems(validated)) == 1


@pytest.mark.parametrize("role", ["function", "gradient"])
def test_gradient_mapping_naming_a_primitive_op_is_exit_5(runner, tmp_path, role):
    entry = ("ReadFile", "grad") if role == "function" else ("fn", "ReadFile")
    ran, validated, _ = run_and_validate_computation(
        runner, tmp_path, with_library(ADD, function_name="fn", gradient=entry))
    line = one_line_error(ran, 5)
    assert "gradient mapping entry 'ReadFile'" in line and f"as the {role} of" in line
    assert len(validate_problems(validated)) == 1


def test_library_with_its_own_names_and_gradients_is_admitted(runner, tmp_path):
    ran, validated, _ = run_and_validate_computation(
        runner, tmp_path, with_library(ADD, function_name="my_fn", gradient=("my_fn", "my_grad"),
                                     also="my_grad"))
    assert validated.exit_code == 0, validated.output
    assert ran.exit_code == 0, ran.output


def test_trust_admits_a_shadowing_library_to_the_checker(runner, tmp_path):
    comp_path = write(tmp_path, with_library(ADD, function_name="ReadFile"), "comp.pb")
    assert invoke(runner, "validate", comp_path, "--trust").exit_code == 0


def test_registered_op_names_are_those_of_the_installed_tensorflow():
    from tffexec.checks import tf_ops

    assert tf_ops.registered_names() == tf_ops.live_names()
