"""tffexec.checks.analysis and .graphs, and `inspect --tree`'s rendering: AST walks, summaries,
problems."""
from __future__ import annotations

import json

import pytest
from federated_language.proto import computation_pb2 as pb
from federated_language.proto import data_type_pb2

from tffexec import errors
from tffexec import intrinsics
from tffexec.checks import analysis
from tffexec.checks import graphs
from tffexec.cli import render
from tffexec.formats.protos import tf_graph_pb2

from tffexec_test_support import CORPUS


MEAN = CORPUS / "fed_mean_weighted"  # (<x={float32}@CLIENTS,w={float32}@CLIENTS> -> float32@SERVER), 5 clients
CORPUS_FILES = sorted(
    (case.name, name)
    for case in (CORPUS.iterdir() if CORPUS.is_dir() else ())
    if (case / "meta.json").is_file()
    for name in ("comp.pb", "native_comp.pb")
    if (case / name).is_file()
)


# --- tiny AST builders -------------------------------------------------------------------------

def int32() -> pb.Type:
    return pb.Type(tensor=pb.TensorType(dtype=data_type_pb2.DT_INT32))


def federated(member: pb.Type, uri: str, all_equal: bool = False) -> pb.Type:
    return pb.Type(federated=pb.FederatedType(
        placement=pb.PlacementSpec(value=pb.Placement(uri=uri)), all_equal=all_equal, member=member))


def fn_type(param: pb.Type | None, result: pb.Type) -> pb.Type:
    ft = pb.FunctionType(result=result)
    if param is not None:
        ft.parameter.CopyFrom(param)
    return pb.Type(function=ft)


def ref(name: str, t: pb.Type | None = None) -> pb.Computation:
    return pb.Computation(type=t or int32(), reference=pb.Reference(name=name))


def lam(param: str, body: pb.Computation, param_type: pb.Type | None = None) -> pb.Computation:
    comp = pb.Computation(type=fn_type(param_type or int32(), body.type))
    getattr(comp, "lambda").parameter_name = param
    getattr(comp, "lambda").result.CopyFrom(body)
    return comp


def block(locals_: list[tuple[str, pb.Computation]], result: pb.Computation) -> pb.Computation:
    return pb.Computation(type=result.type, block=pb.Block(
        local=[pb.Block.Local(name=n, value=v) for n, v in locals_], result=result))


def intrinsic(uri: str, t: pb.Type) -> pb.Computation:
    return pb.Computation(type=t, intrinsic=pb.Intrinsic(uri=uri))


def call(function: pb.Computation, argument: pb.Computation | None, t: pb.Type) -> pb.Computation:
    c = pb.Computation(type=t, call=pb.Call(function=function))
    if argument is not None:
        c.call.argument.CopyFrom(argument)
    return c


def struct(*elements: pb.Computation) -> pb.Computation:
    t = pb.Type(struct=pb.StructType(element=[pb.StructType.Element(value=e.type) for e in elements]))
    return pb.Computation(type=t, struct=pb.Struct(element=[pb.Struct.Element(value=e) for e in elements]))


def graph_any(*ops: str, function_ops: tuple[str, ...] = ()) -> pb.TensorFlow:
    graph = tf_graph_pb2.GraphDef()
    for i, op in enumerate(ops):
        graph.node.add(name=f"n{i}", op=op)
    if function_ops:
        fn = graph.library.function.add()
        fn.signature.name = "fn"
        for i, op in enumerate(function_ops):
            fn.node_def.add(name=f"f{i}", op=op)
    tf = pb.TensorFlow()
    tf.graph_def.type_url = graphs.GRAPH_DEF_TYPE_URL
    tf.graph_def.value = graph.SerializeToString()
    return tf


def test_committed_conformance_cases_are_present():
    assert CORPUS.is_dir(), f"the committed conformance cases are missing at {CORPUS}"
    assert len(CORPUS_FILES) >= 2 * 28


# --- supported sets ------------------------------------------------------------------------------

def test_supported_intrinsics_are_federated_language_registry_plus_declared_extras():
    from federated_language.compiler import intrinsic_defs

    registry = set(intrinsic_defs._intrinsic_registry)  # pylint: disable=protected-access
    extras = {d.uri for d in intrinsics.INTRINSICS.values() if not d.in_federated_language}
    assert analysis.SUPPORTED_INTRINSICS == registry | extras


def test_node_kinds_match_computation_proto():
    oneof = pb.Computation.DESCRIPTOR.oneofs_by_name["computation"]
    assert set(analysis.NODE_KINDS) == {f.name for f in oneof.fields}
    assert analysis.UNSUPPORTED_NODE_KINDS == {"data", "xla"}


# --- the corpus ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case,name", CORPUS_FILES)
def test_with_corpus_case_signature_matches_and_no_problems(case, name):
    meta = json.loads((CORPUS / case / "meta.json").read_text())
    comp = pb.Computation.FromString((CORPUS / case / name).read_bytes())
    result = analysis.analyze(comp)
    assert result.type_signature == meta["type_signature"]
    assert result.problems == []
    assert result.total_nodes == sum(1 for _ in analysis.walk(comp))
    if "CLIENTS" in meta["type_signature"]:
        assert "clients" in result.placements
    json.dumps(result.to_dict())  # serialisable


def _tensorflow_nodes(message) -> int:
    """Computation nodes of kind `tensorflow` under `message`, counted by walking the proto's
    fields directly (independently of tffexec's own walker)."""
    count = 0
    if isinstance(message, pb.Computation) and message.WhichOneof("computation") == "tensorflow":
        count += 1
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        items = value if field.label == field.LABEL_REPEATED else [value]
        count += sum(_tensorflow_nodes(item) for item in items)
    return count


def test_with_native_corpus_graphs_have_cache_keys():
    comp = pb.Computation.FromString((CORPUS / "fed_select" / "native_comp.pb").read_bytes())
    result = analysis.analyze(comp)
    assert len(result.graphs) == _tensorflow_nodes(comp) >= 2
    assert all(g.cache_key for g in result.graphs)
    assert result.op_counts["ReduceDataset"] == 1  # lives in the function library
    # TFF's compiler lowers federated_select to a map over the keys plus the select itself.
    assert result.intrinsics["federated_select"] == 1 and result.intrinsics["federated_map"] == 1


# --- summary --------------------------------------------------------------------------------------

def test_with_small_computation_counts_and_paths():
    clients_t = federated(int32(), "clients")
    server_t = federated(int32(), "server", all_equal=True)
    sum_fn = intrinsic("federated_sum", fn_type(clients_t, server_t))
    body = block([("s", call(sum_fn, ref("x", clients_t), server_t))], ref("s", server_t))
    comp = lam("x", body, clients_t)
    result = analysis.analyze(comp)
    assert result.type_signature == "({int32}@CLIENTS -> int32@SERVER)"
    assert result.parameter_type == "{int32}@CLIENTS"
    assert result.result_type == "int32@SERVER"
    assert result.node_counts == {"reference": 2, "block": 1, "call": 1, "intrinsic": 1, "lambda": 1}
    assert result.intrinsics == {"federated_sum": 1}
    assert result.placements == ["clients", "server"]
    assert result.max_depth == 3
    assert result.problems == []
    paths = [node.path for node in analysis.walk(comp)]
    assert paths == [
        "<root>",
        "lambda.result",
        "lambda.result.block.local[0](s)",
        "lambda.result.block.local[0](s).call.function",
        "lambda.result.block.local[0](s).call.argument",
        "lambda.result.block.result",
    ]


def test_with_tensorflow_nodes_counts_ops_and_sizes():
    tf_node = pb.Computation(type=fn_type(int32(), int32()), tensorflow=graph_any(
        "Placeholder", "AddV2", "Identity", function_ops=("Const", "AddV2")))
    tf_node.tensorflow.cache_key.id = 42
    result = analysis.analyze(struct(tf_node, tf_node))
    assert len(result.graphs) == 2
    assert result.graphs[0].path == "struct.element[0]"
    assert result.graphs[0].nodes == 3 and result.graphs[0].functions == 1
    assert result.op_counts == {"AddV2": 4, "Const": 2, "Identity": 2, "Placeholder": 2}
    assert result.graph_bytes == 2 * len(tf_node.tensorflow.graph_def.value)
    assert result.cache_keys == [42]


def test_with_no_type_raises_computation_error():
    with pytest.raises(errors.ComputationError, match="no type signature"):
        analysis.analyze(pb.Computation(reference=pb.Reference(name="x")))


# --- problems ---------------------------------------------------------------------------------------

def _problems(comp: pb.Computation) -> list[str]:
    return [str(p) for p in analysis.analyze(comp).problems]


def test_with_dangling_reference_reports_its_path():
    body = block([("a", ref("x")), ("b", call(lam("y", ref("y")), ref("c"), int32()))], ref("b"))
    assert _problems(lam("x", body)) == [
        "lambda.result.block.local[1](b).call.argument: reference to unbound name 'c'"
    ]


def test_with_block_local_referring_to_later_local_is_unbound():
    body = block([("a", ref("b")), ("b", ref("x"))], ref("a"))
    assert _problems(lam("x", body)) == [
        "lambda.result.block.local[0](a): reference to unbound name 'b'"
    ]


def test_with_lambda_parameter_out_of_scope_is_unbound():
    comp = struct(lam("p", ref("p")), ref("p"))
    assert _problems(comp) == ["struct.element[1]: reference to unbound name 'p'"]


def test_with_shadowing_and_outer_names_all_bound():
    inner = block([("x", ref("x")), ("y", ref("x"))], ref("y"))
    comp = lam("x", block([("z", lam("x", inner))], ref("z", fn_type(int32(), int32()))))
    assert _problems(comp) == []


def test_with_unsupported_kinds_and_intrinsics():
    data = pb.Computation(type=int32(), data=pb.Data(uri="file://x"))
    xla = pb.Computation(type=int32(), xla=pb.Xla())
    bad = intrinsic("federated_teleport", fn_type(int32(), int32()))
    problems = _problems(struct(data, xla, call(bad, ref("q"), int32())))
    assert problems[0].startswith("struct.element[0]: unsupported node kind 'data'")
    assert problems[1].startswith("struct.element[1]: unsupported node kind 'xla'")
    assert problems[2:] == [
        "struct.element[2].call.function: unsupported intrinsic 'federated_teleport'",
        "struct.element[2].call.argument: reference to unbound name 'q'",
    ]


def test_with_selection_out_of_range_and_empty_node():
    source = struct(pb.Computation(type=int32(), literal=pb.Literal()))
    selection = pb.Computation(type=int32(), selection=pb.Selection(source=source, index=3))
    empty = pb.Computation(type=int32())
    problems = _problems(struct(selection, empty))
    assert problems == [
        "struct.element[0]: selection index 3 out of range for a struct of 1",
        "struct.element[1]: node has no computation kind set",
    ]


def test_with_unknown_placement_and_bad_graph():
    tf = pb.TensorFlow()
    tf.graph_def.type_url = "type.googleapis.com/foo.Bar"
    comp = struct(pb.Computation(type=federated(int32(), "moon"), tensorflow=tf))
    comp.type.CopyFrom(int32())  # keep the root's own type readable
    problems = _problems(comp)
    assert problems[0] == "<root>: unknown placement 'moon' (known: clients, server)"
    assert "packs 'type.googleapis.com/foo.Bar'" in problems[1]


# --- depth: everything is iterative ----------------------------------------------------------------

def _deep(levels: int) -> pb.Computation:
    root = pb.Computation(type=int32())
    node = root
    for _ in range(levels):
        node = node.struct.element.add().value
    node.reference.name = "free"
    return root


def test_with_very_deep_ast_no_recursion_error():
    comp = _deep(3000)  # well past Python's default recursion limit of 1000
    result = analysis.analyze(comp)
    assert result.max_depth == 3000
    assert result.total_nodes == 3001
    assert len(result.problems) == 1 and "unbound name 'free'" in result.problems[0].message
    tree = render.tree(comp, max_depth=2)
    assert tree["children"][0]["children"][0]["children"] == [{"truncated": True, "hidden_nodes": 2998}]


def test_tree_depth_zero_hides_everything_below_root():
    tree = render.tree(struct(ref("a"), ref("b")), max_depth=0)
    assert tree["field"] == "<root>" and tree["label"] == "struct (2 elements)"
    assert tree["children"] == [{"truncated": True, "hidden_nodes": 2}]


def test_describe_labels():
    assert render.describe(lam("x", ref("x"))) == "lambda x"
    assert render.describe(ref("x")) == "reference x"
    assert render.describe(intrinsic("federated_sum", int32())) == "intrinsic federated_sum"
    assert render.describe(block([("a", ref("b"))], ref("a"))) == "block (1 local)"
    tf_node = pb.Computation(type=int32(), tensorflow=graph_any("Const", "Identity"))
    assert render.describe(tf_node).startswith("tensorflow (2 ops, ")


# --- graphs ----------------------------------------------------------------------------------------

def test_graphs_lists_ops_with_node_names_including_functions():
    graph = graphs.parse_graph_def(graph_any("Placeholder", "AddV2", function_ops=("Const",)).graph_def)
    uses = list(graphs.iter_ops(graph))
    assert [(u.op, u.qualified_name) for u in uses] == [
        ("Placeholder", "n0"), ("AddV2", "n1"), ("Const", "fn/f0")]
    assert graphs.op_counts(graph) == {"Placeholder": 1, "AddV2": 1, "Const": 1}
    assert graphs.function_names(graph) == ["fn"]


def test_graphs_rejects_garbage_and_wrong_type():
    tf = graph_any("Const")
    tf.graph_def.value = b"\xff\xff\xff"
    with pytest.raises(errors.ComputationError, match="does not parse as a GraphDef"):
        graphs.parse_graph_def(tf.graph_def, path="p")
    with pytest.raises(errors.ComputationError, match="no graph_def"):
        graphs.parse_graph_def(pb.TensorFlow().graph_def)


def test_with_invalid_root_type_raises_computation_error():
    comp = pb.Computation(type=federated(int32(), "moon"), reference=pb.Reference(name="x"))
    with pytest.raises(errors.ComputationError, match="invalid type"):
        analysis.analyze(comp)
