"""Fuzzing: mutated computations and values are either handled or refused with a documented error.

Hypothesis mutates valid corpus files (byte flips, truncation, inserted bytes, and field-level
edits of the parsed AST) and checks that loading, validating and running either succeed or raise
a documented `TffexecError` subclass. Nothing converts unexpected exceptions: any other exception
fails the test (and would be exit 70 in the CLI).

Profiles: the default "fast" one keeps this module under a minute; `TFFEXEC_FUZZ=long` runs the
long profile by hand (`TFFEXEC_FUZZ=long pytest tests/test_fuzz.py`).
"""
from __future__ import annotations

import json
import os
import pathlib

import federated_language as fl
import numpy as np
import pytest
from federated_language.proto import computation_pb2 as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tffexec import errors
from tffexec import runner as runner_lib
from tffexec.factories import config as config_lib
from tffexec.checks import analysis
from tffexec.formats import loading
from tffexec.checks import op_check
from tffexec import policy as policy_lib

from tffexec_test_support import CASES, CORPUS, REPO, case_roots  # noqa: E402

settings.register_profile("fast", max_examples=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = "long" if os.environ.get("TFFEXEC_FUZZ") == "long" else "fast"
#: Runs involve TensorFlow (~10-100 ms each); the fast profile runs fewer of them.
RUN_EXAMPLES = 2000 if PROFILE == "long" else 15

SEEDS = ["tf_add_int32", "tf_struct_in_out", "fed_sum_int32", "fed_mean_weighted",
         "fed_broadcast_map_sum", "seq_sequence_reduce_intrinsic", "fed_zip_clients",
         "tf_string_concat"]


def _case(name: str) -> pathlib.Path:
    return CORPUS / name if (CORPUS / name).is_dir() else CASES / name


def _seed(name: str) -> tuple[bytes, bytes | None]:
    d = _case(name)
    arg = d / "arg.pb"
    return (d / "comp.pb").read_bytes(), arg.read_bytes() if arg.exists() else None


SEED_BYTES = {name: _seed(name) for name in SEEDS if (_case(name) / "comp.pb").exists()}
seed_names = st.sampled_from(sorted(SEED_BYTES))


def _documented(e: BaseException) -> bool:
    return isinstance(e, errors.TffexecError) and not isinstance(e, errors.InternalError)


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """`data` after a few byte flips, a truncation, an insertion or a deletion."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set"]))
        if not out:
            break
        i = draw(st.integers(0, len(out) - 1))
        if kind == "flip":
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            out[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x1A]))
        elif kind == "truncate":
            del out[i:]
        elif kind == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[i:i + draw(st.integers(1, 8))]
    return bytes(out)


@st.composite
def mutated_computation(draw) -> bytes:
    """A corpus computation with one field-level edit of one AST node."""
    comp_bytes, _ = SEED_BYTES[draw(seed_names)]
    comp = pb.Computation.FromString(comp_bytes)
    nodes = [node.comp for node in analysis.walk(comp)]
    node = nodes[draw(st.integers(0, len(nodes) - 1))]
    other = nodes[draw(st.integers(0, len(nodes) - 1))]
    kind = node.WhichOneof("computation")
    edit = draw(st.sampled_from(["type_from_other", "clear_type", "rename", "index",
                                 "uri", "drop_child", "swap_kind", "graph_bytes"]))
    if edit == "type_from_other":
        node.type.CopyFrom(pb.Type.FromString(other.type.SerializeToString()))
    elif edit == "clear_type":
        node.ClearField("type")
    elif edit == "rename" and kind == "reference":
        node.reference.name = draw(st.sampled_from(["", "x", "zzz", "arg", "_var1"]))
    elif edit == "rename" and kind == "lambda":
        getattr(node, "lambda").parameter_name = draw(st.sampled_from(["", "q", "arg"]))
    elif edit == "index" and kind == "selection":
        node.selection.index = draw(st.integers(-3, 10))
    elif edit == "uri" and kind in ("intrinsic", "placement"):
        getattr(node, kind).uri = draw(st.sampled_from(
            ["federated_sum", "federated_map", "sequence_sum", "clients", "server", "bogus"]))
    elif edit == "drop_child" and kind == "call":
        node.call.ClearField(draw(st.sampled_from(["function", "argument"])))
    elif edit == "drop_child" and kind in ("struct", "block"):
        container = node.struct.element if kind == "struct" else node.block.local
        if len(container):
            del container[draw(st.integers(0, len(container) - 1))]
    elif edit == "swap_kind":
        replacement = pb.Computation.FromString(other.SerializeToString())
        replacement.type.CopyFrom(node.type)
        node.CopyFrom(replacement)
    elif edit == "graph_bytes" and kind == "tensorflow":
        node.tensorflow.graph_def.value = draw(mutated_bytes(node.tensorflow.graph_def.value))
    return comp.SerializeToString()


def _load(data: bytes):
    try:
        return loading.load_computation(data)
    except Exception as e:  # noqa: BLE001 - the assertion below is the point
        assert _documented(e), f"{type(e).__name__}: {e}"
        return None


def _validate(comp) -> None:
    try:
        analysis.analyze(comp, policy=policy_lib.DEFAULT)
        op_check.computation_findings(comp, policy_lib.DEFAULT)
    except Exception as e:  # noqa: BLE001
        assert _documented(e), f"{type(e).__name__}: {e}"


@pytest.fixture(scope="module")
def runner():
    with runner_lib.Runner(config_lib.StackConfig(clients=3)) as r:
        yield r


def _run(runner, comp, arg_bytes: bytes | None) -> None:
    try:
        function_type = fl.Type.from_proto(comp.type)
    except Exception:  # noqa: BLE001 - an unreadable type is refused by loading/analysis
        return
    parameter = getattr(function_type, "parameter", None)
    try:
        arg = loading.load_value(arg_bytes, parameter) if (arg_bytes and parameter) else None
        runner.run(comp, arg)
    except Exception as e:  # noqa: BLE001
        assert _documented(e), f"{type(e).__name__}: {e}"


@settings(settings.get_profile(PROFILE), max_examples=settings.get_profile(PROFILE).max_examples * 4)
@given(data=st.data())
def test_mutated_computation_bytes_load_and_validate_or_refuse(data):
    comp_bytes, _ = SEED_BYTES[data.draw(seed_names)]
    comp = _load(data.draw(mutated_bytes(comp_bytes)))
    if comp is not None:
        _validate(comp)


@settings(settings.get_profile(PROFILE), max_examples=settings.get_profile(PROFILE).max_examples * 4)
@given(comp_bytes=mutated_computation())
def test_field_mutated_computation_loads_and_validates_or_refuses(comp_bytes):
    comp = _load(comp_bytes)
    if comp is not None:
        _validate(comp)


@settings(settings.get_profile(PROFILE), max_examples=RUN_EXAMPLES)
@given(data=st.data())
def test_field_mutated_computation_runs_or_refuses(runner, data):
    name = data.draw(seed_names)
    comp_bytes = data.draw(mutated_computation())
    comp = _load(comp_bytes)
    if comp is not None:
        _run(runner, comp, SEED_BYTES[name][1])


@settings(settings.get_profile(PROFILE), max_examples=RUN_EXAMPLES)
@given(data=st.data())
def test_byte_mutated_computation_runs_or_refuses(runner, data):
    name = data.draw(seed_names)
    comp_bytes, arg_bytes = SEED_BYTES[name]
    comp = _load(data.draw(mutated_bytes(comp_bytes)))
    if comp is not None:
        _run(runner, comp, arg_bytes)


@settings(settings.get_profile(PROFILE), max_examples=settings.get_profile(PROFILE).max_examples * 4)
@given(data=st.data())
def test_mutated_value_bytes_load_or_refuse(data):
    name = data.draw(st.sampled_from([n for n in sorted(SEED_BYTES) if SEED_BYTES[n][1]]))
    comp_bytes, arg_bytes = SEED_BYTES[name]
    parameter = fl.Type.from_proto(pb.Computation.FromString(comp_bytes).type).parameter
    hint = data.draw(st.sampled_from([parameter, None]))
    try:
        loading.load_value(data.draw(mutated_bytes(arg_bytes)), hint, fmt="pb")
    except Exception as e:  # noqa: BLE001
        assert _documented(e), f"{type(e).__name__}: {e}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["x", "y", "a", "b", "value", "dtype", "shape", "federated", "format"]),
        children, max_size=4),
    max_leaves=12)


@settings(settings.get_profile(PROFILE), max_examples=settings.get_profile(PROFILE).max_examples * 4)
@given(data=st.data(), value=json_values)
def test_arbitrary_json_values_load_or_refuse(data, value):
    name = data.draw(seed_names)
    comp_bytes, _ = SEED_BYTES[name]
    function_type = fl.Type.from_proto(pb.Computation.FromString(comp_bytes).type)
    hint = data.draw(st.sampled_from([function_type.parameter, None]))
    text = json.dumps(value, allow_nan=True).encode()
    try:
        loading.load_value(text, hint, fmt="json")
    except Exception as e:  # noqa: BLE001
        assert _documented(e), f"{type(e).__name__}: {e}"


def test_fuzz_seeds_are_present():
    assert len(SEED_BYTES) >= 6


# --------------------------------------------------------------------------- found by the long run

def test_value_file_holding_a_graph_def_with_attributes_is_an_argument_error():
    # Found by TFFEXEC_FUZZ=long: diagnosing bytes that parse as a GraphDef walked its `attr`
    # map as if it were a repeated field (TypeError, exit 70).
    from tffexec.formats.protos import tf_graph_pb2

    graph_def = tf_graph_pb2.GraphDef()
    node = graph_def.node.add(name="c", op="Const")
    node.attr["dtype"].type = 3
    with pytest.raises(errors.ArgumentError, match="GraphDef"):
        loading.load_value(graph_def.SerializeToString(), None, fmt="pb")


def test_graph_binding_that_disagrees_with_the_function_type_is_a_computation_error(runner):
    # Found by TFFEXEC_FUZZ=long: a type without the parameter the graph binds reached
    # TensorFlow's signature check (ValueError, exit 70).
    comp = pb.Computation.FromString(SEED_BYTES["tf_add_int32"][0])
    comp.type.function.ClearField("parameter")
    with pytest.raises(errors.ComputationError, match="parameter binding names 2 tensors"):
        runner.run(comp)
