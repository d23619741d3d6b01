"""tffexec.formats: TFF values and computations on the wire, on disk, and in Python.

The Python value representation
===============================
This is the contract between the formats, the executors and the CLI. A value is always
interpreted together with its federated-language type (`federated_language.Type`):

* tensor (`TensorType`) -> always a `numpy.ndarray` (0-d for scalars) of exactly the type's dtype;
  bfloat16 via `ml_dtypes.bfloat16`; strings (`str`) as `dtype=object` arrays holding `bytes`.
* struct (`StructType`) -> `federated_language.common_libs.structure.Struct`, element names kept
  (None for unnamed elements), order kept.
* sequence (`SequenceType`) -> `tffexec.formats.sequences.SequenceValue(element_type,
  graph_def=bytes|None, elements=list|None)`: `.elements()` (element values in this
  representation, materialised lazily with TensorFlow), `.graph_def()` (serialized dataset graph,
  as `DatasetToGraphV2` writes it), `.to_dataset()` (a `tf.data.Dataset`). Two sequences are
  equal when their elements are.
* federated (`FederatedType`): `{T}@CLIENTS` (not all_equal) -> a Python `list` with one member
  value per client; all-equal values (`T@SERVER`, `T@CLIENTS`) -> the member value itself.
* function-typed values -> a `federated_language.proto.computation_pb2.Computation`.

Loose input (Python ints, nested lists, dicts for named structs, `str` for strings, ...) is turned
into this representation, and checked against the type, by `values.normalize`; a mismatch is an
`ArgumentError` naming the path inside the value (`arg.model[1].w`), the expected type in TFF
notation and what was found.

Modules
=======
* `types`      — helpers over federated-language's types (proto <-> Type, dtype <-> DataType,
                 TFF notation).
* `arrays`     — numpy <-> `Array` (typed lists and raw `content`) and TFF <= 0.82 TensorProto.
* `sequences`  — `SequenceValue`; the only place TensorFlow is imported, lazily.
* `values`     — executor `Value` <-> Python; re-exports `normalize`, `infer_clients`
                 (from `normalize`) and `values_equal` (from `compare`).
* `jsonfmt`    — the `tffexec-value/1` JSON schema (envelope, tagged, plain input).
* `npzfmt`     — npz archives, one array per tensor leaf keyed by path.
* `loading`    — files/stdin/bytes -> computations and values (format by flag, extension or
                 content), atomic writing.
* `protoparse`, `diagnostics` — error diagnosis helpers (why bytes do not parse; value paths).
* `compare`    — where two values of one type differ (paths and short explanations).
* `arguments`, `plainjson`, `atomic` — `--arg NAME=FILE` pieces, plain JSON output, atomic
                 writes.

What is *not* here: whether a computation may run (static analysis, the GraphDefs inside it,
the op allowlist and checker) is `tffexec.checks`; the policy is `tffexec.policy`; building
TensorFlow computations is `tffexec.tensorflow`. No module of this package imports
`tffexec.checks`: a value never checks itself (tests/test_layers.py).

Importing any module of this package never imports TensorFlow (a test checks it); importing the
package itself imports nothing but these constants (the CLI's option definitions use them).
"""
from __future__ import annotations

#: The value file formats, in the order messages and `--help` list them.
VALUE_FORMATS = ("pb", "json", "npz")
#: File extension (lower case) -> the value format it means.
EXTENSION_FORMATS = {".pb": "pb", ".binpb": "pb", ".bin": "pb", ".json": "json", ".npz": "npz"}
#: Every extension a value file may have.
VALUE_EXTENSIONS = tuple(EXTENSION_FORMATS)
