"""`tffexec inspect`: type signatures over the corpus, text/JSON/tree output, bad inputs."""
from __future__ import annotations

import json

import pytest

from tffexec.cli import main
from federated_language.proto import computation_pb2 as pb

from tffexec_test_support import CORPUS

MEAN_SIGNATURE = "(<x={float32}@CLIENTS,w={float32}@CLIENTS> -> float32@SERVER)"


MEAN = CORPUS / "fed_mean_weighted"  # (<x={float32}@CLIENTS,w={float32}@CLIENTS> -> float32@SERVER), 5 clients



def invoke(runner, *args, input=None):
    return runner.invoke(main.cli, list(args), input=input, catch_exceptions=False)


def _field(stdout: str, key: str) -> str:
    for line in stdout.splitlines():
        if line.split(" ", 1)[0] == key:
            return line[len(key):].strip()
    raise AssertionError(f"no {key!r} line in:\n{stdout}")


def test_with_every_case_prints_exact_type_signature(runner, case_form):
    """Every corpus case and every examples/cases case, comp.pb and native_comp.pb (conftest)."""
    case_dir, form = case_form
    meta = json.loads((case_dir / "meta.json").read_text())
    path = str(case_dir / form)
    result = invoke(runner, "inspect", path)
    assert result.exit_code == 0, result.output
    assert _field(result.stdout, "type") == meta["type_signature"]
    assert result.stderr == ""
    as_json = invoke(runner, "inspect", path, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["type_signature"] == meta["type_signature"]
    assert document["parameter_type"] == (meta["parameter_type"] if meta["has_arg"] else None)
    assert document["result_type"] == meta["result_type"]
    assert document["problems"] == []


def test_text_output_sections(runner):
    result = invoke(runner, "inspect", str(MEAN / "comp.pb"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert _field(out, "type") == MEAN_SIGNATURE
    assert _field(out, "placements") == "CLIENTS, SERVER"
    assert _field(out, "intrinsics") == "federated_weighted_mean 1"
    assert _field(out, "nodes").startswith("10 (max depth 5): ")
    assert _field(out, "tensorflow") == "0 graphs"


def test_json_document_keys(runner):
    result = invoke(runner, "inspect", str(MEAN / "comp.pb"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "tffexec.inspect/1"
    assert set(doc) == {"schema", "file", "type_signature", "parameter_type", "result_type",
                        "root_kind", "size_bytes", "nodes", "intrinsics", "placements",
                        "tensorflow", "problems"}
    assert doc["size_bytes"] == (MEAN / "comp.pb").stat().st_size
    assert doc["nodes"]["total"] == 10 and doc["nodes"]["by_kind"]["reference"] == 3
    assert doc["intrinsics"] == {"federated_weighted_mean": 1}
    assert doc["placements"] == ["clients", "server"]
    assert doc["tensorflow"] == {"graphs": 0, "size_bytes": 0, "ops": {}, "cache_keys": [],
                                 "details": []}
    assert doc["problems"] == []


def _nodes(message):
    """Every Computation message under `message`, found through the proto's own fields."""
    if isinstance(message, pb.Computation):
        yield message
    for field, value in message.ListFields():
        if field.message_type is not None:
            for item in (value if field.label == field.LABEL_REPEATED else [value]):
                yield from _nodes(item)


def test_json_tensorflow_details(runner):
    result = invoke(runner, "inspect", str(CORPUS / "fed_select" / "native_comp.pb"), "--json")
    tf = json.loads(result.stdout)["tensorflow"]
    comp = pb.Computation.FromString((CORPUS / "fed_select" / "native_comp.pb").read_bytes())
    graphs = sum(1 for node in _nodes(comp) if node.WhichOneof("computation") == "tensorflow")
    assert tf["graphs"] == graphs >= 2 and len(tf["details"]) == graphs
    assert tf["size_bytes"] == sum(d["size_bytes"] for d in tf["details"])
    assert tf["ops"]["ReduceDataset"] == 1
    assert all(d["path"].startswith("lambda.result.block.local[") for d in tf["details"])
    assert len(tf["cache_keys"]) == graphs


def test_stdin_dash(runner):
    data = (MEAN / "comp.pb").read_bytes()
    result = invoke(runner, "inspect", "-", "--json", input=data)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["file"] == "<stdin>" and doc["type_signature"] == MEAN_SIGNATURE


def test_tree_is_depth_limited(runner):
    result = invoke(runner, "inspect", str(MEAN / "comp.pb"), "--tree", "--depth", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "<root>: lambda " in out
    assert "result: block (1 local)" in out
    assert "more nodes)" in out
    assert "intrinsic federated_weighted_mean" not in out
    full = invoke(runner, "inspect", str(MEAN / "comp.pb"), "--tree")
    assert "function: intrinsic federated_weighted_mean" in full.stdout
    assert "…" not in full.stdout


def test_tree_in_json(runner):
    result = invoke(runner, "inspect", str(MEAN / "comp.pb"), "--tree", "--depth", "1",
                    "--format", "json")
    tree = json.loads(result.stdout)["tree"]
    assert tree["field"] == "<root>" and tree["type"] == MEAN_SIGNATURE
    (child,) = tree["children"]
    assert child["path"] == "lambda.result" and child["label"] == "block (1 local)"
    assert child["children"] == [{"truncated": True, "hidden_nodes": 8}]


def test_negative_depth_is_usage_error(runner):
    result = invoke(runner, "inspect", str(MEAN / "comp.pb"), "--tree", "--depth", "-1")
    assert result.exit_code == 2


# --- bad inputs: one line on stderr, the right exit code, no traceback ------------------------------

def _assert_one_line_error(result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def bad_files(tmp_path):
    data = (MEAN / "comp.pb").read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random": bytes((i * 7919 + 13) % 256 for i in range(512)),
        "value_arg": (MEAN / "arg.pb").read_bytes(),
        "text": b"this is not a protobuf\n",
    }
    out = {}
    for name, content in files.items():
        path = tmp_path / f"{name}.pb"
        path.write_bytes(content)
        out[name] = str(path)
    return out


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "value_arg", "text"])
@pytest.mark.parametrize("command", ["inspect", "validate"])
def test_with_unreadable_computation_exit_3(runner, bad_files, kind, command):
    result = invoke(runner, command, bad_files[kind])
    _assert_one_line_error(result, 3, bad_files[kind])


def test_with_value_proto_that_parses_as_computation_exit_3(runner, tmp_path):
    # A Value{struct} parses as a Computation without a type: it must still be refused.
    from tffexec.formats.protos import executor_pb2
    from federated_language.proto import array_pb2, data_type_pb2

    value = executor_pb2.Value()
    element = value.struct.element.add(name="x")
    element.value.array.CopyFrom(array_pb2.Array(
        dtype=data_type_pb2.DT_INT32, shape=array_pb2.ArrayShape(),
        int32_list=array_pb2.Array.IntList(value=[3])))
    path = tmp_path / "value.pb"
    path.write_bytes(value.SerializeToString())
    _assert_one_line_error(invoke(runner, "inspect", str(path)), 3, str(path))


@pytest.mark.parametrize("command", ["inspect", "validate"])
def test_with_missing_file_exit_2(runner, tmp_path, command):
    result = invoke(runner, command, str(tmp_path / "nope.pb"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_with_directory_exit_2(runner, tmp_path):
    result = invoke(runner, "inspect", str(tmp_path))
    assert result.exit_code == 2


def _deep_computation(levels: int):
    """`lambda x: block[a0=x] -> lambda y: block[a1=a0] -> ...`, nested `levels` lambdas deep.

    Well typed: the innermost lambda is `(int32 -> int32)`, each block has the type of the
    lambda it returns, and each enclosing lambda is `(int32 -> <that type>)`.
    """
    from federated_language.proto import computation_pb2 as pb
    from federated_language.proto import data_type_pb2

    int32 = pb.Type(tensor=pb.TensorType(dtype=data_type_pb2.DT_INT32))
    lambda_types = [pb.Type(function=pb.FunctionType(parameter=int32, result=int32))]
    for _ in range(levels):
        lambda_types.append(pb.Type(function=pb.FunctionType(parameter=int32,
                                                             result=lambda_types[-1])))
    lambda_types.reverse()  # lambda_types[level] is the type of the lambda at that level
    root = pb.Computation(type=lambda_types[0])
    node = root
    previous = "x0"
    getattr(node, "lambda").parameter_name = previous
    for level in range(levels):
        body = getattr(node, "lambda").result
        body.type.CopyFrom(lambda_types[level + 1])
        local = body.block.local.add(name=f"a{level}")
        local.value.type.CopyFrom(int32)
        local.value.reference.name = previous
        body.block.result.type.CopyFrom(lambda_types[level + 1])
        node = body.block.result
        previous = f"a{level}"
        getattr(node, "lambda").parameter_name = f"unused{level}"
    leaf = getattr(node, "lambda").result
    leaf.type.CopyFrom(int32)
    leaf.reference.name = previous
    return root


@pytest.mark.parametrize("command", ["inspect", "validate"])
def test_with_deeply_nested_computation(runner, tmp_path, command):
    # 20 lambda/block levels: AST depth 41, ~80 protobuf message levels (the limit is 100).
    path = tmp_path / "deep.pb"
    path.write_bytes(_deep_computation(20).SerializeToString())
    extra = ["--json", "--tree", "--depth", "100"] if command == "inspect" else []
    result = invoke(runner, command, str(path), *extra)
    assert result.exit_code == 0, result.output
    if command == "inspect":
        doc = json.loads(result.stdout)
        assert doc["nodes"]["max_depth"] == 20 * 2 + 1
        assert doc["problems"] == []


def test_with_computation_deeper_than_protobuf_allows_exit_3(runner, tmp_path):
    path = tmp_path / "too_deep.pb"
    path.write_bytes(_deep_computation(40).SerializeToString())
    _assert_one_line_error(invoke(runner, "inspect", str(path)), 3, str(path), "deep")


def test_tree_json_handles_trees_deeper_than_json_recursion_limit():
    from federated_language.proto import computation_pb2 as pb

    from tffexec.cli import render

    root = pb.Computation()
    node = root
    for _ in range(3000):
        node = node.struct.element.add().value
    node.literal.SetInParent()
    tree = render.tree(root, max_depth=5000)
    text = render.tree_json(tree)
    assert text.count('{"field": ') == 3001
    assert text.endswith('"children": []}' + "]}" * 3000)
    small = render.tree(_deep_computation(3), max_depth=2)
    assert json.loads(render.tree_json(small)) == small
    assert json.loads(render.json_document({"a": 1}, small)) == {"a": 1, "tree": small}
