"""Sizes known before anything is read or allocated: bounded reads and declared-size estimates.

Why a module of its own: every decoder that turns a few bytes into a large allocation (a stream
read whole, a TensorProto whose last value repeats, an npz member, a graph `Const` expanded on
import, a template for a huge type) must first compute what it *would* allocate and compare it
with a limit. Doing that arithmetic in one place keeps it overflow-safe (Python ints, never
`np.prod`, which wraps at 2**64) and keeps the decoders' own code unchanged. Every function here
is pure over its inputs and takes the limits explicitly (`max_bytes`, `max_clients`), so it
does not care where a command keeps its policy.
"""
from __future__ import annotations

import math
import os
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from tffexec.errors import ArgumentError, PolicyError, TffexecError

#: Bytes read at a time from a stream of unknown size: memory grows with the data, never
#: with the limit.
CHUNK = 1 << 20
#: What one element of each TensorFlow/TFF `DataType` enum occupies once decoded (strings:
#: counted by their bytes elsewhere; 8 is the pointer of the object array).
_ITEMSIZE = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 7: 8, 8: 8, 9: 8, 10: 1, 14: 2, 17: 2, 18: 16,
             19: 2, 22: 4, 23: 8}


# ---------------------------------------------------------------------------------- reading

def too_large(what: str, size: int | None, limit: int, flag: str,
              file: str | None = None, path: str | None = None) -> PolicyError:
    """The one-line refusal, in the policy's style; `size` None: only "more than" is known."""
    amount = f"is {size:,} bytes, more" if size is not None else "is larger"
    return PolicyError(f"{what} {amount} than the limit of {limit:,} bytes ({flag})", file=file,
                       path=path)


def input_kind(error: type[TffexecError]) -> tuple[str, str]:
    """(what the input is, the flag of its limit) for an input whose failures raise `error`:
    a computation (`ComputationError`) or a value."""
    from tffexec.errors import ComputationError  # noqa: PLC0415

    if error is ComputationError:
        return "computation", "--max-computation-bytes"
    return "argument", "--max-value-bytes"


def read_bounded(stream: BinaryIO, limit: int, *, what: str = "argument",
                 flag: str = "--max-value-bytes", file: str | None = None) -> bytes:
    """All of `stream`, refusing with `PolicyError` once it is known to hold more than `limit`.

    A regular file is judged by its size before a byte is read (a 6 GB sparse file costs
    nothing); anything else (a pipe, `/dev/zero`, a terminal) is read in `CHUNK`s and refused as
    soon as `limit + 1` bytes have arrived, so memory never exceeds the limit plus one chunk.
    """
    try:
        size = os.fstat(stream.fileno()).st_size
        regular = size > 0
    except (OSError, AttributeError, ValueError):
        regular = False  # BytesIO and friends: read them in chunks like a pipe
    if regular and size > limit:
        raise too_large(what, size, limit, flag, file)
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise too_large(what, size if regular else None, limit, flag, file)
    return b"".join(chunks)


def read_file_bounded(path: str | os.PathLike, limit: int, *, error: type[TffexecError],
                      what: str = "argument", flag: str = "--max-value-bytes",
                      file: str | None = None) -> bytes:
    """`read_bounded` of a path; an unreadable one raises `error` naming it."""
    label = file or os.fspath(path)
    try:
        with open(path, "rb") as f:
            return read_bounded(f, limit, what=what, flag=flag, file=label)
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=label) from None


# ---------------------------------------------------------------------------------- arithmetic

def element_count(shape: Iterable[int]) -> int:
    """The number of elements of a shape, exactly (Python ints: no wrap-around at 2**64)."""
    return math.prod(int(d) for d in shape)


def itemsize_of_enum(dtype_enum: int) -> int:
    """Bytes per element of a `DataType` enum value once decoded (8 for strings and unknowns:
    an object-array slot; an unknown dtype is reported by the decoder itself)."""
    return _ITEMSIZE.get(int(dtype_enum), 8)


def check_bytes(size: int, max_bytes: int, *, what: str = "decoded argument",
                path: str | None = None) -> None:
    """Refuses a declared decoded size over `max_bytes` (exit 5), naming the place."""
    if size > max_bytes:
        raise too_large(what, size, max_bytes, "--max-value-bytes", path=path)


# ---------------------------------------------------------------------------------- values

def _tensor_proto_bytes(payload: bytes) -> int:
    """Declared decoded size of an `Any(tensorflow.TensorProto)` payload (TFF <= 0.82), which
    TensorFlow lets expand: a one-value list fills the whole declared shape."""
    from tffexec.formats.protos import tf_graph_pb2  # noqa: PLC0415 - generated, load on use

    msg = tf_graph_pb2.TensorProto()
    try:
        msg.ParseFromString(payload)
    except Exception:  # noqa: BLE001 - the decoder reports corrupt bytes with its own message
        return len(payload)
    return tensor_proto_bytes(msg)


def tensor_proto_bytes(msg) -> int:
    """Declared decoded size of a `tensorflow.TensorProto` message (shape x dtype, or its
    strings), whatever its repeated fields hold."""
    if msg.tensor_shape.unknown_rank or any(d.size < 0 for d in msg.tensor_shape.dim):
        return len(msg.string_val) and sum(len(s) for s in msg.string_val)
    count = element_count(d.size for d in msg.tensor_shape.dim)
    if msg.dtype == 7:  # DT_STRING: one listed string may fill the shape
        strings = list(msg.string_val)
        longest = max((len(s) for s in strings), default=0)
        return max(count * max(longest, 8), sum(len(s) for s in strings))
    return count * itemsize_of_enum(msg.dtype)


def _array_bytes(array) -> int:
    """Declared decoded size of a federated-language `Array` (its shape x its dtype)."""
    dims = array.shape.dim
    if not dims and array.dtype != 7:  # a scalar number: kept cheap for a million clients
        return max(_ITEMSIZE.get(array.dtype, 8), len(array.content))
    if array.shape.unknown_rank or any(d < 0 for d in dims):
        return len(array.content)
    count = element_count(dims)
    if array.WhichOneof("kind") == "string_list":
        return max(count * 8, sum(len(s) for s in array.string_list.value))
    return count * itemsize_of_enum(array.dtype)


def check_value_proto(pb, *, max_bytes: int, max_clients: int, path: str = "arg") -> int:
    """Refuses an executor `Value` whose decoded arrays would exceed `max_bytes` or whose
    federated values hold more than `max_clients` members — from the proto's declarations,
    before anything is decoded. Returns the declared size.

    Iterative (no recursion) and linear in the number of messages.
    """
    total = 0
    stack: list[tuple[object, object, int]] = [(pb, None, -1)]  # (node, parent entry, index)
    while stack:
        entry = stack.pop()
        value = entry[0]
        kind = value.WhichOneof("value")
        if kind == "array":
            total += _array_bytes(value.array)
        elif kind == "tensor":
            total += _tensor_proto_bytes(value.tensor.value)
        elif kind == "computation" and value.computation.WhichOneof("computation") == "literal":
            total += _array_bytes(value.computation.literal.value)
        elif kind == "sequence":
            total += len(value.sequence.serialized_graph_def)
        elif kind == "struct":
            stack.extend((e.value, entry, i) for i, e in enumerate(value.struct.element))
        elif kind == "federated":
            members = value.federated.value
            if len(members) > max_clients:
                raise PolicyError(f"{len(members):,} clients is more than the limit of "
                                  f"{max_clients:,} (--max-clients)", path=_path(entry, path))
            for i, m in enumerate(members):  # scalar/array members inline: no stack entry
                if m.WhichOneof("value") == "array":
                    total += _array_bytes(m.array)
                else:
                    stack.append((m, entry, i))
        if total > max_bytes:
            check_bytes(total, max_bytes, path=_path(entry, path))
    return total


def _path(entry: tuple, root: str) -> str:
    """`root[i][j]...` of a stack entry of `check_value_proto` (built only for a message)."""
    indices = []
    while entry[1] is not None:
        indices.append(entry[2])
        entry = entry[1]
    return root + "".join(f"[{i}]" for i in reversed(indices))


def literal_bytes(message) -> Iterator[tuple[str, int]]:
    """(path, declared decoded size) of every literal `Array` inside a computation proto
    (literals may sit anywhere in the AST; they are decoded when the AST is evaluated)."""
    from tffexec.formats import protoparse  # noqa: PLC0415

    for where, array in protoparse.messages_of_type(message, "federated_language.Array"):
        yield where, _array_bytes(array)


def check_literals(message, max_bytes: int) -> None:
    """Refuses a computation whose literal arrays together declare more than `max_bytes`."""
    total = 0
    for where, size in literal_bytes(message):
        total += size
        check_bytes(total, max_bytes, what="literal in the computation", path=where or None)


# ---------------------------------------------------------------------------------- npz

def npz_declared_bytes(stream: BinaryIO) -> int:
    """The decoded size an npz archive declares: every member's `.npy` header (shape x dtype),
    read without decompressing the data. A member that is not a `.npy` array is an error
    (numpy would hand its raw bytes back instead of an array).
    """
    import zipfile  # noqa: PLC0415

    from numpy.lib import format as npy  # noqa: PLC0415

    total = 0
    with zipfile.ZipFile(stream) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise ArgumentError(f"npz member {info.filename!r} is not a .npy array")
            with archive.open(info) as member:
                try:
                    version = npy.read_magic(member)
                    header = (npy.read_array_header_1_0 if version == (1, 0)
                              else npy.read_array_header_2_0)
                    shape, _, dtype = header(member, max_header_size=1 << 16)
                except (ValueError, EOFError, TypeError, SyntaxError) as e:
                    raise ArgumentError(f"npz member {info.filename!r} has no valid .npy "
                                        f"header ({str(e).splitlines()[0] if str(e) else e})"
                                        ) from None
            total += element_count(shape) * max(np.dtype(dtype).itemsize, 1)
    return total


# ---------------------------------------------------------------------------------- types

def type_bytes(type_spec, clients: int = 1, unknown_dim: int = 1) -> int:
    """Bytes a value of a federated-language type would occupy as arrays (`clients` members per
    `{T}@CLIENTS`, `unknown_dim` per dimension of unknown size, one element per sequence);
    iterative, so a type of a million elements costs a million steps."""
    import federated_language as fl  # noqa: PLC0415

    total = 0
    stack = [(type_spec, 1)]
    while stack:
        t, times = stack.pop()
        if isinstance(t, fl.TensorType):
            dims = t.shape if t.shape is not None else ()
            count = element_count(unknown_dim if d is None else d for d in dims)
            itemsize = 8 if t.dtype.kind in "OSU" else np.dtype(t.dtype).itemsize
            total += times * count * itemsize
        elif isinstance(t, fl.StructType):
            stack.extend((et, times) for _, et in t.items())
        elif isinstance(t, fl.FederatedType):
            stack.append((t.member, times * (1 if t.all_equal else clients)))
        elif isinstance(t, fl.SequenceType):
            stack.append((t.element, times))
    return total


# ---------------------------------------------------------------------------------- graphs

def graph_const_bytes(graph_def) -> Iterator[tuple[str, str | None, int]]:
    """(node name, library function or None, declared bytes) of every `Const` node in a
    TensorFlow `GraphDef`, including its function library.

    TensorFlow expands a `Const` whose tensor lists one value to its whole declared shape when
    the graph is imported, so a few bytes of graph can ask for terabytes; this is the estimate
    an op checker compares with `--max-value-bytes` before importing.
    """
    nodes: list[tuple[object, str | None]] = [(n, None) for n in graph_def.node]
    for function in graph_def.library.function:
        nodes.extend((n, function.signature.name) for n in function.node_def)
    for node, function in nodes:
        if node.op == "Const" and "value" in node.attr and node.attr["value"].HasField("tensor"):
            yield node.name, function, tensor_proto_bytes(node.attr["value"].tensor)


def largest_const(graph_def) -> tuple[str, str | None, int] | None:
    """The `Const` node of `graph_def` that declares the most bytes, or None without any."""
    return max(graph_const_bytes(graph_def), key=lambda found: found[2], default=None)
