"""Reading computations and values from files/stdin/bytes, and writing values atomically.

Why a module of its own: this is where bytes meet the user, so every failure here becomes one
tffexec error naming the file — `ComputationError` (exit 3) for computations, `ArgumentError`
(exit 4) for values — saying what is wrong: empty, truncated/corrupt, the wrong kind of protobuf
(a Value or a TensorFlow GraphDef given as a computation, and the reverse), nested deeper than
protobuf allows, or an unknown computation node kind. `data` and `xla` nodes load; whether they
can run is decided later, by the executors.

Limits (`tffexec.policy`): a computation or value file over the size limit is refused with
`PolicyError` (exit 5) before it is read or parsed, and so is a decoded value whose arrays,
strings and sequence graphs (or an npz archive whose declared uncompressed size) exceed the value
limit. The policy is an explicit argument (`policy=`, default `tffexec.policy.DEFAULT`), bound to
the sequences of a loaded value so that they are materialised under its limits. What a
computation's graphs or a value's dataset graphs hold is not checked here but by the caller
(`tffexec.preflight` through `Runner.prepare`, or the command), with `tffexec.checks`.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import pathlib
import re
import sys
import zipfile
from typing import Callable

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import policy as policy_lib
from tffexec.errors import ArgumentError, ComputationError, PolicyError, TffexecError
from tffexec.formats import EXTENSION_FORMATS, VALUE_FORMATS
from tffexec.formats import atomic, jsonfmt, limits, npzfmt, protoparse, type_notation
from tffexec.formats import wire_columns
from tffexec.formats import types as tt
from tffexec.formats.columns import ClientColumns
from tffexec.formats.normalize import infer_clients
from tffexec.formats.protos import executor_pb2, tf_graph_pb2
from tffexec.formats.sequences import SequenceValue
from tffexec.formats.values import columnar_clients, value_from_proto, value_to_proto

Source = str | bytes | bytearray | pathlib.Path
FORMATS = VALUE_FORMATS
_COMPUTATION = computation_pb2.Computation.DESCRIPTOR.full_name


def _read(source: Source, name: str | None, error: type[TffexecError],
          limit: int, check: Callable[..., None]) -> tuple[bytes, str]:
    """(bytes, label for messages) of a path, '-' (stdin) or bytes.

    `check(size, file=label)` raises for bytes in hand over `limit`; files are checked by their
    size before they are read, streams (standard input, `/dev/zero`) after at most `limit + 1`
    bytes (`limits.read_bounded`).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        check(len(source), file=label)
        return bytes(source), label
    what, flag = limits.input_kind(error)
    if str(source) == "-":
        label = name or "<stdin>"
        return limits.read_bounded(sys.stdin.buffer, limit, what=what, flag=flag,
                                   file=label), label
    label = name or str(source)
    return limits.read_file_bounded(source, limit, error=error, what=what, flag=flag,
                                    file=label), label


# ---------------------------------------------------------------------------------- computations

def load_computation(source: Source, name: str | None = None, *,
                     policy: policy_lib.Policy = policy_lib.DEFAULT,
                     max_bytes: int | None = None) -> computation_pb2.Computation:
    """Parse a serialized `Computation`; any problem raises `ComputationError` naming the file.

    Raises:
      tffexec.errors.PolicyError: the file is larger than `max_bytes` (default: the policy's
        `max_computation_bytes`).
    """
    if max_bytes is not None:
        policy = dataclasses.replace(policy, max_computation_bytes=max_bytes)
    data, label = _read(source, name, ComputationError, policy.max_computation_bytes,
                        policy.check_computation_bytes)
    try:
        return parse_computation(data)
    except ComputationError as e:
        raise e.with_file(label) from None


def parse_computation(data: bytes) -> computation_pb2.Computation:
    """`load_computation` for bytes already in hand (errors carry no file name)."""
    if not data:
        raise ComputationError("empty file: no computation in it")
    comp = protoparse.try_parse(computation_pb2.Computation, data)
    if comp is None:
        depth = protoparse.message_depth(data, computation_pb2.Computation.DESCRIPTOR)
        if depth > protoparse.RECURSION_LIMIT:
            raise ComputationError(f"computation nested too deeply (more than "
                                   f"{protoparse.RECURSION_LIMIT} levels, the protobuf limit)")
        raise ComputationError(f"not a serialized computation: {_other_kind(data, 'computation')}")
    if comp.WhichOneof("computation") is None or not comp.HasField("type"):
        unknown = protoparse.unknown_fields(comp)
        if comp.HasField("type") and any(p == "Computation" for p, _ in unknown):
            number = next(n for p, n in unknown if p == "Computation")
            raise ComputationError(f"unknown computation node kind (field {number}) at the top "
                                   "level; written by a newer TFF?")
        raise ComputationError(f"not a serialized computation: {_other_kind(data, 'computation')}")
    _check_nodes(comp)
    try:  # read, not converted: linear in the type's size (seconds for 10^6 struct elements)
        type_notation.notation(comp.type)
    except (ValueError, RecursionError) as e:
        raise ComputationError(f"computation type: {e}") from None
    return comp


def _check_nodes(comp: computation_pb2.Computation) -> None:
    """Every node has a known kind, and no message holds fields this schema does not know.

    Linear in the AST, whatever the width of its types: unknown fields are looked for by
    protobuf's own code first (the slow walk that names them runs only when there are some),
    and the node walk does not descend into `Type` messages, which hold no nodes.
    """
    unknown = (protoparse.unknown_fields(comp, "computation") if _has_unknown_fields(comp)
               else [])
    unknown_at = {p: n for p, n in unknown}
    for path, node in _computation_nodes(comp):
        if node.WhichOneof("computation") is None:
            if path in unknown_at:
                raise ComputationError(f"unknown computation node kind (field {unknown_at[path]})"
                                       f" at {path}; written by a newer TFF?")
            raise ComputationError(f"empty computation node (no kind set) at {path}")
    if unknown:
        path, number = unknown[0]
        raise ComputationError(f"unknown field {number} at {path}: not a computation this "
                               "tffexec understands (corrupt, or written by another TFF version)")


def _computation_nodes(comp: computation_pb2.Computation):
    """(path, node) of every `Computation` inside `comp`, depth first in field order, as
    `protoparse.messages_of_type` names them, skipping messages that cannot hold one."""
    stack = [("computation", comp)]
    while stack:
        path, msg = stack.pop()
        if msg.DESCRIPTOR.full_name == _COMPUTATION:
            yield path, msg
        children = []
        for field, value in msg.ListFields():
            if field.message_type is None or not _holds_nodes(field.message_type):
                continue
            sub = f"{path}.{field.name}"
            if field.is_repeated:
                children.extend((f"{sub}[{i}]", v) for i, v in enumerate(value))
            else:
                children.append((sub, value))
        stack.extend(reversed(children))


@functools.lru_cache(maxsize=None)
def _holds_nodes(descriptor) -> bool:
    """Whether a message of this type can contain a `Computation` (schema reachability)."""
    seen, todo = set(), [descriptor]
    while todo:
        desc = todo.pop()
        if desc.full_name == _COMPUTATION:
            return True
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        todo.extend(f.message_type for f in desc.fields if f.message_type is not None)
    return False


def _other_kind(data: bytes, expected: str) -> str:
    """Best guess of what the bytes are, for 'not a ...' messages."""
    if expected != "value":
        value = protoparse.try_parse(executor_pb2.Value, data)
        if value is not None and _plausible_value(value):
            return "it holds an executor Value (an argument or result file), not a computation"
    if expected != "computation":
        comp = protoparse.try_parse(computation_pb2.Computation, data)
        if (comp is not None and comp.WhichOneof("computation") and comp.HasField("type")
                and not protoparse.unknown_fields(comp)):
            return "it holds a computation, not a value"
    graph = protoparse.try_parse(tf_graph_pb2.GraphDef, data)
    if (graph is not None and graph.node and all(_OP_NAME.fullmatch(n.op) for n in graph.node)
            and not protoparse.unknown_fields(graph)):
        return "it holds a TensorFlow GraphDef, not a TFF " + expected
    return "truncated or corrupt protobuf bytes"


_OP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_>]*")


def _plausible_value(pb: executor_pb2.Value) -> bool:
    """A Value whose every node has a kind, no unknown fields, and TensorProto tensors (other
    messages — a GraphDef especially — can parse as a Value by accident of field numbers).

    Linear: unknown fields are found by protobuf's own code (a copy without them is smaller),
    and the nodes are walked once without building paths.
    """
    if _has_unknown_fields(pb):
        return False
    stack = [pb]
    while stack:
        node = stack.pop()
        kind = node.WhichOneof("value")
        if kind is None or (kind == "tensor" and not node.tensor.type_url.endswith(
                "tensorflow.TensorProto")):
            return False
        if kind == "struct":
            stack.extend(e.value for e in node.struct.element)
        elif kind == "federated":
            stack.extend(node.federated.value)
    return True


def _has_unknown_fields(message) -> bool:
    """Whether `message` or any message inside it holds fields its schema does not know."""
    bare = type(message)()
    bare.CopyFrom(message)
    bare.DiscardUnknownFields()
    return bare.ByteSize() != message.ByteSize()


# ---------------------------------------------------------------------------------- values

def detect_format(data: bytes, label: str = "", fmt: str | None = None) -> str:
    """'pb', 'json' or 'npz': `fmt` if given, else by file extension, else sniffed."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ArgumentError(f"unknown value format {fmt!r} (expected one of "
                                f"{', '.join(FORMATS)})", file=label or None)
        return fmt
    ext = pathlib.PurePath(label).suffix.lower() if label and not label.startswith("<") else ""
    if ext in EXTENSION_FORMATS:
        return EXTENSION_FORMATS[ext]
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz"
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return "json"
    return "pb"


def load_typed_value(source: Source, type_hint: fl.Type | None, fmt: str | None = None,
                     name: str | None = None, path: str = "arg", *,
                     policy: policy_lib.Policy = policy_lib.DEFAULT,
                     max_bytes: int | None = None) -> tuple[object, fl.Type]:
    """(value, type) from a value file; the type is inferred when no hint is given (pb, tagged
    JSON). All problems raise `ArgumentError` naming the file and the path inside the value.

    Raises:
      tffexec.errors.PolicyError: the file, or the decoded value, is larger than `max_bytes`
        (default: the policy's `max_value_bytes`), or a sequence in it is longer than the policy
        allows.
    """
    if max_bytes is not None:
        policy = dataclasses.replace(policy, max_value_bytes=max_bytes)
    data, label = _read(source, name, ArgumentError, policy.max_value_bytes,
                        policy.check_value_bytes)
    try:
        value, t = _decode_value(data, label, type_hint, fmt, path, policy)
        _check_materialized(value, t, policy, path)
        return value, t
    except (ArgumentError, PolicyError) as e:
        raise e.with_file(label) from None
    except MemoryError:
        raise PolicyError("value too large to decode in the memory available (lower "
                          "--max-value-bytes to refuse it sooner)", file=label) from None


def _decode_value(data: bytes, label: str, type_hint, fmt: str | None, path: str,
                  policy: policy_lib.Policy) -> tuple[object, fl.Type]:
    fmt = detect_format(data, label, fmt)
    if fmt == "pb":
        value, t = _value_from_pb(data, type_hint, path, policy)
        infer_clients(value, t, path)  # decoding checked types; client counts remain
        return value, t
    if fmt == "json":
        return _value_from_json(data, type_hint, path)  # normalized and checked
    if type_hint is None:
        raise ArgumentError("an npz value needs the parameter type to be read")
    _check_npz_size(data, policy)
    return npzfmt.value_from_npz(io.BytesIO(data), type_hint, path), type_hint


def _check_npz_size(data: bytes, policy: policy_lib.Policy) -> None:
    """Refuses an npz whose members would decompress past the value limit (a zip bomb)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # npzfmt reports unreadable archives with its own message
    policy.check_value_bytes(declared, what="argument (uncompressed npz)")
    try:  # what the .npy headers declare (shape x dtype), which the zip sizes need not match
        declared = limits.npz_declared_bytes(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError):
        return
    policy.check_value_bytes(declared, what="argument (npz arrays as declared)")


def _check_materialized(value: object, type_spec: fl.Type, policy: policy_lib.Policy,
                        path: str) -> None:
    """Refuses decoded values over the size limit and element lists over the sequence limit;
    binds `policy` to the sequences (their limits when they are read later)."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, ClientColumns):
            total += v.nbytes
        elif isinstance(v, np.ndarray):
            if v.dtype.kind == "O":
                total += sum(len(x) if isinstance(x, (bytes, str)) else 8 for x in v.flat)
            else:
                total += v.nbytes
        elif isinstance(v, structure.Struct):
            stack.extend(x for _, x in structure.iter_elements(v))
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, SequenceValue):
            v.bind_policy(policy)
            if v.has_graph_def:
                total += len(v.graph_def())
            if v.is_materialized:
                elements = v.elements()
                if len(elements) > policy.max_sequence_elements:
                    raise policy.sequence_too_long(len(elements))
                stack.extend(elements)
        elif isinstance(v, (bytes, str)):
            total += len(v)
        if total > policy.max_value_bytes:
            break
    policy.check_value_bytes(total, what="decoded argument")


def load_value(source: Source, type_hint: fl.Type | None, fmt: str | None = None,
               name: str | None = None, path: str = "arg", *,
               policy: policy_lib.Policy = policy_lib.DEFAULT,
               max_bytes: int | None = None) -> object:
    """The value in a pb/json/npz file, '-' (stdin) or bytes, checked against `type_hint`."""
    return load_typed_value(source, type_hint, fmt, name, path, policy=policy,
                            max_bytes=max_bytes)[0]


def _value_from_pb(data: bytes, type_hint, path: str,
                   policy: policy_lib.Policy) -> tuple[object, fl.Type]:
    if not data:
        raise ArgumentError("empty file: no value in it")
    pb = protoparse.try_parse(executor_pb2.Value, data)
    if pb is None:
        if protoparse.message_depth(data, executor_pb2.Value.DESCRIPTOR) > \
                protoparse.RECURSION_LIMIT:
            raise ArgumentError(f"value nested too deeply (more than "
                                f"{protoparse.RECURSION_LIMIT} levels, the protobuf limit)")
        raise ArgumentError(f"not a serialized value: {_other_kind(data, 'value')}")
    fast = _columnar_clients(pb, data, type_hint, path, policy)
    if fast is not None:
        return fast
    if not _plausible_value(pb):
        other = _other_kind(data, "value")
        unknown = protoparse.unknown_fields(pb, "value")
        if other.startswith("truncated") and unknown:
            other = f"unknown field {unknown[0][1]} at {unknown[0][0]}"
        raise ArgumentError(f"not a serialized value: {other}")
    # Declared sizes and client counts first: nothing is decoded or expanded before they pass.
    limits.check_value_proto(pb, max_bytes=policy.max_value_bytes,
                             max_clients=policy.max_clients, path=path)
    return value_from_proto(pb, type_hint, path)


def _columnar_clients(pb: executor_pb2.Value, data: bytes, type_hint, path: str,
                      policy: policy_lib.Policy) -> tuple[object, fl.Type] | None:
    """A `{T}@CLIENTS` of numeric scalars of one dtype, or of numeric arrays of one dtype and
    shape in raw content (how TFF writes per-client numbers and tensors), decoded in one pass
    over its members into client columns; None for any other value.

    For such a value the separate plausibility and declared-size walks are implied: every
    member is an `Array` of a known dtype, as large as the first one (at most 16 bytes for a
    scalar, its content's length for raw content), and there are no more of them than
    `max_clients`; their total is checked against the value limit before anything is decoded.
    A million members cost one walk instead of three, and no per-client object. `pb` loses its
    unknown fields only when it had none (`data`: the bytes it was parsed from).
    """
    if pb.WhichOneof("value") != "federated" or len(pb.federated.value) < 2:
        return None
    first = pb.federated.value[0]
    if first.WhichOneof("value") != "array":
        return None
    member_bytes = len(first.array.content) if first.array.HasField("content") else 16
    count = len(pb.federated.value)
    if count > policy.max_clients:
        return None  # the general path reports it, naming the place
    # Members found in their canonical layout in the bytes have no unknown fields. Else
    # unknown fields are found without copying a million members: what is left after dropping
    # them re-encodes to the `size` bytes read only if there were none (or the encoding was
    # not canonical: the general path then looks at the bytes again).
    content = first.array.HasField("content")
    contents = wire_columns.member_contents(data, pb) if content and \
        first.array.WhichOneof("kind") is None else None
    items = None if content else wire_columns.member_items(data, pb)
    if contents is None and items is None:
        pb.DiscardUnknownFields()
        if pb.ByteSize() != len(data):
            pb.ParseFromString(data)  # the unknown fields back, for the general path to name
            return None
    if items is not None:  # a fixed shape: each member as large as member 0 declares
        member_bytes = max(member_bytes, limits.element_count(first.array.shape.dim) *
                           limits.itemsize_of_enum(first.array.dtype))
    limits.check_bytes(member_bytes * count, policy.max_value_bytes, path=path)
    return columnar_clients(pb.federated, type_hint, path, contents, items)


def _value_from_json(data: bytes, type_hint, path: str) -> tuple[object, fl.Type]:
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except RecursionError:
        raise ArgumentError("JSON nested too deeply (more levels than Python's parser "
                            "accepts)") from None
    except UnicodeDecodeError:
        raise ArgumentError("JSON file is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ArgumentError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except ValueError as e:  # Python refuses integers of more than 4300 digits
        raise ArgumentError(f"JSON number too long to read ({str(e).split(':')[0]})") from None
    try:
        if type_hint is None:
            inner = obj.get("value") if isinstance(obj, dict) and "value" in obj else obj
            type_hint = jsonfmt.infer_type(inner, path)
        return jsonfmt.value_from_json(obj, type_hint, path), type_hint
    except RecursionError:
        # Only reachable for JSON nested almost as deep as the parser allows; no TFF type
        # nests that deep (protobuf's limit is 100 levels).
        raise ArgumentError("JSON value nested too deeply to be a value of any TFF type") from None


def save_value(value: object, type_spec: fl.Type, dest: str | pathlib.Path,
               fmt: str | None = None) -> None:
    """Write a value as pb/json/npz (format from `fmt` or the extension; '-' = stdout).

    The whole payload is encoded before anything is written, and files are replaced atomically
    (temporary file in the same directory + os.replace), so a failure never leaves a partial or
    truncated file behind.
    """
    label = str(dest)
    try:
        if fmt is None:
            ext = pathlib.PurePath(label).suffix.lower()
            if label == "-" or ext not in EXTENSION_FORMATS:
                raise ArgumentError("cannot tell the output format from the file name; choose "
                                    "pb, json or npz explicitly")
            fmt = EXTENSION_FORMATS[ext]
        payload = encode_value(value, type_spec, detect_format(b"", label, fmt))
    except ArgumentError as e:
        raise e.with_file(label) from None
    if label == "-":
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    atomic.write(pathlib.Path(dest), payload)


def encode_value(value: object, type_spec: fl.Type, fmt: str) -> bytes:
    """The bytes `save_value` writes for a format."""
    if fmt == "pb":
        return value_to_proto(value, type_spec).SerializeToString()
    if fmt == "json":
        text = json.dumps(jsonfmt.value_to_json(value, type_spec), indent=1, allow_nan=False)
        return (text + "\n").encode("utf-8")
    buffer = io.BytesIO()
    npzfmt.value_to_npz(value, type_spec, buffer)
    return buffer.getvalue()
