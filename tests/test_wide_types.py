"""Wide types: the type notation is federated-language's, and `validate` reads a type of 10^5
struct elements in seconds (linear walkers, each distinct type converted or walked once).

The wide computation is `(arg -> federated_map(<(x -> x), arg>))` over `{<e0..eN=int32>}@CLIENTS`,
built on the proto by `benchmarks/bench_wide_types.py` (which times 10^4..10^6 elements).
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import time

import federated_language as fl
import hypothesis
import numpy as np
import pytest
from federated_language.proto import computation_pb2 as pb
from hypothesis import strategies as st

from tffexec.checks import type_cache
from tffexec.cli import main
from tffexec.cli import validate_cmd
from tffexec.formats import arrays, type_notation

from tffexec_test_support import REPO, all_case_dirs


def _bench():
    path = REPO / "benchmarks" / "bench_wide_types.py"
    spec = importlib.util.spec_from_file_location("bench_wide_types", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


def _types_in(message, out: list) -> list:
    """Every Type message inside `message` (node types and the types within them)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in (value if field.is_repeated else [value]):
            if isinstance(item, pb.Type):
                out.append(item)
            _types_in(item, out)
    return out


def _fl_text(proto: pb.Type) -> str | None:
    """federated-language's notation, or None when it refuses the proto."""
    try:
        return str(fl.Type.from_proto(proto))
    except Exception:  # noqa: BLE001 - it raises ValueError, TypeError, NotImplementedError
        return None


def _our_text(proto: pb.Type) -> str | None:
    try:
        return type_notation.type_notation(proto)
    except ValueError:
        return None


def test_notation_is_federated_languages_for_every_type_in_the_committed_cases():
    distinct: dict[bytes, str] = {}
    for case in all_case_dirs():
        comp = pb.Computation.FromString((case / "comp.pb").read_bytes())
        for proto in _types_in(comp, [comp.type]):
            distinct.setdefault(proto.SerializeToString(), case.name)
    for data, case in distinct.items():
        proto = pb.Type.FromString(data)
        assert _our_text(proto) == _fl_text(proto), case
    assert len(distinct) > 200


_DTYPES = st.sampled_from([1, 3, 7, 9, 19, 0, 99])  # float, int32, string, int64, half; invalid
_NAMES = st.sampled_from(["", "", "a", "b", "items", "_asdict", "x y", "é"])
_URIS = st.sampled_from(["clients", "server", "nowhere"])


def _tensor(dtype, dims, unknown) -> pb.Type:
    t = pb.Type()
    t.tensor.dtype = dtype
    t.tensor.dims.extend(dims)
    t.tensor.unknown_rank = unknown
    return t


def _extend(children):
    def struct(elements):
        t = pb.Type()
        t.struct.SetInParent()
        for name, value in elements:
            t.struct.element.add(name=name, value=value)
        return t

    def federated(member, uri, all_equal):
        t = pb.Type()
        t.federated.member.CopyFrom(member)
        t.federated.placement.value.uri = uri
        t.federated.all_equal = all_equal
        return t

    def sequence(element):
        t = pb.Type()
        t.sequence.element.CopyFrom(element)
        return t

    def function(parameter, result):
        t = pb.Type()
        if parameter is not None:
            t.function.parameter.CopyFrom(parameter)
        t.function.result.CopyFrom(result)
        return t

    return st.one_of(
        st.builds(struct, st.lists(st.tuples(_NAMES, children), max_size=4)),
        st.builds(federated, children, _URIS, st.booleans()),
        st.builds(sequence, children),
        st.builds(function, st.none() | children, children),
    )


_LEAVES = st.one_of(
    st.builds(_tensor, _DTYPES, st.lists(st.sampled_from([-1, 0, 2, 3]), max_size=2),
              st.booleans()),
    st.just(pb.Type(placement=pb.PlacementType())),
    st.just(pb.Type()),  # no kind set
)
_TYPES = st.recursive(_LEAVES, _extend, max_leaves=12)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(_TYPES)
def test_notation_and_refusals_agree_with_federated_language_on_generated_types(proto):
    assert _our_text(proto) == _fl_text(proto)


def test_wide_struct_above_the_cache_width_reads_like_a_narrow_one():
    narrow, wide = BENCH.wide_struct(3), BENCH.wide_struct(500)
    outer = pb.Type()
    outer.federated.member.CopyFrom(wide)
    outer.federated.placement.value.uri = "clients"
    assert type_notation.type_notation(outer) == _fl_text(outer)
    assert type_notation.type_notation(narrow) == "<e0=int32,e1=int32,e2=int32>"
    assert type_cache.placement_uris(outer) == {"clients"}


def test_placements_of_an_unknown_uri_are_still_reported():
    proto = pb.Type()
    proto.federated.member.CopyFrom(BENCH.wide_struct(2))
    proto.federated.placement.value.uri = "moon"
    assert type_cache.placement_uris(proto) == {"moon"}


def _invoke(runner, *args):
    return runner.invoke(main.cli, [str(a) for a in args], catch_exceptions=False)


def test_validate_reads_a_type_of_100000_elements_in_seconds(runner, tmp_path):
    n = 100_000
    path = tmp_path / "wide.pb"
    path.write_bytes(BENCH.wide_computation(n).SerializeToString())
    start = time.process_time()  # CPU time: a loaded test machine barely changes it
    result = _invoke(runner, "validate", path, "--clients", "2")
    cpu = time.process_time() - start
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok: {path}: ({{<e0=int32,e1=int32,")
    assert f"e{n - 1}=int32>}}@CLIENTS) (type signature abbreviated: " in result.output
    assert "1 intrinsic call" in result.output
    # Before the linear walkers this took ~15 s of CPU (federated-language built the type
    # four times and printed it with a quadratic string builder); now ~1.5 s.
    assert cpu < 8, f"validate of {n} elements took {cpu:.1f} s of CPU"


def test_validate_abbreviates_a_long_signature_that_inspect_json_prints_whole(runner, tmp_path):
    path = tmp_path / "wide.pb"
    path.write_bytes(BENCH.wide_computation(5_000).SerializeToString())
    result = _invoke(runner, "validate", path, "--clients", "2")
    assert result.exit_code == 0, result.output
    ok_line = result.output.rstrip("\n")
    assert "\n" not in ok_line
    signature = json.loads(_invoke(runner, "inspect", path, "--json").output)["type_signature"]
    shown = ok_line.removeprefix(f"ok: {path}: ").split(" (type signature abbreviated: ")[0]
    head, tail = shown.split("…")
    assert signature.startswith(head) and signature.endswith(tail)
    assert len(shown) <= validate_cmd.MAX_SIGNATURE_CHARS + 1 < len(signature)
    assert f"abbreviated: {len(signature):,} characters); " in ok_line  # then the node count
    help_text = " ".join(_invoke(runner, "validate", "--help").output.split())
    assert f"longer than {validate_cmd.MAX_SIGNATURE_CHARS} characters is abbreviated" in help_text


def test_validate_shows_a_signature_at_the_limit_whole():
    signature = "(" + "x" * (validate_cmd.MAX_SIGNATURE_CHARS - 2) + ")"
    assert validate_cmd.abbreviated_signature(signature) == signature
    assert validate_cmd.abbreviated_signature(signature + " ") != signature + " "


def test_wide_intrinsic_declared_with_a_wrong_result_is_still_refused(runner, tmp_path):
    comp = BENCH.wide_computation(1000)
    call = getattr(comp, "lambda").result
    call.call.function.type.function.result.federated.placement.value.uri = "server"
    call.call.function.type.function.result.federated.all_equal = True
    path = tmp_path / "wrong.pb"
    path.write_bytes(comp.SerializeToString())
    result = _invoke(runner, "validate", path, "--clients", "2")
    assert result.exit_code == 1
    assert "intrinsic 'federated_map' is declared with type" in result.output
    assert "which its definition" in result.output


def test_wide_intrinsic_mapping_to_another_wide_struct_passes_and_mismatches_are_found(
        runner, tmp_path):
    n = 1000
    comp = BENCH.wide_computation(n)
    other = pb.Type()
    for i in range(n):
        other.struct.element.add(name=f"f{i}").value.tensor.dtype = 3
    call = getattr(comp, "lambda").result
    function = call.call.argument.struct.element[0].value  # the (x -> x) lambda
    # (x -> <f...>) declared consistently everywhere: passes (different stand-ins for T and U).
    for t in (function.type.function.result,
              call.call.argument.type.struct.element[0].value.function.result,
              call.call.function.type.function.parameter.struct.element[0].value.function.result):
        t.CopyFrom(other)
    body = getattr(function, "lambda").result
    body.Clear()
    body.type.CopyFrom(other)
    zero = arrays.array_to_proto(np.int32(0))
    for i in range(n):
        element = body.struct.element.add(name=f"f{i}")
        element.value.type.tensor.dtype = 3
        element.value.literal.value.CopyFrom(zero)
    for t in (call.type, call.call.function.type.function.result, comp.type.function.result):
        t.federated.member.CopyFrom(other)
    path = tmp_path / "other.pb"
    path.write_bytes(comp.SerializeToString())
    assert _invoke(runner, "validate", path, "--clients", "2").exit_code == 0

    # The map's declared result keeps the old member: U is bound twice, to different structs.
    call.call.function.type.function.result.federated.member.CopyFrom(BENCH.wide_struct(n))
    path.write_bytes(comp.SerializeToString())
    result = _invoke(runner, "validate", path, "--clients", "2")
    assert result.exit_code == 1
    assert "intrinsic 'federated_map' is declared with type" in result.output
