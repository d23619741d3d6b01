"""The bad-input matrix: whatever file a user hands `tffexec run`, it is refused with one line.

Every case goes through the real CLI (click's CliRunner; a few through the installed script) and
checks the exit code, the message (one `Error:` line naming the file or flag, the place in the
value or AST, and what was expected), that no traceback is printed and that no `--output` file
appears. Malicious computations are built with real TensorFlow ops (`tf.io.write_file`,
`tf.io.read_file`, `tf.io.matching_files`, TFRecord datasets, ...) and the side effect they would
have is checked not to happen.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import subprocess
import sys
import zipfile
from typing import Callable

import federated_language as fl
import numpy as np
import pytest
from click.testing import CliRunner
from federated_language.proto import computation_pb2 as pb

from tffexec.cli.main import cli
from tffexec.formats import loading
from tffexec.formats import sequences
from tffexec import tensorflow as tc

from tffexec_test_support import CASES, CORPUS, REPO, case_roots  # noqa: E402
I32 = fl.TensorType(np.int32)
F32 = fl.TensorType(np.float32)
STR = fl.TensorType(np.str_)


def corpus(name: str) -> pathlib.Path:
    return CORPUS / name if (CORPUS / name).is_dir() else CASES / name


# ------------------------------------------------------------------------------ builders

def _comp(type_spec, **fields) -> pb.Computation:
    comp = pb.Computation(type=type_spec.to_proto())
    for name, value in fields.items():
        getattr(comp, name).CopyFrom(value)
    return comp


def _lambda(type_spec, name: str, body: pb.Computation) -> pb.Computation:
    comp = pb.Computation(type=type_spec.to_proto())
    getattr(comp, "lambda").parameter_name = name
    getattr(comp, "lambda").result.CopyFrom(body)
    return comp


def _ref(type_spec, name: str) -> pb.Computation:
    return _comp(type_spec, reference=pb.Reference(name=name))


def _call(type_spec, fn: pb.Computation, arg: pb.Computation | None) -> pb.Computation:
    call = pb.Call(function=fn)
    if arg is not None:
        call.argument.CopyFrom(arg)
    return _comp(type_spec, call=call)


def _tf():
    from tffexec import tf_runtime

    return tf_runtime.tensorflow()


def _dataset_graph(make_dataset: Callable) -> bytes:
    tf = _tf()
    return tf.raw_ops.DatasetToGraphV2(
        input_dataset=tf.data.experimental.to_variant(make_dataset())).numpy()


def _sequence_value_file(path: pathlib.Path, element_type, graph: bytes) -> pathlib.Path:
    seq_type = fl.SequenceType(element_type)
    loading.save_value(sequences.SequenceValue(element_type, graph_def=graph), seq_type, path)
    return path


@dataclasses.dataclass
class Files:
    """Inputs shared by the cases, built once (TensorFlow tracing costs seconds)."""

    root: pathlib.Path
    paths: dict


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> Files:
    tf = _tf()
    root = tmp_path_factory.mktemp("bad")
    victim = root / "victim"
    victim.mkdir()
    (victim / "secret.txt").write_text("secret")
    paths: dict[str, pathlib.Path] = {}

    def save(name: str, comp: pb.Computation) -> None:
        paths[name] = root / f"{name}.pb"
        paths[name].write_bytes(comp.SerializeToString())

    # --- forbidden ops in computation graphs -------------------------------------------------
    target = str(root / "written_by_graph.txt")

    def write_file():
        written = tf.io.write_file(target, "pwned")
        with tf.control_dependencies([written]):
            return tf.constant(1)

    save("write_file", tc.tensorflow_computation(write_file))
    save("read_file", tc.tensorflow_computation(
        lambda: tf.strings.length(tf.io.read_file(str(victim / "secret.txt")))))
    save("matching_files", tc.tensorflow_computation(
        lambda: tf.size(tf.io.matching_files(str(victim / "*")))))

    @tf.function
    def writes_inside_function(x):
        tf.io.write_file(target, "pwned")
        return x + 1

    save("write_in_function", tc.tensorflow_computation(
        lambda: writes_inside_function(tf.constant(1))))

    def write_through_partitioned_call():
        # PartitionedCall of a primitive op: TensorFlow instantiates WriteFile as a function.
        tf.raw_ops.PartitionedCall(args=[tf.constant(target), tf.constant("pwned")], Tout=[],
                                   f=writes_primitive)
        return tf.constant(1)

    from tensorflow.core.framework import attr_value_pb2

    writes_primitive = attr_value_pb2.NameAttrList(name="WriteFile")
    save("write_via_func_attr", tc.tensorflow_computation(write_through_partitioned_call))

    def print_to_file():
        printed = tf.print("pwned", output_stream=f"file://{root / 'printed.txt'}")
        with tf.control_dependencies([printed]):
            return tf.constant(1)

    save("print_to_file", tc.tensorflow_computation(print_to_file))
    save("py_func", tc.tensorflow_computation(
        lambda: tf.numpy_function(lambda: np.int32(1), [], tf.int32)))
    cached = str(root / "cache_file")
    save("cache_to_file", tc.tensorflow_computation(
        lambda: tf.data.Dataset.range(3).cache(cached).reduce(np.int64(0), lambda a, b: a + b)))

    tfrecord = root / "data.tfrecord"
    with tf.io.TFRecordWriter(str(tfrecord)) as writer:
        writer.write(b"record")
    tfrecord_graph = _dataset_graph(lambda: tf.data.TFRecordDataset([str(tfrecord)]))
    save("dataset_from_constant_graph", tc.tensorflow_computation(
        lambda: tf.data.experimental.from_variant(
            tf.raw_ops.DatasetFromGraph(graph_def=tf.constant(tfrecord_graph)),
            tf.TensorSpec([], tf.string)).reduce(np.int64(0), lambda a, _: a + 1)))
    save("dataset_from_string_parameter", tc.tensorflow_computation(
        lambda g: tf.data.experimental.from_variant(
            tf.raw_ops.DatasetFromGraph(graph_def=g),
            tf.TensorSpec([], tf.string)).reduce(np.int64(0), lambda a, _: a + 1), STR))
    paths["tfrecord_graph_string"] = root / "tfrecord_graph.pb"
    loading.save_value(np.asarray(tfrecord_graph, dtype=object), STR,
                       paths["tfrecord_graph_string"])

    # --- sequences as arguments -----------------------------------------------------------------
    save("count_strings", tc.tensorflow_computation(
        lambda ds: ds.reduce(np.int64(0), lambda a, _: a + 1), fl.SequenceType(STR)))
    save("count_ints", tc.tensorflow_computation(
        lambda ds: ds.reduce(np.int64(0), lambda a, _: a + 1),
        fl.SequenceType(fl.TensorType(np.int64))))
    paths["tfrecord_sequence"] = _sequence_value_file(root / "tfrecord_seq.pb", STR,
                                                      tfrecord_graph)
    paths["textline_sequence"] = _sequence_value_file(
        root / "textline_seq.pb", STR,
        _dataset_graph(lambda: tf.data.TextLineDataset([str(victim / "secret.txt")])))
    paths["infinite_sequence"] = _sequence_value_file(
        root / "infinite_seq.pb", fl.TensorType(np.int64),
        _dataset_graph(lambda: tf.data.Dataset.range(3).repeat()))
    paths["long_sequence"] = _sequence_value_file(
        root / "long_seq.pb", fl.TensorType(np.int64),
        _dataset_graph(lambda: tf.data.Dataset.range(50)))
    paths["filtered_sequence"] = _sequence_value_file(
        root / "filtered_seq.pb", fl.TensorType(np.int64),
        _dataset_graph(lambda: tf.data.Dataset.range(10**6).repeat().filter(lambda x: x >= 0)))

    # --- AST problems ---------------------------------------------------------------------------
    f = fl.FunctionType(I32, I32)
    add = tc.tensorflow_computation(lambda p: p[0] + p[1], fl.StructType([I32, I32]))
    half = tc.tensorflow_computation(lambda x: tf.cast(x, tf.float32) / 2, I32)
    literal = _comp(I32, literal=pb.Literal())
    literal.literal.value.dtype = 3
    literal.literal.value.int32_list.value.append(1)
    pair = fl.StructType([I32, I32])
    save("dangling_reference", _lambda(f, "x", _ref(I32, "y")))
    at_server = fl.FederatedType(I32, fl.SERVER)
    save("server_identity", _lambda(fl.FunctionType(at_server, at_server), "x",
                                    _ref(at_server, "x")))
    save("selection_out_of_range", _lambda(fl.FunctionType(pair, I32), "x", _comp(
        I32, selection=pb.Selection(source=_ref(pair, "x"), index=5))))
    save("call_of_non_function", _lambda(f, "x", _call(I32, literal, _ref(I32, "x"))))
    save("wrong_arity", _lambda(f, "x", _call(I32, add, _ref(I32, "x"))))
    save("result_type_mismatch", _lambda(f, "x", _call(F32, half, _ref(I32, "x"))))
    intrinsic = _comp(f, intrinsic=pb.Intrinsic(uri="federated_teleport"))
    save("unknown_intrinsic", _lambda(f, "x", _call(I32, intrinsic, _ref(I32, "x"))))
    save("data_node", _comp(I32, data=pb.Data(uri="file:///etc/passwd")))
    wrong_any = tc.tensorflow_computation(lambda: tf.constant(1))
    wrong_any.tensorflow.graph_def.type_url = "type.googleapis.com/tensorflow.TensorProto"
    save("graph_def_wrong_any", wrong_any)
    bad_binding = tc.tensorflow_computation(lambda: tf.constant(1))
    bad_binding.tensorflow.result.tensor.tensor_name = "no_such_tensor:0"
    save("binding_names_no_tensor", bad_binding)
    garbage_graph = tc.tensorflow_computation(lambda: tf.constant(1))
    garbage_graph.tensorflow.graph_def.value = b"\xff\xff\xff\xff"
    save("graph_def_garbage", garbage_graph)
    unknown_kind = _lambda(f, "x", _ref(I32, "x"))
    paths["unknown_node_kind"] = root / "unknown_node_kind.pb"
    paths["unknown_node_kind"].write_bytes(
        _comp(I32).SerializeToString() + b"\x7a\x00")  # field 15, length-delimited, empty
    del unknown_kind
    deep = pb.Computation()
    node = deep
    for _ in range(120):  # built in place: protobuf will not copy or parse messages this deep
        node.type.CopyFrom(I32.to_proto())
        node = node.call.argument
    node.type.CopyFrom(I32.to_proto())
    node.reference.name = "x"
    paths["nested_too_deeply"] = root / "nested_too_deeply.pb"
    paths["nested_too_deeply"].write_bytes(deep.SerializeToString())

    # --- raw bytes ------------------------------------------------------------------------------
    comp_bytes = (corpus("tf_add_int32") / "comp.pb").read_bytes()
    for name, data in {"empty": b"", "truncated": comp_bytes[: len(comp_bytes) // 2],
                       "random": np.random.default_rng(0).bytes(512)}.items():
        paths[name] = root / f"{name}.bin"
        paths[name].write_bytes(data)

    # --- argument files -------------------------------------------------------------------------
    def text(name: str, content: str) -> None:
        paths[name] = root / name
        paths[name].write_text(content)

    text("float_for_int.json", '{"x": 1, "y": 2.5}')
    text("pair.json", "[1, 2]")
    text("nan_for_int.json", '{"x": NaN, "y": 2}')
    text("inf_for_int.json", '{"x": 1, "y": -Infinity}')
    text("list_for_scalar.json", '{"x": [1], "y": 2}')
    text("missing_element.json", '{"x": 1}')
    text("wrong_shape.json", '{"a": 1, "b": [1.0, 2.0]}')
    text("scalar_for_struct.json", "7")
    text("string_in_clients.json", '{"s": 1, "c": [1, "x"]}')
    text("float_in_sequence.json", "[[1, 2], [3.5]]")
    text("inconsistent_clients.json", '{"a": [1, 2, 3], "b": [1.0, 2.0]}')
    text("three_clients.json", "[1, 2, 3]")
    text("invalid.json", '{"x": 1,')
    text("too_deep.json", "[" * 5000 + "1" + "]" * 5000)
    text("long_list_sequence.json", "[[" + ",".join(["1"] * 20) + "]]")
    paths["npz_missing_key.npz"] = root / "npz_missing_key.npz"
    np.savez(paths["npz_missing_key.npz"], x=np.int32(1))
    paths["npz_bomb.npz"] = root / "npz_bomb.npz"
    with zipfile.ZipFile(paths["npz_bomb.npz"], "w", zipfile.ZIP_DEFLATED) as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(4_000_000, np.int32))  # 16 MB of zeros, compresses to ~16 KB
        archive.writestr("x.npy", buffer.getvalue())
        buffer = io.BytesIO()
        np.save(buffer, np.int32(1))
        archive.writestr("y.npy", buffer.getvalue())

    from tffexec.formats.protos import executor_pb2

    several = executor_pb2.Value()
    several.federated.type.CopyFrom(fl.FederatedType(I32, fl.SERVER).to_proto().federated)
    for v in (1, 2):
        member = several.federated.value.add()
        member.CopyFrom(loading.executor_pb2.Value.FromString(
            loading.encode_value(np.int32(v), I32, "pb")))
    paths["all_equal_several.pb"] = root / "all_equal_several.pb"
    paths["all_equal_several.pb"].write_bytes(several.SerializeToString())
    return Files(root, paths)


# ------------------------------------------------------------------------------ the matrix

@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: the `tffexec run` arguments (names of `files.paths`, or literal flags)
    and what must come out."""

    id: str
    args: tuple
    exit_code: int
    fragments: tuple  # all must appear in the one error line
    must_not_exist: tuple = ()  # files (relative to the fixture root) the run must not create
    env: tuple = ()


def C(id, args, code, *fragments, must_not_exist=(), env=()):  # noqa: N802 - a table row
    return Case(id, tuple(args), code, tuple(fragments), tuple(must_not_exist), tuple(env))


ADD = corpus("tf_add_int32") / "comp.pb"
STRUCT = corpus("tf_struct_in_out") / "comp.pb"
SUM = corpus("fed_sum_int32") / "comp.pb"
ZIP = corpus("fed_zip_clients") / "comp.pb"
BROADCAST = corpus("fed_broadcast_map_sum") / "comp.pb"
SEQ_REDUCE = corpus("seq_sequence_reduce_intrinsic") / "comp.pb"
VALUE_SERVER = corpus("fed_value_server") / "comp.pb"
SUM_ARG = corpus("fed_sum_int32") / "arg.pb"

CASES_TABLE = [
    # --- the computation file is unreadable: exit 3 -------------------------------------------
    C("comp_empty", ["@empty"], 3, "empty.bin", "empty file"),
    C("comp_truncated", ["@truncated", ADD.parent / "arg.pb"], 3, "truncated.bin",
      "not a serialized computation", "truncated"),
    C("comp_random_bytes", ["@random"], 3, "random.bin", "computation"),
    C("comp_is_a_value", [SUM_ARG, SUM_ARG], 3, "arg.pb", "executor Value"),
    C("comp_unknown_node_kind", ["@unknown_node_kind"], 3, "unknown_node_kind.pb",
      "unknown computation node kind (field 15)"),
    C("comp_nested_too_deeply", ["@nested_too_deeply", "three_clients.json"], 3,
      "nested_too_deeply.pb", "nested too deeply"),
    C("dangling_reference", ["@dangling_reference", "@scalar_for_struct.json"], 3,
      "dangling_reference.pb", "lambda.result", "unbound name 'y'"),
    C("selection_out_of_range", ["@selection_out_of_range", "@pair.json"], 3,
      "selection_out_of_range.pb", "lambda.result", "selection index 5 out of range"),
    C("call_of_non_function", ["@call_of_non_function", "@scalar_for_struct.json"], 3,
      "call_of_non_function.pb", "lambda.result", "call of a non-function"),
    C("wrong_arity", ["@wrong_arity", "@scalar_for_struct.json"], 3, "wrong_arity.pb",
      "lambda.result", "does not match the parameter type <int32,int32>"),
    C("result_type_mismatch", ["@result_type_mismatch", "@scalar_for_struct.json"], 3,
      "result_type_mismatch.pb", "<root>", "declares the result type int32", "float32"),
    C("unknown_intrinsic", ["@unknown_intrinsic", "@scalar_for_struct.json"], 3,
      "unknown_intrinsic.pb", "federated_teleport"),
    C("data_node", ["@data_node"], 3, "data_node.pb", "'data'"),
    C("graph_def_wrong_any", ["@graph_def_wrong_any"], 3, "graph_def_wrong_any.pb",
      "tensorflow.TensorProto", "expected"),
    C("graph_def_garbage", ["@graph_def_garbage"], 3, "graph_def_garbage.pb", "GraphDef"),
    C("binding_names_no_tensor", ["@binding_names_no_tensor"], 3,
      "binding_names_no_tensor.pb", "no_such_tensor"),
    # --- the argument is wrong: exit 4 ----------------------------------------------------------
    C("arg_empty", [ADD, "@empty"], 4, "empty.bin", "empty"),
    C("arg_truncated", [ADD, "@truncated"], 4, "truncated.bin"),
    C("arg_random_bytes", [ADD, "@random"], 4, "random.bin"),
    C("arg_is_a_computation", [ADD, ADD], 4, "comp.pb", "holds a computation"),
    C("arg_for_no_arg_computation", [VALUE_SERVER, SUM_ARG], 4, "takes no argument"),
    C("arg_missing", [ADD], 4, "needs an argument"),
    C("float_where_int_expected", [ADD, "@float_for_int.json"], 4, "float_for_int.json",
      "arg.y", "expected int32", "not whole numbers"),
    C("nan_where_int_expected", [ADD, "@nan_for_int.json"], 4, "arg.x", "expected int32",
      "NaN or infinity"),
    C("inf_where_int_expected", [ADD, "@inf_for_int.json"], 4, "arg.y", "NaN or infinity"),
    C("list_where_scalar_expected", [ADD, "@list_for_scalar.json"], 4, "arg.x",
      "expected int32", "list of 1 item"),
    C("struct_element_missing", [ADD, "@missing_element.json"], 4, "missing_element.json",
      "arg"),
    C("wrong_shape_in_struct", [STRUCT, "@wrong_shape.json"], 4, "arg.b",
      "expected float32[3]"),
    C("json_wrong_nesting", [ADD, "@scalar_for_struct.json"], 4, "scalar_for_struct.json",
      "expected <x=int32,y=int32>"),
    C("type_mismatch_in_clients_member", [BROADCAST, "@string_in_clients.json"], 4,
      "arg.c[1]", "expected int32"),
    C("type_mismatch_in_sequence_element", [SEQ_REDUCE, "@float_in_sequence.json"], 4,
      "arg[1][0]", "expected int32"),
    C("inconsistent_client_counts", [ZIP, "@inconsistent_clients.json"], 4,
      "inconsistent client counts", "arg.a has 3 clients", "arg.b has 2"),
    C("clients_flag_disagrees", [SUM, "@three_clients.json", "--clients", "4"], 4,
      "--clients 4 disagrees", "3 clients"),
    C("all_equal_with_several_members", ["@server_identity", "@all_equal_several.pb"], 4,
      "all_equal_several.pb", "all_equal"),
    C("all_equal_value_with_two_members", [VALUE_SERVER, "@all_equal_several.pb"], 4,
      "takes no argument"),
    C("invalid_json", [ADD, "@invalid.json"], 4, "invalid.json", "invalid JSON", "line 1"),
    C("json_too_deep", [ADD, "@too_deep.json"], 4, "too_deep.json", "nested too deeply"),
    C("npz_missing_key", [ADD, "@npz_missing_key.npz"], 4, "npz_missing_key.npz", "'y'"),
    # --- refused by policy: exit 5 --------------------------------------------------------------
    C("write_file_op", ["@write_file"], 5, "write_file.pb", "'WriteFile'", "--allow-op",
      must_not_exist=("written_by_graph.txt",)),
    C("read_file_op", ["@read_file"], 5, "read_file.pb", "'ReadFile'", "node 'ReadFile'"),
    C("matching_files_op", ["@matching_files"], 5, "'MatchingFiles'"),
    C("write_file_inside_function", ["@write_in_function"], 5, "'WriteFile'", "of function",
      must_not_exist=("written_by_graph.txt",)),
    C("write_file_through_function_attribute", ["@write_via_func_attr"], 5, "'WriteFile'",
      "called as a function", must_not_exist=("written_by_graph.txt",)),
    C("print_to_file", ["@print_to_file"], 5, "'PrintV2'", "prints to 'file://",
      must_not_exist=("printed.txt",)),
    C("py_func", ["@py_func"], 5, "'PyFunc'"),
    C("cache_dataset_to_file", ["@cache_to_file"], 5, "CacheDataset", "caches to a file",
      must_not_exist=("cache_file.index", "cache_file_0.lockfile")),
    C("dataset_from_constant_string", ["@dataset_from_constant_graph"], 5,
      "'DatasetFromGraph'", "does not come directly from a parameter"),
    C("dataset_graph_in_string_parameter", ["@dataset_from_string_parameter",
                                            "@tfrecord_graph_string"], 5,
      "'TFRecordDataset'", "dataset graph"),
    C("tfrecord_dataset_argument", ["@count_strings", "@tfrecord_sequence"], 5,
      "tfrecord_seq.pb", "'TFRecordDataset'", "dataset graph"),
    C("textline_dataset_argument", ["@count_strings", "@textline_sequence"], 5,
      "textline_seq.pb", "'TextLineDataset'"),
    C("infinite_dataset_argument", ["@count_ints", "@infinite_sequence"], 5,
      "sequence is infinite", "--max-sequence-elements"),
    C("dataset_over_sequence_limit", ["@count_ints", "@long_sequence",
                                      "--max-sequence-elements", "10"], 5,
      "sequence has 50 elements", "limit of 10"),
    C("unknown_length_dataset_cut_at_limit", ["@count_ints", "@filtered_sequence",
                                              "--max-sequence-elements", "100"], 5,
      "more than 100 elements"),
    C("element_list_over_sequence_limit", [SEQ_REDUCE, "@long_list_sequence.json",
                                           "--max-sequence-elements", "5"], 5,
      "long_list_sequence.json", "20 elements", "limit of 5"),
    C("computation_over_size_limit", [ADD, ADD.parent / "arg.pb",
                                      "--max-computation-bytes", "100"], 5, "comp.pb",
      "more than the limit of 100", "--max-computation-bytes"),
    C("argument_over_size_limit", [ADD, ADD.parent / "arg.pb", "--max-value-bytes", "4"], 5,
      "arg.pb", "limit of 4", "--max-value-bytes"),
    C("npz_decompression_bomb", [ADD, "@npz_bomb.npz", "--max-value-bytes", "1M"], 5,
      "npz_bomb.npz", "uncompressed npz", "--max-value-bytes"),
    C("clients_over_limit", [SUM, "@three_clients.json", "--max-clients", "2"], 5,
      "3 clients is more than the limit of 2", "--max-clients"),
    C("clients_flag_over_limit", [VALUE_SERVER, "--clients", "7", "--max-clients", "5"], 5,
      "7 clients"),
    C("trust_from_environment_is_ignored", ["@write_file"], 5, "'WriteFile'",
      must_not_exist=("written_by_graph.txt",), env=(("TFFEXEC_RUN_TRUST", "1"),
                                                     ("TFFEXEC_RUN_ALLOW_OP", "WriteFile"))),
]


def _resolve(arg, files: Files) -> str:
    if isinstance(arg, pathlib.Path):
        return str(arg)
    if isinstance(arg, str) and arg.startswith("@"):
        return str(files.paths[arg[1:]])
    if isinstance(arg, str) and arg in files.paths:
        return str(files.paths[arg])
    return str(arg)


def test_matrix_has_at_least_forty_distinct_cases():
    assert len({case.id for case in CASES_TABLE}) == len(CASES_TABLE) >= 40


@pytest.mark.parametrize("case", CASES_TABLE, ids=[c.id for c in CASES_TABLE])
def test_bad_input_is_refused_with_one_line(case: Case, files: Files, tmp_path):
    output = tmp_path / "result.json"
    args = ["run", *(_resolve(a, files) for a in case.args), "--output", str(output)]
    result = CliRunner().invoke(cli, args, env=dict(case.env))
    stderr = result.stderr
    assert result.exit_code == case.exit_code, stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, stderr
    for fragment in case.fragments:
        assert fragment in error_lines[0], error_lines[0]
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    assert not output.exists()
    assert not list(tmp_path.glob(".result.json.*"))
    for name in case.must_not_exist:
        assert not (files.root / name).exists(), name


def test_trusted_write_file_graph_does_write(files: Files, tmp_path):
    # The converse of write_file_op: the test graph really writes when allowed, so the refusal
    # above is what kept the file from appearing.
    target = files.root / "written_by_graph.txt"
    result = CliRunner().invoke(cli, ["run", str(files.paths["write_file"]), "--allow-op",
                                      "WriteFile", "--format", "json"])
    try:
        assert result.exit_code == 0, result.stderr
        assert target.read_text() == "pwned"
    finally:
        target.unlink(missing_ok=True)


def test_dataset_from_string_parameter_runs_a_checked_harmless_graph(files: Files, tmp_path):
    tf = _tf()
    arg = tmp_path / "graph.pb"
    graph = _dataset_graph(lambda: tf.data.Dataset.from_tensor_slices(["a", "b", "c"]))
    loading.save_value(np.asarray(graph, dtype=object), STR, arg)
    result = CliRunner().invoke(cli, ["run", str(files.paths["dataset_from_string_parameter"]),
                                      str(arg), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert '"value": 3' in result.stdout


def test_validate_reports_forbidden_op_without_running(files: Files):
    result = CliRunner().invoke(cli, ["validate", str(files.paths["write_file"])])
    assert result.exit_code == 1
    assert "'WriteFile'" in result.stderr and "<root>" in result.stderr
    assert not (files.root / "written_by_graph.txt").exists()
    allowed = CliRunner().invoke(cli, ["validate", str(files.paths["write_file"]),
                                       "--allow-op", "WriteFile"])
    assert allowed.exit_code == 0, allowed.stderr


def test_validate_reports_forbidden_op_in_dataset_argument(files: Files):
    result = CliRunner().invoke(cli, ["validate", str(files.paths["count_strings"]),
                                      str(files.paths["tfrecord_sequence"])])
    assert result.exit_code == 1
    line = next(line for line in result.stderr.splitlines() if "TFRecord" in line)
    assert line.startswith(str(files.paths["tfrecord_sequence"]) + ": arg: ")


def test_validate_ignores_trust_from_environment(files: Files):
    result = CliRunner().invoke(cli, ["validate", str(files.paths["write_file"])],
                                env={"TFFEXEC_VALIDATE_TRUST": "1"})
    assert result.exit_code == 1


# ------------------------------------------------------------------------------ real processes

def _script() -> str:
    candidate = pathlib.Path(sys.executable).parent / "tffexec"
    return str(candidate) if candidate.exists() else "tffexec"


@pytest.mark.parametrize("name,args,code,fragment", [
    ("write_file", ["@write_file"], 5, "'WriteFile'"),
    ("tfrecord_argument", ["@count_strings", "@tfrecord_sequence"], 5, "TFRecordDataset"),
    ("truncated", ["@truncated"], 3, "truncated"),
    ("json_too_deep", [ADD, "@too_deep.json"], 4, "nested too deeply"),
])
def test_installed_script_refuses_with_one_line(files: Files, tmp_path, name, args, code,
                                                fragment):
    output = tmp_path / "out.pb"
    env = dict(os.environ, TFFEXEC_RUN_TRUST="1")
    proc = subprocess.run([_script(), "run", *(_resolve(a, files) for a in args), "--output",
                           str(output)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not output.exists()
    assert not (files.root / "written_by_graph.txt").exists()
