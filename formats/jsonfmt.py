"""The JSON value format `tffexec-value/1`: one schema for input and output.

Output (lossless) is an envelope::

    {"format": "tffexec-value/1", "type": "<TFF type string>", "value": V}

where V is tagged exactly like the corpus' expected.json:
  tensor     {"dtype": "float32", "shape": [2], "value": [1.0, 2.0]}   (dtype "string" for str)
  struct     {"struct": [{"name": "a" | null, "value": V}, ...]}
  federated  {"federated": {"placement": "clients"|"server", "all_equal": bool, "values": [V...]}}
  sequence   {"sequence": {"element_type": "<TFF type>", "elements": [V, ...]}}  (the form of
             examples/cases' expected.json; the shorter {"sequence": [V, ...]} is read too)
  function   {"computation": {"base64": "<serialized Computation>"}}   (tffexec's own tag)

Leaf encoding: strings as UTF-8 text, bytes that are not valid UTF-8 as {"base64": "..."};
int64/uint64 as exact JSON integers; NaN and infinities as "nan", "inf", "-inf"; complex numbers
as [re, im]; floats as the shortest text that reads back to the same value of their own dtype
(a float32 third prints as 0.33333334, not its float64 widening 0.3333333432674408 that the
corpus' expected.json files hold; both read back as the same float32).

Input accepts the envelope, the tagged value without envelope (a corpus expected.json, whose
top-level keys are "type" and "value"), and hand-written plain JSON following the type: numbers
and nested lists for tensors, an object (keys: element names, or the index "1" of an unnamed
element) or a list for a struct, a list with one entry per
client for {T}@CLIENTS, the member itself for all_equal values, a list of elements for a
sequence. Tagged and plain forms may be mixed at any level. The envelope's "type" string is
informative on input: the value is checked against the type the caller passes.
"""
from __future__ import annotations

import base64
import math
from collections.abc import Mapping

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2
from federated_language.types import placements

from tffexec.errors import ArgumentError
from tffexec.formats import types as tt
from tffexec.formats.diagnostics import child, describe, item
from tffexec.formats.normalize import normalize

FORMAT = "tffexec-value/1"
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf,
            "NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# ---------------------------------------------------------------------------------- writing

def value_to_json(value: object, type_spec: fl.Type) -> dict:
    """The envelope for a value (normalized and checked against `type_spec` first)."""
    value = normalize(value, type_spec, "value")
    return {"format": FORMAT, "type": tt.type_str(type_spec), "value": tagged(value, type_spec)}


def tagged(value: object, t: fl.Type) -> object:
    """The tagged JSON form V of a canonical value (no envelope)."""
    if isinstance(t, fl.TensorType):
        arr = np.asarray(value)
        return {"dtype": tt.dtype_name(arr.dtype), "shape": list(arr.shape),
                "value": _leaves_to_json(arr)}
    if isinstance(t, fl.StructType):
        return {"struct": [{"name": n, "value": tagged(v, et)}
                           for (n, et), v in zip(t.items(), value)]}
    if isinstance(t, fl.FederatedType):
        members = [value] if t.all_equal else list(value)
        return {"federated": {"placement": t.placement.uri, "all_equal": t.all_equal,
                              "values": [tagged(m, t.member) for m in members]}}
    if isinstance(t, fl.SequenceType):
        return {"sequence": {"element_type": tt.type_str(t.element),
                             "elements": [tagged(e, t.element) for e in value.elements()]}}
    if isinstance(t, fl.FunctionType):
        return {"computation": {"base64": base64.b64encode(
            value.SerializeToString(deterministic=True)).decode("ascii")}}
    raise ArgumentError(f"values of type {tt.type_str(t)} cannot be written as JSON")


def _leaves_to_json(arr: np.ndarray) -> object:
    if tt.is_string(arr.dtype):
        return _map_nested(_object_list(arr), _bytes_to_json, arr.ndim)
    if arr.dtype.kind == "c":
        part = np.float32 if arr.dtype.itemsize <= 8 else np.float64
        real = _shortest_floats(arr.real.astype(part)).tolist()
        imag = _shortest_floats(arr.imag.astype(part)).tolist()
        return _map_nested(_zip_nested(real, imag, arr.ndim), lambda pair: [
            _float_to_json(pair[0]), _float_to_json(pair[1])], arr.ndim)
    if tt.is_floating(arr.dtype):
        return _map_nested(_shortest_floats(arr).tolist(), _float_to_json, arr.ndim)
    conv = bool if arr.dtype.kind == "b" else int
    return _map_nested(arr.tolist(), conv, arr.ndim)


def _shortest_floats(arr: np.ndarray) -> np.ndarray:
    """Python floats whose JSON text is the shortest that reads back as the same value.

    Why: a float32 0.1 widened to float64 prints as 0.10000000149011612, which is exact but
    noise to a reader; numpy's shortest round-trip digits for the narrow type ("0.1") read back
    (JSON -> float64 -> the narrow type) as the same number. Each candidate is checked, and the
    rare one that would not survive that double rounding keeps its exact float64 text.
    float64 values are already shortest in Python's own repr.
    """
    wide = arr.astype(np.float64)
    if arr.dtype == np.float64 or not arr.size:
        return wide
    flat = arr.reshape(-1)
    candidates = np.array([float(str(x)) for x in flat], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        same = candidates.astype(arr.dtype) == flat
    keep = same | np.isnan(wide.reshape(-1))
    return np.where(keep, candidates, wide.reshape(-1)).reshape(arr.shape)


def _zip_nested(a, b, depth: int):
    if depth == 0:
        return (a, b)
    return [_zip_nested(x, y, depth - 1) for x, y in zip(a, b)]


def _object_list(arr: np.ndarray) -> object:
    return arr.tolist()  # object arrays: tolist keeps the bytes objects


def _map_nested(obj, fn, depth: int):
    if depth == 0:
        return fn(obj)
    return [_map_nested(x, fn, depth - 1) for x in obj]


def _float_to_json(x: float) -> float | str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _bytes_to_json(b: bytes) -> str | dict:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode("ascii")}


# ---------------------------------------------------------------------------------- reading

def value_from_json(obj: object, type_spec: fl.Type | None, path: str = "arg") -> object:
    """Decode parsed JSON (envelope, tagged or plain) into a canonical value of `type_spec`.

    `type_spec` may be None only for tagged input, whose type is then inferred from the tags.
    """
    if isinstance(obj, Mapping) and "format" in obj and "value" in obj:
        if obj["format"] != FORMAT:
            raise ArgumentError(f"unknown JSON value format {obj['format']!r} (expected "
                                f"{FORMAT!r})", path=path)
        obj = obj["value"]
    elif _is_corpus_wrapper(obj, type_spec):
        obj = obj["value"]
    if type_spec is None:
        type_spec = infer_type(obj, path)
    return normalize(_decode(obj, type_spec, path), type_spec, path)


def _is_corpus_wrapper(obj: object, t: fl.Type | None) -> bool:
    """{"type": "...", "value": V} as in corpus expected.json — unless it is a plain struct."""
    if not (isinstance(obj, Mapping) and set(obj) == {"type", "value"}
            and isinstance(obj["type"], str)):
        return False
    if isinstance(t, fl.StructType) and [n for n, _ in t.items()] in (["type", "value"],
                                                                        ["value", "type"]):
        return _is_tagged(obj["value"])
    return True


def _is_tagged(obj: object) -> bool:
    return isinstance(obj, Mapping) and (
        set(obj) == {"dtype", "shape", "value"} or set(obj) in ({"struct"}, {"federated"},
                                                                {"sequence"}, {"computation"}))


def _decode(obj: object, t: fl.Type, path: str) -> object:
    """JSON -> loose Python value of type t (normalize does the checking and dtypes)."""
    if isinstance(t, fl.TensorType):
        if isinstance(obj, Mapping) and set(obj) == {"dtype", "shape", "value"}:
            return _tagged_tensor(obj, t, path)
        return _leaves_from_json(obj, t.dtype, path)
    if isinstance(t, fl.StructType):
        items = list(t.items())
        if isinstance(obj, Mapping) and set(obj) == {"struct"} and _struct_entries(obj["struct"]):
            entries = obj["struct"]
            if len(entries) != len(items):
                raise ArgumentError(f"expected {tt.type_str(t)}, found a struct of "
                                    f"{len(entries)} elements", path=path)
            out = []
            for i, (e, (n, et)) in enumerate(zip(entries, items)):
                if e.get("name") is not None and n is not None and e["name"] != n:
                    raise ArgumentError(f"expected {tt.type_str(t)}, found element {i} named "
                                        f"{e['name']!r} instead of {n!r}", path=path)
                out.append((n, _decode(e["value"], et, child(path, n, i))))
            return structure.Struct(out)
        if isinstance(obj, Mapping):  # keys: names, or the index of an unnamed element
            by_key = {(n if n is not None else str(i)): (n, i, et)
                      for i, (n, et) in enumerate(items)}
            return {k: (_decode(v, by_key[k][2], child(path, by_key[k][0], by_key[k][1]))
                        if k in by_key else v) for k, v in obj.items()}
        if isinstance(obj, list) and len(obj) == len(items):
            return [_decode(v, et, child(path, n, i)) for i, (v, (n, et)) in
                    enumerate(zip(obj, items))]
        return obj  # normalize reports the mismatch with the right path
    if isinstance(t, fl.FederatedType):
        if isinstance(obj, Mapping) and set(obj) == {"federated"}:
            return _tagged_federated(obj["federated"], t, path)
        if t.all_equal:
            return _decode(obj, t.member, path)
        if isinstance(obj, list):
            return [_decode(v, t.member, item(path, i)) for i, v in enumerate(obj)]
        return obj
    if isinstance(t, fl.SequenceType):
        if isinstance(obj, Mapping) and set(obj) == {"sequence"}:
            obj = _sequence_elements(obj["sequence"], path)
        if isinstance(obj, list):
            return [_decode(v, t.element, item(path, i)) for i, v in enumerate(obj)]
        return obj
    if isinstance(t, fl.FunctionType):
        data = obj.get("computation") if isinstance(obj, Mapping) else None
        if isinstance(data, Mapping) and set(data) == {"base64"}:
            comp = computation_pb2.Computation()
            try:
                comp.ParseFromString(base64.b64decode(data["base64"], validate=True))
            except Exception:  # noqa: BLE001 - binascii.Error / DecodeError
                raise ArgumentError("computation in JSON is not valid base64 protobuf",
                                    path=path) from None
            return comp
        return obj
    raise ArgumentError(f"values of type {tt.type_str(t)} cannot be read from JSON", path=path)


def _sequence_elements(body: object, path: str) -> list:
    """The element list of a tagged sequence, in either accepted form."""
    if isinstance(body, Mapping) and isinstance(body.get("elements"), list) and set(body) <= {
            "element_type", "elements"}:
        return body["elements"]
    if isinstance(body, list):
        return body
    raise ArgumentError("'sequence' needs a list of elements or an object with 'elements'",
                        path=path)


def _struct_entries(entries: object) -> bool:
    return isinstance(entries, list) and all(
        isinstance(e, Mapping) and "value" in e and set(e) <= {"name", "value"} for e in entries)


def _tagged_tensor(obj: Mapping, t: fl.TensorType, path: str) -> np.ndarray:
    try:
        dtype = tt.dtype_from_name(str(obj["dtype"]))
    except ArgumentError as e:
        raise ArgumentError(e.message, path=path) from None
    if dtype != t.dtype:
        raise ArgumentError(f"expected {tt.type_str(t)}, found a {tt.dtype_name(dtype)} tensor",
                            path=path)
    shape = obj["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ArgumentError(f"tensor 'shape' must be a list of sizes, found {shape!r}", path=path)
    leaves = _leaves_from_json(obj["value"], dtype, path)
    arr = normalize(leaves, fl.TensorType(dtype, shape), path)
    return arr


def _tagged_federated(body: object, t: fl.FederatedType, path: str) -> object:
    if not isinstance(body, Mapping) or not isinstance(body.get("values"), list):
        raise ArgumentError("'federated' needs an object with a 'values' list", path=path)
    placement = body.get("placement", t.placement.uri)
    if placement != t.placement.uri:
        raise ArgumentError(f"expected {tt.type_str(t)}, found a value placed at {placement}",
                            path=path)
    values = body["values"]
    all_equal = bool(body.get("all_equal", t.all_equal))
    if all_equal and len(values) != 1:
        raise ArgumentError(f"all_equal federated value has {len(values)} members (exactly one "
                            "expected)", path=path)
    if t.all_equal:
        if not all_equal:
            raise ArgumentError(f"expected {tt.type_str(t)}, found a value with one member per "
                                "client", path=path)
        return _decode(values[0], t.member, path)
    if all_equal:
        raise ArgumentError(f"expected {tt.type_str(t)} (one value per client), found an "
                            "all_equal value", path=path)
    return [_decode(v, t.member, item(path, i)) for i, v in enumerate(values)]


def _leaves_from_json(obj: object, dtype: np.dtype, path: str) -> object:
    """Map JSON leaves to Python scalars of the dtype's kind ("nan", base64, [re, im])."""
    if tt.is_string(dtype):
        return _map_json(obj, lambda x: _json_to_bytes(x, path), complex_pairs=False)
    if dtype.kind == "c":
        return _map_json(obj, lambda x: _json_to_complex(x, path), complex_pairs=True)
    if tt.is_floating(dtype):
        return _map_json(obj, lambda x: _json_to_float(x), complex_pairs=False)
    return obj


def _map_json(obj, fn, complex_pairs: bool):
    if isinstance(obj, list) and not (complex_pairs and _is_pair(obj)):
        return [_map_json(x, fn, complex_pairs) for x in obj]
    return fn(obj)


def _is_pair(obj: list) -> bool:
    return len(obj) == 2 and all(isinstance(x, (int, float, str)) and not isinstance(x, bool)
                                 for x in obj)


def _json_to_float(x: object) -> object:
    if isinstance(x, str) and x in _SPECIAL:
        return _SPECIAL[x]
    return x  # numbers pass; anything else is reported by normalize


def _json_to_complex(x: object, path: str) -> object:
    if isinstance(x, list) and _is_pair(x):
        re, im = (_json_to_float(v) for v in x)
        if isinstance(re, (int, float)) and isinstance(im, (int, float)):
            return complex(re, im)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return complex(x)
    raise ArgumentError(f"complex numbers are written [re, im], found {x!r}", path=path)


def _json_to_bytes(x: object, path: str) -> object:
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, Mapping) and set(x) == {"base64"} and isinstance(x["base64"], str):
        try:
            return base64.b64decode(x["base64"], validate=True)
        except ValueError:
            raise ArgumentError(f"invalid base64 string {x['base64'][:20]!r}", path=path) from None
    return x  # reported by normalize


# ---------------------------------------------------------------------------------- inference

def infer_type(obj: object, path: str = "value") -> fl.Type:
    """The type of a TAGGED JSON value (plain JSON does not say its dtypes)."""
    if isinstance(obj, Mapping) and set(obj) == {"dtype", "shape", "value"}:
        return fl.TensorType(tt.dtype_from_name(str(obj["dtype"])), list(obj["shape"]))
    if isinstance(obj, Mapping) and set(obj) == {"struct"} and _struct_entries(obj["struct"]):
        return fl.StructType([(e.get("name"), infer_type(e["value"], child(path, e.get("name"), i)))
                              for i, e in enumerate(obj["struct"])])
    if isinstance(obj, Mapping) and set(obj) == {"federated"} and isinstance(
            obj["federated"], Mapping):
        body = obj["federated"]
        values = body.get("values") or []
        if not values:
            raise ArgumentError("cannot infer the member type of a federated value without "
                                "members; pass the type", path=path)
        try:
            placement = placements.uri_to_placement_literal(body.get("placement"))
        except ValueError:
            raise ArgumentError(f"unknown placement {body.get('placement')!r}", path=path) from None
        return fl.FederatedType(infer_type(values[0], item(path, 0)), placement,
                                bool(body.get("all_equal", placement.default_all_equal)))
    if isinstance(obj, Mapping) and set(obj) == {"sequence"}:
        elements = _sequence_elements(obj["sequence"], path)
        if elements:
            return fl.SequenceType(infer_type(elements[0], item(path, 0)))
        raise ArgumentError("cannot infer the element type of an empty sequence; pass the type",
                            path=path)
    raise ArgumentError(f"cannot infer a type from {describe(obj)}: plain JSON needs the "
                        "parameter type", path=path)

