"""Columnar client values end to end: `{T}@CLIENTS` values as one array per tensor leaf.

A stacked npz array is used as it is, pb members are decoded into one column, the Python API
takes arrays with a client axis, the batched executors take the columns without building a
single member (`ClientColumns.members_built` counts every member built from columns), results
stay columnar up to the file written, and ragged values keep the per-client form.
"""
from __future__ import annotations

import pathlib

import federated_language as fl
import numpy as np
import pytest

import tffexec
from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import runner as runner_lib
from tffexec import tensorflow as tfc
from tffexec.cli import main as cli_main
from tffexec.cli import value_render
from tffexec.executors import client_work
from tffexec.factories import config as config_lib
from tffexec.formats import loading
from tffexec.formats.columns import ClientColumns
from tffexec.formats.values import value_to_proto

C, S = fl.CLIENTS, fl.SERVER
REPO = pathlib.Path(__file__).resolve().parents[1]
MAP_MEAN = REPO / "examples" / "conformance" / "scale_map_mean_1000" / "comp.pb"
ROW = fl.TensorType(np.float32, [16])
CLIENT_ROWS = fl.FederatedType(ROW, C)


def tf_fn(fn, parameter_type):
    return tfc.as_computation(tfc.tensorflow_computation(fn, parameter_type))


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 16)).astype(np.float32)


def _doubled_at_clients():
    """{float32[16]}@CLIENTS -> {float32[16]}@CLIENTS: 2x per client (a columnar result)."""
    double = tf_fn(lambda x: x * 2.0, ROW)

    @fl.federated_computation(CLIENT_ROWS)
    def comp(x):
        return fl.federated_map(double, x)

    return comp


def _batched_calls(runner: runner_lib.Runner, clients: int) -> int:
    return runner.factory.create_executor({C: clients}).child.client_work.functions.calls


def test_stacked_npz_is_read_as_columns_without_splitting(tmp_path):
    x = _rows(50)
    np.savez(tmp_path / "arg.npz", value=x)
    before = ClientColumns.members_built
    value = tffexec.load_value(tmp_path / "arg.npz", CLIENT_ROWS)
    assert isinstance(value, ClientColumns) and len(value) == 50
    assert len(value.leaves) == 1 and value.leaves[0].shape == (50, 16)
    np.testing.assert_array_equal(value.leaves[0], x)
    assert ClientColumns.members_built == before


def test_pb_members_decode_into_one_column_equal_to_each_member(tmp_path):
    x = _rows(40)
    data = value_to_proto(list(x), CLIENT_ROWS).SerializeToString()
    value = loading.load_value(data, CLIENT_ROWS, fmt="pb")
    assert isinstance(value, ClientColumns) and value.leaves[0].shape == (40, 16)
    np.testing.assert_array_equal(value.leaves[0], x)
    for i in (0, 17, 39):  # the members it stands for are the decoded members
        np.testing.assert_array_equal(value[i], x[i])


def test_map_over_npz_columns_builds_no_member_and_equals_the_per_client_path(tmp_path):
    x = _rows(300, seed=1)
    np.savez(tmp_path / "arg.npz", value=x)
    comp = runner_lib.to_proto(str(MAP_MEAN))
    with runner_lib.Runner() as batched:
        value = tffexec.load_value(tmp_path / "arg.npz", CLIENT_ROWS)
        before = ClientColumns.members_built
        prepared = batched.prepare(comp, value)
        result = batched.call(prepared)
        assert ClientColumns.members_built == before  # no per-member conversion anywhere
        assert _batched_calls(batched, 300) >= 1
    per_client = tffexec.run(comp, list(x), stack=config_lib.StackConfig(batch=False))
    np.testing.assert_array_equal(result, per_client)


def _steady_calls(clients: int) -> int:
    """Batched TensorFlow calls of one map+mean call over `clients` clients, once the chunk
    size is learnt (two calls before)."""
    comp = runner_lib.to_proto(str(MAP_MEAN))
    policy = policy_lib.Policy(max_clients=clients)
    with runner_lib.Runner(config_lib.StackConfig(policy=policy)) as runner:
        prepared = runner.prepare(comp, _rows(clients, seed=2))
        runner.call(prepared)  # traces, then learns what a chunk costs
        runner.call(prepared)
        calls = _batched_calls(runner, clients)
        runner.call(prepared)
        return _batched_calls(runner, clients) - calls


def test_a_cheap_map_of_100000_small_tensors_is_one_tensorflow_call(monkeypatch):
    # However busy the machine (time is not what is tested here), the byte cap decides. The
    # stack's chunks are what is counted: the repeated call stays off compiled rounds.
    monkeypatch.setenv("TFFEXEC_COMPILED_ROUNDS", "0")
    monkeypatch.setattr(client_work.BatchingClientWork, "TARGET_CHUNK_S", 1e6)
    assert _steady_calls(100_000) == 1


def test_chunks_are_capped_by_the_bytes_of_their_inputs(monkeypatch):
    monkeypatch.setenv("TFFEXEC_COMPILED_ROUNDS", "0")
    monkeypatch.setattr(client_work.BatchingClientWork, "TARGET_CHUNK_S", 1e6)
    monkeypatch.setattr(client_work.BatchingClientWork, "CHUNK_BYTES", 1000 * 16 * 4)
    assert _steady_calls(5_500) == 6  # 1 000 clients of float32[16] per call


def test_api_takes_an_array_with_a_client_axis_as_the_list_of_its_rows():
    x = _rows(20, seed=3)
    comp = runner_lib.to_proto(str(MAP_MEAN))
    np.testing.assert_array_equal(tffexec.run(comp, x), tffexec.run(comp, list(x)))


def test_api_takes_a_struct_of_arrays_for_a_struct_member():
    pair = fl.StructType([("a", fl.TensorType(np.float32, [2])), ("b", np.int32)])
    scale = tf_fn(lambda p: p["a"] * tfc_cast(p["b"]), pair)

    @fl.federated_computation(fl.FederatedType(pair, C))
    def comp(x):
        return fl.federated_sum(fl.federated_map(scale, x))

    a = np.arange(12, dtype=np.float32).reshape(6, 2)
    b = np.arange(6, dtype=np.int32)
    members = [{"a": a[i], "b": b[i]} for i in range(6)]
    before = ClientColumns.members_built
    columnar = tffexec.run(comp, {"a": a, "b": b})
    assert ClientColumns.members_built == before
    np.testing.assert_array_equal(columnar, tffexec.run(comp, members))
    np.testing.assert_array_equal(columnar, (a * b[:, None]).sum(axis=0))


def tfc_cast(x):
    import tensorflow as tf  # noqa: PLC0415

    return tf.cast(x, tf.float32)


def test_struct_columns_of_different_lengths_are_an_argument_error_naming_the_path():
    pair = fl.StructType([("a", np.float32), ("b", np.int32)])
    identity = tf_fn(lambda p: p["a"], pair)

    @fl.federated_computation(fl.FederatedType(pair, C))
    def comp(x):
        return fl.federated_map(identity, x)

    with pytest.raises(errors.ArgumentError, match="different lengths") as info:
        tffexec.run(comp, {"a": np.zeros(3, np.float32), "b": np.zeros(4, np.int32)})
    assert info.value.path == "arg"


def test_an_array_of_the_wrong_shape_is_reported_for_its_first_client():
    comp = runner_lib.to_proto(str(MAP_MEAN))
    with pytest.raises(errors.ArgumentError) as info:
        tffexec.run(comp, np.zeros((4, 3), np.float32))
    assert info.value.path == "arg[0]"


def test_ragged_members_keep_the_per_client_form_and_agree_with_the_per_client_path():
    vector = fl.TensorType(np.float32, [None])
    total = tf_fn(lambda v: __import__("tensorflow").reduce_sum(v), vector)

    @fl.federated_computation(fl.FederatedType(vector, C))
    def comp(x):
        return fl.federated_sum(fl.federated_map(total, x))

    ragged = [np.arange(n, dtype=np.float32) for n in (1, 3, 2, 5)]
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, ragged)
        assert isinstance(prepared.argument, list)
        batched = runner.call(prepared)
    per_client = tffexec.run(comp, ragged, stack=config_lib.StackConfig(batch=False))
    assert batched == per_client == np.float32(0 + 3 + 1 + 10)


def test_clients_results_are_columns_with_columns_true_and_lists_by_default():
    x = _rows(30, seed=4)
    comp = _doubled_at_clients()
    with runner_lib.Runner() as runner:
        prepared = runner.prepare(comp, x)
        columns = runner.call(prepared, columns=True)
        listed = runner.call(prepared)
    assert isinstance(columns, ClientColumns)
    np.testing.assert_array_equal(columns.leaves[0], x * 2)
    assert isinstance(listed, list) and len(listed) == 30
    np.testing.assert_array_equal(np.stack(listed), x * 2)


def _run_doubled(runner, folder: pathlib.Path, x: np.ndarray, *options: str):
    """`tffexec run` of `_doubled_at_clients` on `x` saved as an npz, in `folder`."""
    comp_path = folder / "comp.pb"
    comp_path.write_bytes(_doubled_at_clients().to_building_block().to_proto()
                          .SerializeToString())
    np.savez(folder / "arg.npz", value=x)
    return runner.invoke(cli_main.cli, ["run", str(comp_path), str(folder / "arg.npz"), "-q",
                                        *options])


def test_run_writes_clients_results_to_npz_as_stacked_arrays(runner, tmp_path):
    x = _rows(25, seed=5)
    out = tmp_path / "out.npz"
    result = _run_doubled(runner, tmp_path, x, "-o", str(out))
    assert result.exit_code == 0, result.output
    with np.load(out) as archive:
        assert archive.files == ["value"]
        np.testing.assert_array_equal(archive["value"], x * 2)


def test_pretty_output_of_many_clients_builds_only_the_members_it_shows(runner, tmp_path):
    before = ClientColumns.members_built
    result = _run_doubled(runner, tmp_path, _rows(2000, seed=6), "--format", "pretty")
    assert result.exit_code == 0, result.output
    assert "2000 clients" in result.output
    # The clients shown (and the one that tells there are more), not 2000.
    assert ClientColumns.members_built - before <= value_render.MAX_CLIENTS_SHOWN + 1


def test_composed_stack_gives_each_child_a_slice_of_the_columns():
    x = _rows(10, seed=7)
    comp = runner_lib.to_proto(str(MAP_MEAN))
    composed = tffexec.run(comp, x, stack=config_lib.StackConfig(max_fanout=3))
    flat = tffexec.run(comp, list(x), stack=config_lib.StackConfig(max_fanout=3))
    np.testing.assert_array_equal(composed, flat)


def test_iterate_data_from_one_npz_stays_columns_and_a_round_gathers_its_clients(tmp_path):
    from tffexec import iterate  # noqa: PLC0415

    x = _rows(50, seed=8)
    np.savez(tmp_path / "data.npz", value=x)
    data = iterate.load_clients(tmp_path / "data.npz", ROW)
    assert isinstance(data.values, ClientColumns) and len(data) == 50
    chosen = iterate.sample_clients(50, 7, 3, 1)
    before = ClientColumns.members_built
    picked = data.values.take(chosen)
    assert ClientColumns.members_built == before
    np.testing.assert_array_equal(picked.leaves[0], x[chosen])


def test_ragged_pb_members_decode_member_by_member_into_a_list():
    vector = fl.FederatedType(fl.TensorType(np.float32, [None]), C)
    members = [np.arange(n, dtype=np.float32) for n in (2, 3, 2)]
    data = value_to_proto(members, vector).SerializeToString()
    value = loading.load_value(data, vector, fmt="pb")
    assert isinstance(value, list) and [len(v) for v in value] == [2, 3, 2]
    for got, want in zip(value, members):
        np.testing.assert_array_equal(got, want)


def test_pb_with_an_unknown_field_in_a_member_is_still_refused_naming_it():
    from federated_language.proto import array_pb2  # noqa: PLC0415

    pb = value_to_proto(list(_rows(5)), CLIENT_ROWS)
    member = pb.federated.value[4].array
    with_unknown = array_pb2.Array()
    with_unknown.ParseFromString(member.SerializeToString() + b"\x78\x01")  # field 15 = 1
    member.CopyFrom(with_unknown)
    with pytest.raises(errors.ArgumentError, match="unknown field"):
        loading.load_value(pb.SerializeToString(), CLIENT_ROWS, fmt="pb")


# --- scalar (typed-list) members read from the file's bytes -------------------------------

def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here are under 128 bytes)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _int32_record(packed: bytes, *, shape: bytes = b"\x12\x00", dtype: int = 3,
                  list_field: int = 6) -> bytes:
    """One member of a federated value, written by hand: Value.array {dtype (int32), shape,
    int32_list {value: packed}} (`shape=b""` leaves the shape message out)."""
    array = bytes([8, dtype]) + shape + _field(list_field, _field(1, packed))
    return _field(2, _field(6, array))


def _clients_bytes(records: list[bytes]) -> bytes:
    body = b"".join(records)
    return b"\x2a" + bytes(_varint_bytes(len(body))) + body


def _varint_bytes(value: int) -> list[int]:
    out = []
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return [*out, value]


def _each_member(data: bytes, type_spec) -> np.ndarray:
    """The per-member decode: every member parsed by protobuf and decoded on its own."""
    from tffexec.formats import arrays  # noqa: PLC0415
    from tffexec.formats.protos import executor_pb2  # noqa: PLC0415

    pb = executor_pb2.Value.FromString(data)
    return np.stack([arrays.array_from_proto(m.array) for m in pb.federated.value])


def _read_from_bytes(data: bytes) -> bool:
    from tffexec.formats import wire_columns  # noqa: PLC0415
    from tffexec.formats.protos import executor_pb2  # noqa: PLC0415

    return wire_columns.member_items(data, executor_pb2.Value.FromString(data)) is not None


@pytest.mark.parametrize("members", [
    np.array([0, 1, -1, 127, 128, -(2 ** 31), 2 ** 31 - 1, 300, -5], np.int32),
    np.array([0, -1, 2 ** 63 - 1, -(2 ** 63), 1 << 35, 7], np.int64),
    np.array([0, 1, 2 ** 64 - 1, 1 << 40], np.uint64),
    np.array([0, 2 ** 32 - 1, 1 << 20], np.uint32),
    np.array([0.5, -1.25, np.inf, 0.0], np.float32),
    np.array([1e300, -2.5], np.float64),
    np.array([True, False, True], np.bool_),
    np.array([-128, 127, 0], np.int8),
    np.array([1 + 2j, -3j], np.complex64),
])
def test_scalar_members_are_read_from_the_bytes_equal_to_the_per_member_decode(members):
    t = fl.FederatedType(fl.TensorType(members.dtype), C)
    data = value_to_proto(list(members), t).SerializeToString()
    value = loading.load_value(data, t, fmt="pb")
    assert _read_from_bytes(data)
    assert isinstance(value, ClientColumns) and value.leaves[0].dtype == members.dtype
    np.testing.assert_array_equal(value.leaves[0], members)
    np.testing.assert_array_equal(value.leaves[0], _each_member(data, t))


def test_members_of_a_small_fixed_shape_in_typed_lists_are_read_from_the_bytes():
    t = fl.FederatedType(fl.TensorType(np.int32, [3]), C)
    packed = [bytes(_varint_bytes(v)) for v in (1, 200, 3)]
    records = [_int32_record(b"".join(packed), shape=_field(2, _field(1, b"\x03"))),
               _int32_record(b"\x05\x06\x07", shape=_field(2, _field(1, b"\x03")))]
    data = _clients_bytes(records)
    value = loading.load_value(data, t, fmt="pb")
    assert _read_from_bytes(data)
    np.testing.assert_array_equal(value.leaves[0], [[1, 200, 3], [5, 6, 7]])
    np.testing.assert_array_equal(value.leaves[0], _each_member(data, t))


def test_a_member_in_another_layout_falls_back_to_the_per_member_decode():
    t = fl.FederatedType(np.int32, C)
    records = [_int32_record(b"\x05"), _int32_record(b"\x07", shape=b""), _int32_record(b"\x09")]
    data = _clients_bytes(records)
    value = loading.load_value(data, t, fmt="pb")
    assert not _read_from_bytes(data)
    np.testing.assert_array_equal(value.leaves[0], [5, 7, 9])
    np.testing.assert_array_equal(value.leaves[0], _each_member(data, t))


def test_padded_and_overlong_varints_decode_as_protobuf_reads_them():
    t = fl.FederatedType(np.int32, C)
    overlong = b"\xff" * 9 + b"\x7f"  # -1 with high bits beyond 64 in its 10th byte
    records = [_int32_record(b"\x85\x80\x00"), _int32_record(b"\x00"), _int32_record(overlong),
               _int32_record(b"\x80\x80\x80\x80\x10")]  # 2**32: int32 keeps the low bits
    data = _clients_bytes(records)
    value = loading.load_value(data, t, fmt="pb")
    assert _read_from_bytes(data)
    np.testing.assert_array_equal(value.leaves[0], _each_member(data, t))
    np.testing.assert_array_equal(value.leaves[0], [5, 0, -1, 0])


def test_scalar_members_read_from_the_bytes_keep_the_client_and_size_limits():
    t = fl.FederatedType(np.int64, C)
    data = value_to_proto(list(np.arange(1000, dtype=np.int64)), t).SerializeToString()
    with pytest.raises(errors.PolicyError, match="--max-clients"):
        loading.load_value(data, t, fmt="pb", policy=policy_lib.Policy(max_clients=999))
    with pytest.raises(errors.PolicyError, match="--max-value-bytes"):
        loading.load_value(data, t, fmt="pb", policy=policy_lib.Policy(max_value_bytes=8000))


def test_a_value_out_of_range_for_int8_is_refused_naming_its_member():
    t = fl.FederatedType(np.int8, C)
    records = [_int32_record(b"\x05", dtype=6, list_field=4),
               _int32_record(bytes(_varint_bytes(300)), dtype=6, list_field=4)]
    data = _clients_bytes(records)
    assert _read_from_bytes(data)
    with pytest.raises(errors.ArgumentError, match=r"\[1\].*out of range"):
        loading.load_value(data, t, fmt="pb")
