"""`tffexec.load_value` / `tffexec.save_value`: value files (.pb, .json, .npz) from Python.

Why a public pair: scripts that prepare arguments or check results should not have to shell out
to `tffexec convert`, nor reach into `tffexec.formats`. Both are thin over
`tffexec.formats.loading`, so a file written here is exactly what the CLI writes (a `.pb` is
byte-identical to TFF's `serialize_value` of the same value and type) and every problem is one
`tffexec.errors.ArgumentError` naming the file and the place inside the value.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Optional, Union

import federated_language as fl
import numpy as np
from federated_language.common_libs import structure
from federated_language.proto import computation_pb2

from tffexec import errors
from tffexec import policy as policy_lib
from tffexec import saving
from tffexec.checks import op_check
from tffexec.formats import loading
from tffexec.formats import types as types_lib
from tffexec.formats.sequences import SequenceValue

PathOrBytes = Union[str, os.PathLike, bytes, bytearray]
TypeLike = Union[fl.Type, computation_pb2.Type, None]


def as_type(type_spec: TypeLike) -> Optional[fl.Type]:
    """A federated-language type from a type or its `Type` proto (None stays None)."""
    if type_spec is None or isinstance(type_spec, fl.Type):
        return type_spec
    if isinstance(type_spec, computation_pb2.Type):
        return types_lib.type_from_proto(type_spec)
    raise errors.ArgumentError(f"type= must be a federated_language Type or a Type proto, not a "
                               f"{type(type_spec).__name__}")


def load_value(source: PathOrBytes, type: TypeLike = None, *,  # noqa: A002 - the API's word
               fmt: Optional[str] = None, policy: Optional[policy_lib.Policy] = None) -> Any:
    """Reads a value file, or the bytes of one, into tffexec's Python representation.

    Args:
      source: a path (`str` or `os.PathLike`) or the file's bytes.
      type: the value's type (a `federated_language.Type` or `Type` proto); the value is checked
        against it. Optional for `.pb` and tagged JSON, which say their type; needed for npz and
        plain JSON.
      fmt: "pb", "json" or "npz"; default: by the file's extension, else sniffed.
      policy: the limits to read it under, and the op policy a dataset graph in it must pass
        before its elements are read (default: `tffexec.policy.DEFAULT`).

    Raises:
      tffexec.errors.ArgumentError: unreadable, or not a value of `type`.
      tffexec.errors.PolicyError: larger than the policy's value limit.
    """
    if isinstance(source, os.PathLike):
        source = pathlib.Path(source)
    elif isinstance(source, str):
        source = pathlib.Path(source)  # `-` is a file name here; standard input is the CLI's
    policy = policy or policy_lib.DEFAULT
    value, found_type = loading.load_typed_value(source, as_type(type), fmt=fmt, path="value",
                                                 policy=policy)
    op_check.guard_value(value, found_type, policy, path="value")
    return value


def save_value(value: Any, path: Union[str, os.PathLike], type: TypeLike = None, *,  # noqa: A002
               fmt: Optional[str] = None) -> None:
    """Writes a value to a .pb, .json or .npz file (format by extension, or `fmt`), atomically.

    The whole file is encoded first and then renamed into place, so a failure never leaves a
    partial file. `type` may be omitted for values whose type the value itself says (numpy
    arrays and scalars, `Struct`s of them, sequences); a Python list could be a tensor or one
    member per client, so a value holding one needs `type`. A `tf.data.Dataset` is a sequence;
    dataset graphs are written TF 2.14-importable (`tffexec.formats.tf214_compat`), so that TFF
    0.87 reads the file too.

    Raises:
      tffexec.errors.ArgumentError: the value does not match `type`, its type cannot be told,
        the format cannot be told from the name, or the file cannot be written.
    """
    type_spec = as_type(type)
    value = saving.compatible_value(value)
    if type_spec is None:
        type_spec = infer_type(value)
    loading.save_value(value, type_spec, pathlib.Path(path), fmt=fmt)


def infer_type(value: Any, path: str = "value") -> fl.Type:
    """The type of a value that says it: arrays, numpy/Python scalars, Structs, sequences."""
    if isinstance(value, SequenceValue):
        return fl.SequenceType(value.element_type)
    if isinstance(value, structure.Struct):
        return fl.StructType([(name, infer_type(member, f"{path}.{name or i}"))
                              for i, (name, member) in enumerate(structure.iter_elements(value))])
    if isinstance(value, dict):
        return fl.StructType([(str(name), infer_type(member, f"{path}.{name}"))
                              for name, member in value.items()])
    if isinstance(value, (np.ndarray, np.generic, bool, int, float, complex, str, bytes)):
        array = np.asarray(value)
        if array.dtype.kind in "SUO":
            return fl.TensorType(np.str_, array.shape)
        try:
            return fl.TensorType(array.dtype, array.shape)
        except (TypeError, ValueError):
            pass  # a dtype TFF has no name for: reported below
    raise errors.ArgumentError(
        f"cannot tell the type of a {type(value).__name__} (a list may be a tensor or one member "
        "per client): pass type=", path=path)
