"""Every committed conformance case, every TFF-generated case in examples/cases (and the external
corpus's, when present) loads, round-trips through our writer byte for byte, and agrees with
its expected.json."""
from __future__ import annotations

import io
import json
import os
import pathlib

import federated_language as fl
import numpy as np
import pytest

from tffexec import policy as policy_lib
from tffexec.checks import op_check
from tffexec.formats import compare, jsonfmt, loading, npzfmt, values
from tffexec.formats import types as tt
from tffexec.formats.protos import executor_pb2
from tffexec.formats.sequences import SequenceValue

from tffexec_test_support import all_case_dirs, case_id, case_param  # noqa: E402

DIRS = {case_id(d): d for d in all_case_dirs()}
CASES = sorted(DIRS)
ARG_CASES = [c for c in CASES if (DIRS[c] / "arg.pb").exists()]


def _params(cases: list[str]) -> list:
    """Each case id as a parameter, marked `external_corpus` when it comes from there."""
    return [case_param(DIRS[c], c) for c in cases]


def _dir(case: str) -> pathlib.Path:
    return DIRS[case]


def _signature(case: str) -> fl.FunctionType:
    comp = loading.load_computation(_dir(case) / "comp.pb")
    return tt.type_from_proto(comp.type)


def _parse(path: pathlib.Path) -> executor_pb2.Value:
    pb = executor_pb2.Value()
    pb.ParseFromString(path.read_bytes())
    return pb


def _has_sequence(t: fl.Type) -> bool:
    if isinstance(t, fl.SequenceType):
        return True
    return any(_has_sequence(c) for c in t.children())


@pytest.mark.parametrize("case", _params(CASES))
def test_computations_load_and_signature_matches_meta(case):
    meta = json.loads((_dir(case) / "meta.json").read_text())
    sig = _signature(case)
    native = loading.load_computation(_dir(case) / "native_comp.pb")
    assert tt.type_str(sig) == meta["type_signature"]
    assert tt.type_str(sig.result) == meta["result_type"]
    assert native.WhichOneof("computation") is not None


def _checked(value, type_spec):
    """The value, its dataset graphs checked: loaders check no ops, and an unchecked graph never
    becomes a dataset (which reading its elements needs)."""
    op_check.check_value(value, type_spec, policy_lib.DEFAULT, path="value")
    return value


VALUE_FILES = [(c, n) for c in CASES for n in ("arg.pb", "expected.pb")
               if (_dir(c) / n).exists()]


@pytest.mark.parametrize("case,name", [
    pytest.param(c, n, id=f"{c}/{n}", marks=case_param(DIRS[c], None).marks) for c, n in VALUE_FILES])
def test_value_roundtrip_is_byte_identical(case, name):
    path = _dir(case) / name
    sig = _signature(case)
    hint = sig.parameter if name == "arg.pb" else sig.result
    data = path.read_bytes()
    pb = _parse(path)
    # Without a hint the type comes from the proto itself; it must be the signature's.
    py, inferred = values.value_from_proto(pb)
    _checked(py, inferred)
    assert inferred == hint
    out = values.value_to_proto(py, inferred)
    assert out == pb
    # Byte identity holds too: TFF and we both write fields in number order, scalars and
    # strings as typed lists, other tensors as little-endian content.
    assert out.SerializeToString() == data
    # The load_value path (with the type hint) gives the same value.
    loaded = _checked(loading.load_value(path, hint), hint)
    assert values.values_equal(loaded, py, hint) == []


@pytest.mark.parametrize("case", _params(CASES))
def test_expected_json_matches_expected_pb(case):
    sig = _signature(case)
    expected = _checked(loading.load_value(_dir(case) / "expected.pb", sig.result), sig.result)
    doc = json.loads((_dir(case) / "expected.json").read_text())
    from_json = jsonfmt.value_from_json(doc, sig.result)
    assert values.values_equal(from_json, expected, sig.result) == []
    # Also through the file loader (format sniffed from the extension) and without a type.
    assert values.values_equal(loading.load_value(_dir(case) / "expected.json", sig.result),
                               expected, sig.result) == []
    assert values.values_equal(loading.load_value(_dir(case) / "expected.json", None),
                               expected, sig.result) == []
    # Our writer produces the corpus' tagged rendering and type string; float32 leaves are
    # printed with their own shortest digits (the corpus widens them to float64), so the numbers
    # are compared by reading them back, exactly.
    written = jsonfmt.value_to_json(expected, sig.result)
    assert written["format"] == "tffexec-value/1"
    assert written["type"] == doc["type"]
    assert _without_floats(written["value"]) == _without_floats(doc["value"])
    assert values.values_equal(jsonfmt.value_from_json(written, sig.result), expected,
                               sig.result) == []


def _without_floats(tagged: object) -> object:
    """The tagged JSON with every float number replaced by a marker: its layout and other leaves."""
    if isinstance(tagged, dict):
        return {key: _without_floats(value) for key, value in tagged.items()}
    if isinstance(tagged, list):
        return [_without_floats(value) for value in tagged]
    return "<float>" if isinstance(tagged, float) else tagged


@pytest.mark.parametrize("case", _params(ARG_CASES))
def test_args_roundtrip_through_json_and_npz(case):
    sig = _signature(case)
    arg = _checked(loading.load_value(_dir(case) / "arg.pb", sig.parameter), sig.parameter)
    text = json.dumps(jsonfmt.value_to_json(arg, sig.parameter), allow_nan=False)
    back = jsonfmt.value_from_json(json.loads(text), sig.parameter)
    assert values.values_equal(back, arg, sig.parameter) == []
    clients = values.infer_clients(arg, sig.parameter)
    meta = json.loads((_dir(case) / "meta.json").read_text())
    if meta["clients_source"].startswith("inferred from argument"):
        assert clients == meta["num_clients"]
    else:
        assert clients is None
    if _has_sequence(sig.parameter):
        with pytest.raises(Exception, match="not supported in npz"):
            npzfmt.value_to_npz(arg, sig.parameter, io.BytesIO())
        return
    buffer = io.BytesIO()
    npzfmt.value_to_npz(arg, sig.parameter, buffer)
    buffer.seek(0)
    assert values.values_equal(npzfmt.value_from_npz(buffer, sig.parameter), arg,
                               sig.parameter) == []


SEQUENCE_CASES = [c for c in ARG_CASES if c.split("/")[0] in ("conformance", "corpus")
                  and (c.split("/")[1].startswith("seq_") or c.split("/")[1] == "learn_fedavg_logreg_round")]


@pytest.mark.parametrize("case", _params(SEQUENCE_CASES))
def test_sequences_materialize_with_tensorflow(case):
    sig = _signature(case)
    arg = loading.load_value(_dir(case) / "arg.pb", sig.parameter)
    _checked(arg, sig.parameter)
    clients = arg if isinstance(arg, list) else arg.client_data
    seqs = [s for s in clients if isinstance(s, SequenceValue)]
    assert seqs and all(s.has_graph_def and not s.is_materialized for s in seqs)
    elements = [s.elements() for s in seqs]
    assert all(len(e) > 0 for e in elements)
    if "/seq_" in case:
        # int32 scalars per client (what TFF reduces is checked by the run conformance tests).
        assert all(np.asarray(x).dtype == np.int32 and np.asarray(x).shape == ()
                   for e in elements for x in e)
    else:
        first = elements[0][0]
        assert first.x.dtype.name == "float32" and first.x.shape[1] == 4
        assert first.y.dtype.name == "int32"
    # Re-serializing gives different bytes but equal sequences.
    for s in seqs:
        rebuilt = SequenceValue(s.element_type, elements=s.elements())
        again = SequenceValue(s.element_type, graph_def=rebuilt.graph_def())
        op_check.check_sequence(again, policy_lib.DEFAULT)
        assert compare.value_differences(again, s, fl.SequenceType(s.element_type)) == []
        assert again.to_dataset() is not None
