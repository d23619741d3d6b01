"""The op allowlist, its per-op rules, the limits, and the faults tffexec owns.

Covers: the allowlist admits every op real TFF computations use (corpus and examples, their
function libraries and dataset values) and refuses file/network/process ops; the per-op rules
(function attributes, DatasetFromGraph, PrintV2, CacheDataset, variant constants); `--trust`,
`--allow-op` and the limit flags (including that weakening flags never come from the environment);
infinite datasets cut at the sequence limit; the deepest nesting protobuf accepts evaluating
without RecursionError; and memory staying flat over 200 runs through one Runner.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import federated_language as fl
import numpy as np
import pytest
from click.testing import CliRunner
from federated_language.proto import computation_pb2 as pb

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec.cli import policy_flags
from tffexec.cli.main import cli
from tffexec.factories import config as config_lib
from tffexec.checks import analysis
from tffexec.checks import graphs
from tffexec.formats import loading
from tffexec.checks import allowlist
from tffexec.checks import op_check
from tffexec import policy as policy_lib
from tffexec.formats import protoparse
from tffexec.formats import sequences
from tffexec import tensorflow as tc
from tffexec.formats.protos import executor_pb2
from tffexec.formats.protos import tf_graph_pb2

from tffexec_test_support import CASES, CORPUS, REPO, case_roots  # noqa: E402
I32 = fl.TensorType(np.int32)
I64 = fl.TensorType(np.int64)
STRICT = policy_lib.Policy()


def _tf():
    from tffexec import tf_runtime

    return tf_runtime.tensorflow()


def _all_case_files():
    for root in case_roots().values():
        if root.is_dir():
            yield from sorted(root.glob("*/*.pb"))


def _graphs_in(path: pathlib.Path):
    """(label, GraphDef, kind) of every computation graph and dataset graph in a .pb file."""
    data = path.read_bytes()
    if path.name in ("comp.pb", "native_comp.pb"):
        comp = pb.Computation.FromString(data)
        for node in analysis.walk(comp):
            if node.kind == "tensorflow":
                yield (f"{path}:{node.path}",
                       graphs.parse_graph_def(node.comp.tensorflow.graph_def),
                       node.comp.tensorflow)
        return
    value = executor_pb2.Value.FromString(data)
    for where, node in protoparse.messages_of_type(value, executor_pb2.Value.DESCRIPTOR.full_name):
        if node.WhichOneof("value") == "sequence":
            yield (f"{path}:{where}",
                   tf_graph_pb2.GraphDef.FromString(node.sequence.serialized_graph_def), None)


# --------------------------------------------------------------------------- the allowlist

def test_allowlist_admits_every_op_of_the_corpus_and_examples():
    checked = 0
    for path in _all_case_files():
        for label, graph_def, tensorflow in _graphs_in(path):
            if tensorflow is not None:
                bound = frozenset(op_check.parameter_nodes(tensorflow))
                found = op_check.graph_findings(graph_def, STRICT, bound=bound)
            else:
                found = op_check.graph_findings(graph_def, STRICT, graph=op_check.DATASET_GRAPH)
            assert not found, f"{label}: {found[0].describe()}"
            checked += 1
    assert checked > 50


def test_allowlist_names_only_ops_registered_in_tensorflow():
    tf = _tf()
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session

    del tf
    buffer = pywrap_tf_session.TF_GetAllOpList()
    ops = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetBuffer(buffer))
    registered = {op.name for op in ops.op}
    assert not (allowlist.ALLOWED_OPS - registered)


@pytest.mark.parametrize("op", [
    "ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveV2", "Restore", "RestoreV2",
    "MergeV2Checkpoints", "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset",
    "FixedLengthRecordDatasetV2", "CSVDatasetV2", "SqlDataset", "LMDBDataset",
    "MatchingFilesDataset", "SaveDatasetV2", "LoadDataset", "SnapshotDatasetV2",
    "DatasetToTFRecord", "DataServiceDatasetV4", "PyFunc", "EagerPyFunc", "PyFuncStateless",
    "Abort", "Send", "Recv", "CollectiveReduceV2", "RemoteCall", "WholeFileReaderV2",
    "InitializeTableFromTextFileV2", "ImmutableConst", "WriteSummary",
    "CreateSummaryFileWriter", "DebugIdentityV2", "DecodeProtoV2", "GetSessionHandle",
    "IteratorFromStringHandleV2", "FIFOQueue", "QueueDequeue", "ReaderReadV2", "TFRecordReaderV2",
    "DatasetFromGraph", "Batch",
])
def test_allowlist_refuses_file_network_and_process_ops(op):
    assert not op_check.allows(STRICT, op)


def _graph(*nodes, functions=()) -> tf_graph_pb2.GraphDef:
    graph_def = tf_graph_pb2.GraphDef()
    for node in nodes:
        graph_def.node.add().CopyFrom(node)
    for name, body in functions:
        function = graph_def.library.function.add()
        function.signature.name = name
        for node in body:
            function.node_def.add().CopyFrom(node)
    return graph_def


def _node(name, op, *inputs, **attrs) -> tf_graph_pb2.NodeDef:
    node = tf_graph_pb2.NodeDef(name=name, op=op, input=list(inputs))
    for key, value in attrs.items():
        node.attr[key].CopyFrom(value)
    return node


def test_function_attribute_naming_a_primitive_op_is_a_use_of_that_op():
    f = tf_graph_pb2.AttrValue(func=tf_graph_pb2.NameAttrList(name="ReadFile"))
    found = op_check.graph_findings(_graph(_node("call", "PartitionedCall", f=f)), STRICT)
    assert [(x.op, x.node) for x in found] == [("ReadFile", "call")]
    assert "called as a function" in found[0].describe()


def test_function_attribute_naming_a_library_function_checks_its_body():
    f = tf_graph_pb2.AttrValue(func=tf_graph_pb2.NameAttrList(name="body"))
    graph_def = _graph(_node("call", "StatefulPartitionedCall", f=f),
                       functions=[("body", [_node("w", "WriteFile", "a", "b")])])
    found = op_check.graph_findings(graph_def, STRICT)
    assert [(x.op, x.node, x.function) for x in found] == [("WriteFile", "w", "body")]


def test_node_calling_a_library_function_by_op_name_is_allowed():
    graph_def = _graph(_node("n", "my_fn"), functions=[("my_fn", [_node("c", "Const")])])
    assert op_check.graph_findings(graph_def, STRICT) == []


def test_trust_finds_nothing_and_allowed_ops_extend_the_list():
    graph_def = _graph(_node("w", "WriteFile", "a", "b"))
    assert op_check.graph_findings(graph_def, policy_lib.Policy(trust=True)) == []
    assert op_check.graph_findings(
        graph_def, policy_lib.Policy(allowed_ops=frozenset({"WriteFile"}))) == []
    assert len(op_check.graph_findings(graph_def, STRICT)) == 1


def test_dataset_from_graph_is_allowed_only_when_fed_directly_by_a_bound_parameter():
    graph_def = _graph(_node("g", "Placeholder"), _node("d", "DatasetFromGraph", "g"))
    assert op_check.graph_findings(graph_def, STRICT, bound=frozenset({"g"})) == []
    assert len(op_check.graph_findings(graph_def, STRICT)) == 1  # not a parameter
    via_identity = _graph(_node("g", "Placeholder"), _node("i", "Identity", "g"),
                          _node("d", "DatasetFromGraph", "i"))
    assert len(op_check.graph_findings(via_identity, STRICT, bound=frozenset({"g"}))) == 1
    in_function = _graph(functions=[("f", [_node("d", "DatasetFromGraph", "x")])])
    assert len(op_check.graph_findings(in_function, STRICT, bound=frozenset({"x"}))) == 1
    assert len(op_check.graph_findings(graph_def, STRICT, graph=op_check.DATASET_GRAPH,
                                       bound=frozenset({"g"}))) == 1


def test_print_is_allowed_to_stderr_and_the_log_but_not_to_files():
    def printing(stream):
        return _graph(_node("p", "PrintV2", "s",
                            output_stream=tf_graph_pb2.AttrValue(s=stream.encode())))

    assert op_check.graph_findings(printing("stderr"), STRICT) == []
    assert op_check.graph_findings(printing("log(info)"), STRICT) == []
    assert len(op_check.graph_findings(printing("file:///tmp/x"), STRICT)) == 1
    assert len(op_check.graph_findings(printing("stdout"), STRICT)) == 1


def test_cache_dataset_only_in_memory():
    def const(value: bytes):
        tensor = tf_graph_pb2.TensorProto(dtype=7, string_val=[value])
        return _node("name", "Const", value=tf_graph_pb2.AttrValue(tensor=tensor))

    in_memory = _graph(const(b""), _node("c", "CacheDatasetV2", "ds", "name", "cache"))
    to_file = _graph(const(b"/tmp/cache"), _node("c", "CacheDatasetV2", "ds", "name", "cache"))
    assert op_check.graph_findings(in_memory, STRICT) == []
    assert len(op_check.graph_findings(to_file, STRICT)) == 1


def test_variant_constants_are_refused():
    variant = _graph(_node("c", "Const", dtype=tf_graph_pb2.AttrValue(type=21)))
    assert len(op_check.graph_findings(variant, STRICT)) == 1
    assert op_check.graph_findings(
        _graph(_node("c", "Const", dtype=tf_graph_pb2.AttrValue(type=3))), STRICT) == []


def _writing_computation(target: pathlib.Path) -> pb.Computation:
    """A computation that writes `target` (WriteFile: refused unless allowed) and returns 1."""
    tf = _tf()

    def write():
        with tf.control_dependencies([tf.io.write_file(str(target), "x")]):
            return tf.constant(1)

    return tc.tensorflow_computation(write)


def test_graph_function_checks_before_tensorflow_imports_the_graph(tmp_path):
    target = tmp_path / "x.txt"
    comp = _writing_computation(target)
    with pytest.raises(errors.PolicyError, match="WriteFile"):
        from tffexec.executors import tf_function

        tf_function.GraphFunction(comp.tensorflow)
    with runner_lib.Runner() as runner, pytest.raises(errors.PolicyError, match="WriteFile"):
        runner.run(comp)
    assert not target.exists()
    trusted = config_lib.StackConfig(policy=policy_lib.Policy(trust=True))
    with runner_lib.Runner(trusted) as runner:
        assert int(runner.run(comp)) == 1
    assert target.exists()


def test_validate_of_a_graph_computation_does_not_import_tensorflow(tmp_path):
    path = tmp_path / "comp.pb"
    _graph_comp = pb.Computation.FromString((CORPUS / "tf_add_int32" / "comp.pb").read_bytes()
                                            if (CORPUS / "tf_add_int32").is_dir() else
                                            (CASES / "tf_small_dtypes" / "comp.pb").read_bytes())
    path.write_bytes(_graph_comp.SerializeToString())
    code = ("import sys; from tffexec.cli.main import cli; "
            "from click.testing import CliRunner; "
            f"r = CliRunner().invoke(cli, ['validate', {str(path)!r}]); "
            "print(r.exit_code, 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.stdout.split() == ["0", "False"], proc.stderr


# --------------------------------------------------------------------------- flags

def test_weakening_flags_are_never_read_from_the_environment():
    @policy_flags.options
    def command(**kwargs):
        pass

    params = {p.name: p for p in getattr(command, "__click_params__", [])}
    assert params["trust"].allow_from_autoenv is False
    assert params["allow_op"].allow_from_autoenv is False
    assert params["trust"].envvar is None and params["allow_op"].envvar is None


def test_limits_may_come_from_the_environment():
    sum_comp = CORPUS / "fed_sum_int32" / "comp.pb"
    result = CliRunner().invoke(cli, ["run", str(sum_comp), str(sum_comp.parent / "arg.pb")],
                                env={"TFFEXEC_MAX_CLIENTS": "2"})
    assert result.exit_code == 5, result.stderr
    assert "--max-clients" in result.stderr


@pytest.mark.parametrize("text,expected", [("1048576", 1 << 20), ("512K", 512 << 10),
                                           ("64M", 64 << 20), ("2GiB", 2 << 30), ("1g", 1 << 30)])
def test_size_flags_accept_binary_suffixes(text, expected):
    assert policy_flags.ByteSize().convert(text, None, None) == expected


def test_every_policy_flag_is_documented_in_the_readme():
    from tffexec.cli.main import cli  # noqa: PLC0415

    readme = (REPO / "README.md").read_text()
    run_flags = {opt for param in cli.commands["run"].params for opt in param.opts}
    policy_flags_seen = {flag for flag in run_flags
                         if flag.startswith("--max-") or flag in ("--allow-op", "--trust")}
    assert {"--max-queue-wait", "--max-value-bytes", "--trust"} <= policy_flags_seen
    assert [flag for flag in sorted(policy_flags_seen) if f"`{flag}" not in readme] == []


def test_two_runners_with_different_policies_interleaved_each_apply_their_own(tmp_path):
    """No process-global policy: each Runner applies the one in its StackConfig, whatever the
    other did last, for ops and for limits alike."""
    writes = _writing_computation(tmp_path / "x.txt")
    sums = loading.load_computation(CORPUS / "fed_sum_int32" / "comp.pb")
    strict = config_lib.StackConfig(policy=policy_lib.Policy(max_clients=2))
    lenient = config_lib.StackConfig(policy=policy_lib.Policy(allowed_ops={"WriteFile"}))
    with runner_lib.Runner(strict) as a, runner_lib.Runner(lenient) as b:
        for _ in range(2):
            with pytest.raises(errors.PolicyError, match="WriteFile"):
                a.run(writes)
            assert int(b.run(writes)) == 1
            with pytest.raises(errors.PolicyError, match="3 clients"):
                a.run(sums, [1, 2, 3])
            assert int(b.run(sums, [1, 2, 3])) == 6


def test_a_commands_limits_end_with_the_command():
    sum_comp = CORPUS / "fed_sum_int32" / "comp.pb"
    args = ["run", str(sum_comp), str(sum_comp.parent / "arg.pb")]
    assert CliRunner().invoke(cli, args + ["--max-clients", "1"]).exit_code == 5
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert CliRunner().invoke(cli, args + ["--max-clients", "1"]).exit_code == 5


def test_client_limit_applies_to_the_python_api():
    comp = loading.load_computation(CORPUS / "fed_sum_int32" / "comp.pb")
    config = config_lib.StackConfig(policy=policy_lib.Policy(max_clients=2))
    with runner_lib.Runner(config) as runner, pytest.raises(errors.PolicyError, match="3 clients"):
        runner.run(comp, [1, 2, 3])


# --------------------------------------------------------------------------- sequences

def _sequence(make_dataset, element_type=I64) -> sequences.SequenceValue:
    tf = _tf()
    graph = tf.raw_ops.DatasetToGraphV2(
        input_dataset=tf.data.experimental.to_variant(make_dataset())).numpy()
    # Values do not check themselves: bound to the checker, the graph is checked on first use.
    return sequences.SequenceValue(element_type, graph_def=graph).bind_policy(
        STRICT, op_check.check_dataset_graph)


def test_an_unchecked_dataset_graph_never_becomes_a_dataset():
    tf = _tf()
    graph = tf.raw_ops.DatasetToGraphV2(
        input_dataset=tf.data.experimental.to_variant(tf.data.Dataset.range(3))).numpy()
    with pytest.raises(errors.PolicyError, match="not checked"):
        sequences.SequenceValue(I64, graph_def=graph).elements()
    trusted = sequences.SequenceValue(I64, graph_def=graph).bind_policy(
        policy_lib.Policy(trust=True))
    assert [int(x) for x in trusted.elements()] == [0, 1, 2]
    checked = sequences.SequenceValue(I64, graph_def=graph)
    op_check.check_sequence(checked, STRICT)
    assert checked.is_checked and [int(x) for x in checked.elements()] == [0, 1, 2]


def test_a_sequence_bound_to_the_checker_is_checked_when_first_read(tmp_path):
    tf = _tf()
    path = tmp_path / "lines.txt"
    path.write_text("a\n")
    graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(
        tf.data.TextLineDataset([str(path)]))).numpy()
    seq = sequences.SequenceValue(fl.TensorType(np.str_), graph_def=graph)
    op_check.guard_value(seq, fl.SequenceType(fl.TensorType(np.str_)), STRICT)
    assert not seq.is_checked  # nothing parsed yet
    with pytest.raises(errors.PolicyError, match="TextLineDataset"):
        seq.elements()


def test_infinite_dataset_is_refused_without_reading_it():
    tf = _tf()
    seq = _sequence(lambda: tf.data.Dataset.range(3).repeat())
    start = time.monotonic()
    with pytest.raises(errors.PolicyError, match="infinite"):
        seq.elements()
    with pytest.raises(errors.PolicyError, match="infinite"):
        seq.bounded_dataset()
    assert time.monotonic() - start < 5


def test_infinite_dataset_of_unknown_length_is_cut_at_the_limit():
    tf = _tf()
    seq = _sequence(lambda: tf.data.Dataset.range(3).repeat().filter(lambda x: x >= 0))
    seq.bind_policy(policy_lib.Policy(max_sequence_elements=1000))
    start = time.monotonic()
    with pytest.raises(errors.PolicyError, match="more than 1,000 elements"):
        seq.elements()
    assert time.monotonic() - start < 10


def test_infinite_dataset_argument_inside_a_graph_is_cut_at_the_limit():
    tf = _tf()
    comp = tc.tensorflow_computation(lambda ds: ds.reduce(np.int64(0), lambda a, x: a + x),
                                     fl.SequenceType(I64))
    seq = _sequence(lambda: tf.data.Dataset.range(3).repeat().filter(lambda x: x >= 0))
    config = config_lib.StackConfig(policy=policy_lib.Policy(max_sequence_elements=500))
    with runner_lib.Runner(config) as runner:
        with pytest.raises(errors.PolicyError, match="more than 500 elements"):
            runner.run(comp, seq)
        finite = _sequence(lambda: tf.data.Dataset.range(10).filter(lambda x: x >= 0))
        assert int(runner.run(comp, finite)) == 45  # unknown length within the limit runs


def test_forbidden_op_in_dataset_argument_is_refused_by_the_python_api(tmp_path):
    tf = _tf()
    path = tmp_path / "lines.txt"
    path.write_text("a\nb\n")
    seq = _sequence(lambda: tf.data.TextLineDataset([str(path)]), fl.TensorType(np.str_))
    comp = tc.tensorflow_computation(lambda ds: ds.reduce(np.int64(0), lambda a, _: a + 1),
                                     fl.SequenceType(fl.TensorType(np.str_)))
    with runner_lib.Runner() as runner, pytest.raises(errors.PolicyError,
                                                      match="arg: .*TextLineDataset"):
        runner.run(comp, seq)
    with pytest.raises(errors.PolicyError, match="TextLineDataset"):
        seq.elements()  # under the default policy, never read


# --------------------------------------------------------------------------- nesting

def _nested_lambdas(n: int) -> tuple[pb.Computation, str]:
    """(x -> (x -> ... (x -> x)(x) ...)(x)): n lambda calls, each level calls the next."""
    f = fl.FunctionType(I32, I32).to_proto()
    root = pb.Computation(type=f)
    node = root
    for _ in range(n):
        lam = getattr(node, "lambda")
        lam.parameter_name = "x"
        call = lam.result
        call.type.CopyFrom(I32.to_proto())
        call.call.argument.type.CopyFrom(I32.to_proto())
        call.call.argument.reference.name = "x"
        node = call.call.function
        node.type.CopyFrom(f)
    lam = getattr(node, "lambda")
    lam.parameter_name = "x"
    lam.result.type.CopyFrom(I32.to_proto())
    lam.result.reference.name = "x"
    return root, "7"


def _nested_blocks(n: int) -> tuple[pb.Computation, str]:
    """(x -> let a0 = x in let a1 = a0 in ... a_n)."""
    root = pb.Computation(type=fl.FunctionType(I32, I32).to_proto())
    getattr(root, "lambda").parameter_name = "x"
    node = getattr(root, "lambda").result
    previous = "x"
    for i in range(n):
        node.type.CopyFrom(I32.to_proto())
        local = node.block.local.add(name=f"a{i}")
        local.value.type.CopyFrom(I32.to_proto())
        local.value.reference.name = previous
        previous = f"a{i}"
        node = node.block.result
    node.type.CopyFrom(I32.to_proto())
    node.reference.name = previous
    return root, "7"


def _nested_struct_type(message: pb.Type, levels: int) -> None:
    """Writes `<<...<int32>...>>` (`levels` struct levels) into `message`, in place (protobuf
    refuses to copy messages nested this deep)."""
    for _ in range(levels):
        message = message.struct.element.add().value
    message.tensor.CopyFrom(I32.to_proto().tensor)


def _nested_structs(n: int) -> tuple[pb.Computation, str]:
    """(x -> <<...<x>...>>) with n struct levels."""
    root = pb.Computation()
    root.type.function.parameter.CopyFrom(I32.to_proto())
    _nested_struct_type(root.type.function.result, n)
    getattr(root, "lambda").parameter_name = "x"
    node = getattr(root, "lambda").result
    for level in range(n, 0, -1):
        _nested_struct_type(node.type, level)
        node = node.struct.element.add().value
    node.type.CopyFrom(I32.to_proto())
    node.reference.name = "x"
    return root, "7"


def _deepest_accepted(build) -> int:
    """The largest n whose computation protobuf still parses (the runtime's nesting limit)."""
    low, high = 1, 200
    while low < high:
        mid = (low + high + 1) // 2
        try:
            loading.parse_computation(build(mid)[0].SerializeToString())
            low = mid
        except errors.ComputationError:
            high = mid - 1
    return low


@pytest.mark.parametrize("build", [_nested_lambdas, _nested_blocks, _nested_structs],
                         ids=["lambdas", "blocks", "structs"])
def test_deepest_nesting_protobuf_accepts_runs_and_one_more_is_refused(build, tmp_path):
    n = _deepest_accepted(build)
    assert n >= 10
    comp, arg = build(n)
    path, arg_path = tmp_path / "comp.pb", tmp_path / "arg.json"
    path.write_bytes(comp.SerializeToString())
    arg_path.write_text(arg)
    result = CliRunner().invoke(cli, ["run", str(path), str(arg_path), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert "7" in result.stdout and "RecursionError" not in result.stderr
    path.write_bytes(build(n + 1)[0].SerializeToString())
    deeper = CliRunner().invoke(cli, ["run", str(path), str(arg_path)])
    assert deeper.exit_code == 3
    assert "nested too deeply" in deeper.stderr


# --------------------------------------------------------------------------- memory

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not pathlib.Path("/proc/self/statm").exists(), reason="needs /proc")
def test_memory_stays_flat_over_200_runs_through_one_runner():
    comp = loading.load_computation(CORPUS / "fed_mean_weighted" / "comp.pb")
    arg = loading.load_value(CORPUS / "fed_mean_weighted" / "arg.pb",
                             fl.Type.from_proto(comp.type).parameter)
    with runner_lib.Runner() as runner:
        for _ in range(30):  # warm up: graphs imported, stacks built, allocator settled
            runner.run(comp, arg)
        before = _rss_bytes()
        for _ in range(200):
            runner.run(comp, arg)
        grown = _rss_bytes() - before
    assert grown < 40 * (1 << 20), f"RSS grew by {grown / (1 << 20):.1f} MiB over 200 runs"
