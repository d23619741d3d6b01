"""Generate TFF-serialized example cases for tffexec, using real TFF 0.87.

This script is NOT part of tffexec and never imports it. It runs under a
separate TFF 0.87 "peer" virtualenv (Python 3.11; TFF 0.87's requirements
with jax/jaxlib pinned to 0.4.13, then `pip install --no-deps
tensorflow-federated==0.87.0`; see examples/README.md):

    "$PEER/bin/python" examples/make_cases.py examples/cases \
        --examples-dir examples --corpus-args-dir examples/corpus_args \
        > /tmp/make_cases.log 2>&1

Outputs
  OUTDIR/<case>/            one folder per case, in exactly the public corpus
                            format: comp.pb, native_comp.pb, arg.pb (if the
                            computation takes an argument), expected.pb,
                            expected.json, meta.json.
  --examples-dir DIR        small readable examples (DIR/mean_of_clients,
                            DIR/fedavg_round): comp.pb, arg.pb, arg.json
                            (plain JSON), expected.pb, expected.json,
                            meta.json (no native_comp.pb).
  --corpus-args-dir DIR     for every public corpus case with an arg.pb:
                            DIR/<case>/arg.plain.json and arg.npz, written with
                            plain numpy/json code from TFF's own
                            deserialization of arg.pb. The corpus folder comes
                            from --corpus DIR or $TFFEXEC_CORPUS.

Always redirect this script's output to a file: TFF starts a `worker_binary`
subprocess that inherits stdout/stderr. The script kills the workers it
started (by pid) when it exits.
"""

import argparse
import atexit
import collections
import dataclasses
import io
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback
from typing import Any, Callable, Optional

import numpy as np


# ---------------------------------------------------------------------------
# worker_binary hygiene
# ---------------------------------------------------------------------------


def _child_pids():
  me = os.getpid()
  pids = []
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        stat = f.read()
      ppid = int(stat.rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
      continue
    if ppid == me:
      pids.append(int(entry))
  return pids


def kill_worker_children():
  """Kills the worker_binary processes this process started (by pid)."""
  for pid in _child_pids():
    try:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)  # reap it: no zombie left behind
    except OSError:
      pass


atexit.register(kill_worker_children)

# Quiet TF's C++ logging before it is imported.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
from tensorflow_federated.proto.v0 import computation_pb2  # pylint: disable=g-import-not-at-top
from tensorflow_federated.proto.v0 import executor_pb2  # pylint: disable=g-import-not-at-top
from tensorflow_federated.python.core.backends.native import compiler as native_compiler  # pylint: disable=g-import-not-at-top
from tensorflow_federated.python.core.backends.test import compiler as test_compiler  # pylint: disable=g-import-not-at-top
from tensorflow_federated.python.core.impl.compiler import array as tff_array  # pylint: disable=g-import-not-at-top
from tensorflow_federated.python.core.impl.compiler import building_block_factory as bbf  # pylint: disable=g-import-not-at-top
from tensorflow_federated.python.core.impl.compiler import building_blocks as bb  # pylint: disable=g-import-not-at-top
from tensorflow_federated.python.core.impl.compiler import intrinsic_defs  # pylint: disable=g-import-not-at-top
from tensorflow_federated.python.core.impl.types import type_serialization  # pylint: disable=g-import-not-at-top

T = tff.TensorType
F = tff.FederatedType
S = tff.StructType
Q = tff.SequenceType
C = tff.CLIENTS
SRV = tff.SERVER
tfc = tff.tensorflow.computation
fedc = tff.federated_computation
OD = collections.OrderedDict

RUNTIME_NATIVE = ('tff.backends.native sync local C++ execution context '
                  '(worker_binary over localhost gRPC)')
RUNTIME_TEST = ('tff.backends.test sync local C++ execution context '
                '(worker_binary over localhost gRPC)')
TIMING_NOTE = ('wall time of comp(arg) in-process, after one warm-up; includes '
               'Python-side compile (cached), arg serialization, gRPC to the '
               'C++ worker, execution, result fetch')


# ---------------------------------------------------------------------------
# Execution contexts (one worker_binary per (kind, default_num_clients))
# ---------------------------------------------------------------------------

_CONTEXTS = {}


def get_context(kind: str, default_num_clients: int):
  key = (kind, default_num_clients)
  if key not in _CONTEXTS:
    if kind == 'native':
      ctx = tff.backends.native.create_sync_local_cpp_execution_context(
          default_num_clients=default_num_clients)
    elif kind == 'test':
      ctx = tff.backends.test.create_sync_test_cpp_execution_context(
          default_num_clients=default_num_clients)
    else:
      raise ValueError(kind)
    _CONTEXTS[key] = ctx
  return _CONTEXTS[key]


def run_in(kind, default_num_clients, comp, arg, has_arg):
  tff.framework.set_default_context(get_context(kind, default_num_clients))
  return comp(arg) if has_arg else comp()


def compile_native(comp, kind):
  """The compiled form the context's compiler_fn produces (what runs)."""
  if kind == 'test':
    comp = test_compiler.replace_secure_intrinsics_with_bodies(comp)
  return native_compiler.desugar_and_transform_to_native(comp)


# ---------------------------------------------------------------------------
# Rendering: tagged expected.json (corpus format) and plain JSON / npz
# ---------------------------------------------------------------------------


def dtype_name(dtype) -> str:
  dtype = np.dtype(dtype)
  if dtype.kind in ('U', 'S', 'O'):
    return 'string'
  return dtype.name


def _plain_scalar(x, kind, short_float=False):
  if kind == 'string':
    if isinstance(x, (bytes, np.bytes_)):
      return bytes(x).decode('utf-8')
    return str(x)
  if kind == 'f':
    xf = float(x)
    if math.isnan(xf):
      return 'nan'
    if math.isinf(xf):
      return 'inf' if xf > 0 else '-inf'
    if short_float and isinstance(x, (np.float16, np.float32)):
      # Shortest decimal that reads back to the same float16/float32.
      return float(np.format_float_positional(x, unique=True, trim='-')
                   if abs(xf) < 1e16 else repr(x))
    return xf
  if kind == 'c':
    return [_plain_scalar(np.real(x), 'f', short_float),
            _plain_scalar(np.imag(x), 'f', short_float)]
  if kind == 'b':
    return bool(x)
  return int(x)


def tensor_plain(value, tensor_type=None, short_float=False):
  """A tensor as plain JSON: numbers / nested lists, strings as text."""
  if isinstance(value, tf.Tensor):
    value = value.numpy()
  if tensor_type is not None and tensor_type.dtype.type is np.str_:
    arr = np.asarray(value, dtype=object)
    kind = 'string'
  else:
    arr = np.asarray(value)
    if tensor_type is not None:
      arr = arr.astype(tensor_type.dtype.type, copy=False)
    kind = 'string' if arr.dtype.kind in 'USO' else (
        'i' if arr.dtype.kind in 'iu' else arr.dtype.kind)

  def rec(a):
    if isinstance(a, np.ndarray) and a.ndim > 0:
      return [rec(x) for x in a]
    if isinstance(a, np.ndarray):
      a = a[()]
    return _plain_scalar(a, kind, short_float)

  return rec(arr)


def tensor_tagged(value, tensor_type=None):
  if isinstance(value, tf.Tensor):
    value = value.numpy()
  if tensor_type is not None:
    dname = 'string' if tensor_type.dtype.type is np.str_ else np.dtype(
        tensor_type.dtype.type).name
  else:
    dname = dtype_name(np.asarray(value).dtype)
  shape = list(np.shape(value))
  return {'dtype': dname, 'shape': shape,
          'value': tensor_plain(value, tensor_type)}


def _struct_items(value, struct_type):
  """(name, element value, element type) triples of a struct value."""
  type_elems = tff.structure.to_elements(struct_type)
  if isinstance(value, tff.structure.Struct):
    vals = [v for _, v in tff.structure.to_elements(value)]
  elif isinstance(value, collections.abc.Mapping):
    vals = []
    for i, (name, _) in enumerate(type_elems):
      vals.append(value[name] if name is not None and name in value
                  else list(value.values())[i])
  elif dataclasses.is_dataclass(value) or hasattr(value, '__attrs_attrs__'):
    vals = [getattr(value, n) for n, _ in type_elems]
  else:
    vals = list(value)
  if len(vals) != len(type_elems):
    raise ValueError(f'struct arity mismatch: {value!r} vs {struct_type}')
  return [(n, v, t) for (n, t), v in zip(type_elems, vals)]


def _sequence_elements(value):
  if isinstance(value, tf.data.Dataset):
    return list(value.as_numpy_iterator())
  return list(value)


def py_tagged(value, type_spec):
  """Tagged rendering of a Python value (as TFF returns it) of type_spec."""
  if isinstance(type_spec, tff.TensorType):
    return tensor_tagged(value, type_spec)
  if isinstance(type_spec, tff.StructType):
    return {'struct': [{'name': n, 'value': py_tagged(v, t)}
                       for n, v, t in _struct_items(value, type_spec)]}
  if isinstance(type_spec, tff.FederatedType):
    values = [value] if type_spec.all_equal else list(value)
    return {'federated': {'placement': type_spec.placement.uri,
                          'all_equal': bool(type_spec.all_equal),
                          'values': [py_tagged(v, type_spec.member)
                                     for v in values]}}
  if isinstance(type_spec, tff.SequenceType):
    return {'sequence': {'element_type': str(type_spec.element),
                         'elements': [py_tagged(e, type_spec.element)
                                      for e in _sequence_elements(value)]}}
  raise TypeError(f'cannot render {type_spec}')


def decode_array(array_pb):
  if array_pb.HasField('content'):
    v = tff_array.from_proto_content(array_pb)
  else:
    v = tff_array.from_proto(array_pb)
  return v


def value_pb_tagged(value_pb, type_spec):
  """Tagged rendering straight from an executor Value proto."""
  kind = value_pb.WhichOneof('value')
  if kind == 'array':
    return tensor_tagged(decode_array(value_pb.array), type_spec)
  if kind == 'struct':
    type_elems = tff.structure.to_elements(type_spec)
    return {'struct': [
        {'name': e.name or None, 'value': value_pb_tagged(e.value, t)}
        for e, (_, t) in zip(value_pb.struct.element, type_elems)]}
  if kind == 'federated':
    fed = value_pb.federated
    return {'federated': {
        'placement': fed.type.placement.value.uri,
        'all_equal': bool(fed.type.all_equal),
        'values': [value_pb_tagged(v, type_spec.member) for v in fed.value]}}
  if kind == 'sequence':
    ds, _ = tff.framework.deserialize_value(value_pb, type_spec)
    return py_tagged(ds, type_spec)
  raise TypeError(f'cannot render Value kind {kind}')


def py_plain(value, type_spec):
  """Plain JSON (see examples/corpus_args/README.md) of a Python value."""
  if isinstance(type_spec, tff.TensorType):
    return tensor_plain(value, type_spec, short_float=True)
  if isinstance(type_spec, tff.StructType):
    items = _struct_items(value, type_spec)
    if items and all(n is None for n, _, _ in items):
      return [py_plain(v, t) for _, v, t in items]
    out = OD()
    for i, (n, v, t) in enumerate(items):
      out[n if n is not None else str(i)] = py_plain(v, t)
    return out
  if isinstance(type_spec, tff.FederatedType):
    if type_spec.all_equal:
      return py_plain(value, type_spec.member)
    return [py_plain(v, type_spec.member) for v in value]
  if isinstance(type_spec, tff.SequenceType):
    return [py_plain(e, type_spec.element) for e in _sequence_elements(value)]
  raise TypeError(f'cannot render {type_spec}')


def plain_to_py(obj, type_spec):
  """Inverse of py_plain (used to self-check the plain JSON files)."""
  if isinstance(type_spec, tff.TensorType):
    npdt = type_spec.dtype.type
    if npdt is np.str_:
      def enc(o):
        return [enc(x) for x in o] if isinstance(o, list) else o.encode('utf-8')
      e = enc(obj)
      return np.array(e, dtype=object) if isinstance(e, list) else e
    dt = np.dtype(npdt)
    if dt.kind == 'c':
      return plain_to_py_tensor_complex(obj, type_spec)

    def conv(o):
      if isinstance(o, list):
        return [conv(x) for x in o]
      if isinstance(o, str):
        return float(o)
      return o

    return np.array(conv(obj), dtype=dt)
  if isinstance(type_spec, tff.StructType):
    elems = tff.structure.to_elements(type_spec)
    if isinstance(obj, list):
      return tff.structure.Struct(
          [(n, plain_to_py(o, t)) for (n, t), o in zip(elems, obj)])
    return tff.structure.Struct(
        [(n, plain_to_py(obj[n if n is not None else str(i)], t))
         for i, (n, t) in enumerate(elems)])
  if isinstance(type_spec, tff.FederatedType):
    if type_spec.all_equal:
      return plain_to_py(obj, type_spec.member)
    return [plain_to_py(o, type_spec.member) for o in obj]
  if isinstance(type_spec, tff.SequenceType):
    return [plain_to_py(o, type_spec.element) for o in obj]
  raise TypeError(type_spec)


def plain_to_py_tensor_complex(obj, type_spec):
  dt = np.dtype(type_spec.dtype.type)
  rank = len(type_spec.shape) if type_spec.shape is not None else None

  def conv(o, r):
    if r == 0:
      return complex(float(o[0]), float(o[1]))
    return [conv(x, r - 1) for x in o]

  if rank is None:
    raise ValueError('complex tensors need a known rank')
  return np.array(conv(obj, rank), dtype=dt)


def npz_arrays(value, type_spec):
  """Leaf arrays keyed by '/'-joined paths (see corpus_args/README.md).

  Returns None when the value contains a sequence (not representable).
  """
  out = OD()

  def has_sequence(t):
    if isinstance(t, tff.SequenceType):
      return True
    if isinstance(t, tff.StructType):
      return any(has_sequence(e) for _, e in tff.structure.to_elements(t))
    if isinstance(t, tff.FederatedType):
      return has_sequence(t.member)
    return False

  if has_sequence(type_spec):
    return None

  def leaves(v, t, path):
    """Yields (path, ndarray) for non-federated value v of type t."""
    if isinstance(t, tff.TensorType):
      if isinstance(v, tf.Tensor):
        v = v.numpy()
      if t.dtype.type is np.str_:
        a = np.asarray(v, dtype=object)
        a = np.vectorize(
            lambda x: x.decode('utf-8') if isinstance(x, bytes) else str(x),
            otypes=[object])(a) if a.size else a
        return [(path, np.asarray(a.tolist(), dtype=np.str_).reshape(a.shape))]
      return [(path, np.asarray(v).astype(t.dtype.type, copy=False))]
    if isinstance(t, tff.StructType):
      res = []
      for i, (n, ev, et) in enumerate(_struct_items(v, t)):
        part = n if n is not None else str(i)
        res.extend(leaves(ev, et, path + [part]))
      return res
    if isinstance(t, tff.FederatedType):
      if t.all_equal:
        return leaves(v, t.member, path)
      per_client = [leaves(cv, t.member, path) for cv in v]
      member_paths = [p for p, _ in leaves_template(t.member, path)]
      res = []
      for j, p in enumerate(member_paths):
        arrs = [pc[j][1] for pc in per_client]
        shapes = {a.shape for a in arrs}
        if len(shapes) <= 1 and arrs:
          res.append((p, np.stack(arrs)))
        elif not arrs:
          tmpl = dict(leaves_template(t.member, path))[p]
          res.append((p, np.zeros((0,) + tmpl[0], dtype=tmpl[1])))
        else:
          for c, a in enumerate(arrs):
            res.append((p + [f'#{c}'], a))
      return res
    raise TypeError(t)

  def leaves_template(t, path):
    if isinstance(t, tff.TensorType):
      shape = tuple(d if d is not None else 0 for d in (t.shape or ()))
      dt = np.str_ if t.dtype.type is np.str_ else t.dtype.type
      return [(path, (shape, dt))]
    if isinstance(t, tff.StructType):
      res = []
      for i, (n, et) in enumerate(tff.structure.to_elements(t)):
        res.extend(leaves_template(et, path + [n if n is not None else str(i)]))
      return res
    if isinstance(t, tff.FederatedType):
      return leaves_template(t.member, path)
    raise TypeError(t)

  for p, a in leaves(value, type_spec, []):
    key = '/'.join(p) if p else 'value'
    out[key] = a
  return out


def write_json(path, obj):
  with open(path, 'w') as f:
    json.dump(obj, f, indent=1, ensure_ascii=False)
    f.write('\n')


def dumps_plain(obj, indent=0, width=100):
  """JSON with objects/long lists broken over lines, short lists inline."""
  pad = ' ' * indent
  inline = json.dumps(obj, ensure_ascii=False)
  if not isinstance(obj, (dict, list)) or (
      len(inline) + indent <= width and not (
          isinstance(obj, dict) and any(isinstance(v, (dict, list))
                                        for v in obj.values()))):
    return inline
  if isinstance(obj, dict):
    if not obj:
      return '{}'
    items = [f'{pad} {json.dumps(k, ensure_ascii=False)}: '
             f'{dumps_plain(v, indent + 1, width).lstrip()}'
             for k, v in obj.items()]
    return '{\n' + ',\n'.join(items) + '\n' + pad + '}'
  items = [pad + ' ' + dumps_plain(v, indent + 1, width).lstrip()
           for v in obj]
  return '[\n' + ',\n'.join(items) + '\n' + pad + ']'


def write_plain_json(path, obj):
  with open(path, 'w') as f:
    f.write(dumps_plain(obj))
    f.write('\n')


def tagged_equal(a, b, rtol=1e-6):
  """Structural equality of two tagged renderings (NaN == NaN)."""
  if isinstance(a, dict) and isinstance(b, dict):
    return a.keys() == b.keys() and all(
        tagged_equal(a[k], b[k], rtol) for k in a)
  if isinstance(a, list) and isinstance(b, list):
    return len(a) == len(b) and all(
        tagged_equal(x, y, rtol) for x, y in zip(a, b))
  if isinstance(a, float) or isinstance(b, float):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
      return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)
    return False
  return a == b


def count_intrinsics(comp_pb):
  """Intrinsic URIs used, and nesting depths (lambdas, blocks, messages)."""
  uris = set()
  depths = {'lambda': 0, 'block': 0, 'message': 0}

  def walk(p, lam, blk, msg):
    msg += 1
    depths['message'] = max(depths['message'], msg)
    if isinstance(p, computation_pb2.Computation):
      kind = p.WhichOneof('computation')
      if kind == 'intrinsic':
        uris.add(p.intrinsic.uri)
      elif kind == 'lambda':
        lam += 1
        depths['lambda'] = max(depths['lambda'], lam)
      elif kind == 'block':
        blk += 1
        depths['block'] = max(depths['block'], blk)
    for f, v in p.ListFields():
      if f.message_type is None:
        continue
      if f.label == f.LABEL_REPEATED:
        for x in v:
          walk(x, lam, blk, msg)
      else:
        walk(v, lam, blk, msg)

  walk(comp_pb, 0, 0, 0)
  return sorted(uris), depths


def has_clients_value(type_spec) -> bool:
  if type_spec is None:
    return False
  if isinstance(type_spec, tff.FederatedType):
    return type_spec.placement is tff.CLIENTS and not type_spec.all_equal
  if isinstance(type_spec, tff.StructType):
    return any(has_clients_value(t)
               for _, t in tff.structure.to_elements(type_spec))
  return False


def count_clients(value, type_spec) -> Optional[int]:
  if isinstance(type_spec, tff.FederatedType):
    if type_spec.placement is tff.CLIENTS and not type_spec.all_equal:
      return len(value)
    return None
  if isinstance(type_spec, tff.StructType):
    for _, v, t in _struct_items(value, type_spec):
      n = count_clients(v, t)
      if n is not None:
        return n
  return None


# ---------------------------------------------------------------------------
# Case definitions
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
  name: str
  description: str
  build: Callable[[], Any]
  arg: Optional[Callable[[], Any]] = None
  default_num_clients: int = 0
  context: str = 'native'
  expected_fn: Optional[Callable[[], Any]] = None
  random: bool = False
  notes: Optional[str] = None
  # For results whose order or some members vary between calls: maps the
  # tagged rendering to what must agree (and records `meta.compare`).
  canonical: Optional[Callable[[Any], Any]] = None
  compare: Optional[dict] = None


CASES: list[Case] = []


def case(name, description, **kw):
  def deco(build):
    CASES.append(Case(name=name, description=description, build=build, **kw))
    return build
  return deco


def rng(seed):
  return np.random.default_rng(seed)


# --- federated_min / federated_max ----------------------------------------

_MINMAX_I32 = [np.array(x, np.int32) for x in
               [[3, -7, 12], [5, 2, -1], [-4, 9, 0], [8, 8, 8], [1, -20, 30]]]


@case('fed_min_int32', 'federated_min of int32[3] at CLIENTS (5 clients)',
      arg=lambda: _MINMAX_I32)
def _():
  @fedc(F(T(np.int32, [3]), C))
  def comp(x):
    return tff.federated_min(x)
  return comp


@case('fed_max_int32', 'federated_max of int32[3] at CLIENTS (5 clients)',
      arg=lambda: _MINMAX_I32)
def _():
  @fedc(F(T(np.int32, [3]), C))
  def comp(x):
    return tff.federated_max(x)
  return comp


def _minmax_f32():
  r = rng(11)
  return [np.round(r.normal(size=(2, 2)) * 10, 2).astype(np.float32)
          for _ in range(6)]


@case('fed_min_float32', 'federated_min of float32[2,2] at CLIENTS (6 clients)',
      arg=_minmax_f32)
def _():
  @fedc(F(T(np.float32, [2, 2]), C))
  def comp(x):
    return tff.federated_min(x)
  return comp


@case('fed_max_float32', 'federated_max of float32[2,2] at CLIENTS (6 clients)',
      arg=_minmax_f32)
def _():
  @fedc(F(T(np.float32, [2, 2]), C))
  def comp(x):
    return tff.federated_max(x)
  return comp


@case('fed_min_max_struct',
      'federated_min and federated_max of a named struct <a=int32[2],b=float32>'
      ' at CLIENTS (4 clients); result <min=...@SERVER,max=...@SERVER>',
      arg=lambda: [OD(a=np.array(a, np.int32), b=np.float32(b)) for a, b in
                   [([1, 9], 0.5), ([-3, 4], 2.25), ([7, -8], -1.5),
                    ([0, 0], 3.0)]])
def _():
  @fedc(F(S([('a', T(np.int32, [2])), ('b', T(np.float32))]), C))
  def comp(x):
    return OD(min=tff.federated_min(x), max=tff.federated_max(x))
  return comp


# --- apply / value / eval / map_all_equal / zip / broadcast -------------------


@case('fed_apply_server',
      'federated_apply (tff.federated_map on a SERVER value) of a tf '
      'computation v*2+1 to float32[3]@SERVER',
      arg=lambda: np.array([0.5, -1.0, 4.0], np.float32))
def _():
  @tfc(T(np.float32, [3]))
  def f(v):
    return v * 2.0 + 1.0

  @fedc(F(T(np.float32, [3]), SRV))
  def comp(x):
    return tff.federated_map(f, x)
  return comp


@case('fed_value_at_server_struct',
      'federated_value_at_server of an unplaced named struct argument '
      '<a=int32,b=float32[2]>',
      arg=lambda: OD(a=np.int32(42), b=np.array([1.5, -2.5], np.float32)))
def _():
  @fedc(S([('a', T(np.int32)), ('b', T(np.float32, [2]))]))
  def comp(x):
    return tff.federated_value(x, SRV)
  return comp


@case('fed_value_at_clients_all_equal',
      'federated_value_at_clients of an unplaced float32[2] argument, '
      'returned as an all_equal CLIENTS value (default_num_clients=3)',
      arg=lambda: np.array([3.0, -0.25], np.float32), default_num_clients=3)
def _():
  @fedc(T(np.float32, [2]))
  def comp(x):
    return tff.federated_value(x, C)
  return comp


@case('fed_eval_at_server_struct',
      'federated_eval_at_server of a no-arg tf computation returning a named '
      'struct <w=float32[2,2],step=int64>',
      default_num_clients=0)
def _():
  @tfc
  def init():
    return OD(w=tf.constant([[1.0, 2.0], [3.0, 4.0]]) * 0.5,
              step=tf.constant(7, tf.int64))

  @fedc
  def comp():
    return tff.federated_eval(init, SRV)
  return comp


@case('fed_map_all_equal_broadcast',
      'federated_broadcast of a SERVER float32, then federated_map_all_equal '
      '(square) over the all_equal CLIENTS value (that part built from '
      'building blocks: tff.federated_map in 0.87 emits federated_map), '
      'zipped with a per-client value and summed',
      arg=lambda: OD(s=np.float32(1.5),
                     c=[np.float32(v) for v in [1.0, 2.0, 3.0, 4.0]]))
def _():
  @tfc(T(np.float32))
  def square(v):
    return v * v

  @tfc(T(np.float32), T(np.float32))
  def add(a, b):
    return a + b

  s_t = F(T(np.float32), SRV)
  ref = bb.Reference('s', s_t)
  body = bbf.create_federated_map_all_equal(
      square.to_building_block(), bbf.create_federated_broadcast(ref))
  bcast_square = tff.framework.ConcreteComputation.from_building_block(
      bb.Lambda('s', s_t, body))

  @fedc(OD(s=s_t, c=F(T(np.float32), C)))
  def comp(s, c):
    sq = bcast_square(s)
    total = tff.federated_sum(tff.federated_map(add, tff.federated_zip((sq, c))))
    return OD(squared=sq, total=total)
  return comp


@case('fed_zip_at_server',
      'federated_zip_at_server of <a=int32@SERVER,b=float32[2]@SERVER>, then '
      'federated_apply of a*b',
      arg=lambda: OD(a=np.int32(3), b=np.array([0.5, -2.0], np.float32)))
def _():
  @tfc(OD(a=T(np.int32), b=T(np.float32, [2])))
  def prod(a, b):
    return tf.cast(a, tf.float32) * b

  @fedc(OD(a=F(T(np.int32), SRV), b=F(T(np.float32, [2]), SRV)))
  def comp(a, b):
    z = tff.federated_zip(OD(a=a, b=b))
    return OD(zipped=z, product=tff.federated_map(prod, z))
  return comp


def _zip_nested_arg():
  return OD(a=[np.int32(i) for i in [1, 2, 3]],
            b=OD(c=[np.float32(v) for v in [0.5, 1.5, 2.5]],
                 d=[np.array([i, -i], np.float32) for i in [1.0, 2.0, 3.0]]))


_ZIP_NESTED_T = S([
    ('a', F(T(np.int32), C)),
    ('b', S([('c', F(T(np.float32), C)), ('d', F(T(np.float32, [2]), C))])),
])


@case('fed_zip_at_clients_nested',
      'federated_zip_at_clients of a NESTED struct <a={int32}@C,'
      'b=<c={float32}@C,d={float32[2]}@C>> -> {<a,<c,d>>}@CLIENTS, returned '
      'and mapped (a*c + sum(d))',
      arg=_zip_nested_arg)
def _():
  @tfc(S([('a', T(np.int32)),
          ('b', S([('c', T(np.float32)), ('d', T(np.float32, [2]))]))]))
  def f(x):
    return tf.cast(x['a'], tf.float32) * x['b']['c'] + tf.reduce_sum(
        x['b']['d'])

  @fedc(_ZIP_NESTED_T)
  def comp(x):
    z = tff.federated_zip(x)
    return OD(zipped=z, mapped=tff.federated_map(f, z))
  return comp


@case('fed_broadcast',
      'federated_broadcast of int32[2]@SERVER returned directly as an all_equal'
      ' CLIENTS value (default_num_clients=4)',
      arg=lambda: np.array([5, -6], np.int32), default_num_clients=4)
def _():
  @fedc(F(T(np.int32, [2]), SRV))
  def comp(x):
    return tff.federated_broadcast(x)
  return comp


# --- secure intrinsics (tff.backends.test context) -------------------------


@case('fed_secure_sum_bitwidth',
      'federated_secure_sum_bitwidth(x, bitwidth=8) of int32 at CLIENTS. Run '
      'in tff.backends.test context (native runtime rejects secure '
      'intrinsics); native_comp.pb is the test context\'s compiled form',
      arg=lambda: [np.int32(v) for v in [10, 200, 3, 255, 0]],
      context='test')
def _():
  @fedc(F(T(np.int32), C))
  def comp(x):
    return tff.federated_secure_sum_bitwidth(x, 8)
  return comp


@case('fed_secure_modular_sum',
      'tff.backends.mapreduce.federated_secure_modular_sum(x, modulus=7) of '
      'int32[2] at CLIENTS. Run in tff.backends.test context',
      arg=lambda: [np.array(v, np.int32) for v in
                   [[1, 6], [5, 6], [3, 0], [4, 2], [6, 1]]],
      context='test')
def _():
  @fedc(F(T(np.int32, [2]), C))
  def comp(x):
    return tff.backends.mapreduce.federated_secure_modular_sum(x, 7)
  return comp


@case('fed_secure_select',
      'federated_secure_select: each client privately selects rows (int32 '
      'keys) of a SERVER float32[4,3] table; the per-client sequences are '
      'reduced to their sums. Run in tff.backends.test context',
      arg=lambda: OD(keys=[np.array(k, np.int32) for k in
                           [[0, 1], [2, 3], [3, 3], [1, 0]]],
                     table=np.arange(12, dtype=np.float32).reshape(4, 3)),
      context='test')
def _():
  @tfc(T(np.float32, [4, 3]), T(np.int32))
  def select_fn(table, key):
    return tf.gather(table, key)

  @tfc(Q(T(np.float32, [3])))
  def reduce_rows(ds):
    return ds.reduce(tf.zeros([3], tf.float32), lambda a, r: a + r)

  @tfc
  def max_key():
    return tf.constant(3, tf.int32)

  @fedc(OD(keys=F(T(np.int32, [2]), C), table=F(T(np.float32, [4, 3]), SRV)))
  def comp(keys, table):
    rows = tff.federated_secure_select(
        keys, tff.federated_eval(max_key, SRV), table, select_fn)
    return tff.federated_map(reduce_rows, rows)
  return comp


@case('fed_secure_sum_struct',
      'federated_secure_sum of a named struct <a=int32,b=int32[2]> at CLIENTS '
      'with a struct of bounds <a=100,b=50>. Run in tff.backends.test context',
      arg=lambda: [OD(a=np.int32(a), b=np.array(b, np.int32)) for a, b in
                   [(10, [1, 2]), (99, [50, 0]), (0, [7, 7])]],
      context='test')
def _():
  @fedc(F(S([('a', T(np.int32)), ('b', T(np.int32, [2]))]), C))
  def comp(x):
    return tff.federated_secure_sum(
        x, OD(a=np.int32(100), b=np.int32(50)))
  return comp


# --- means and sums -----------------------------------------------------------


@case('fed_weighted_mean_int_weights',
      'federated_weighted_mean of float32[2] values with int32 weights '
      '(5 clients)',
      arg=lambda: OD(x=[np.array(v, np.float32) for v in
                        [[1, 2], [3, 4], [5, 6], [-1, 0.5], [10, 0]]],
                     w=[np.int32(v) for v in [1, 2, 3, 4, 0]]))
def _():
  @fedc(OD(x=F(T(np.float32, [2]), C), w=F(T(np.int32), C)))
  def comp(x, w):
    return tff.federated_mean(x, weight=w)
  return comp


@case('fed_weighted_mean_float64',
      'federated_weighted_mean of float64 values with float32 weights '
      '(dtype promotion; 4 clients)',
      arg=lambda: OD(x=[np.float64(v) for v in [0.1, 0.2, 0.3, 1e10]],
                     w=[np.float32(v) for v in [1.0, 0.5, 0.25, 1e-9]]))
def _():
  @fedc(OD(x=F(T(np.float64), C), w=F(T(np.float32), C)))
  def comp(x, w):
    return tff.federated_mean(x, weight=w)
  return comp


@case('fed_weighted_mean_struct',
      'federated_weighted_mean of a named struct <a=float32[2],b=float32> with '
      'float32 weights (3 clients)',
      arg=lambda: OD(
          x=[OD(a=np.array(a, np.float32), b=np.float32(b)) for a, b in
             [([1, 1], 2.0), ([2, 0], 4.0), ([0, 3], -6.0)]],
          w=[np.float32(v) for v in [1.0, 2.0, 1.0]]))
def _():
  @fedc(OD(x=F(S([('a', T(np.float32, [2])), ('b', T(np.float32))]), C),
           w=F(T(np.float32), C)))
  def comp(x, w):
    return tff.federated_mean(x, weight=w)
  return comp


@case('fed_mean_struct_f32_f64',
      'federated_mean (unweighted) of a named struct <a=float32[2],b=float64> '
      '(4 clients)',
      arg=lambda: [OD(a=np.array(a, np.float32), b=np.float64(b)) for a, b in
                   [([1, 2], 0.1), ([3, 4], 0.2), ([5, 6], 0.3),
                    ([7, 8], 0.4)]])
def _():
  @fedc(F(S([('a', T(np.float32, [2])), ('b', T(np.float64))]), C))
  def comp(x):
    return tff.federated_mean(x)
  return comp


@case('fed_sum_named_struct_i64_f64',
      'federated_sum of a named struct <count=int64,total=float64[2]> '
      '(int64 values beyond 2^31, 3 clients)',
      arg=lambda: [OD(count=np.int64(c), total=np.array(t, np.float64))
                   for c, t in [(2**40 + 1, [0.1, 1e300]),
                                (2**33, [0.2, -1e300]),
                                (-5, [0.3, 1.0])]])
def _():
  @fedc(F(S([('count', T(np.int64)), ('total', T(np.float64, [2]))]), C))
  def comp(x):
    return tff.federated_sum(x)
  return comp


@case('fed_sum_zero_clients',
      'federated_sum of float32[2] at CLIENTS with ZERO clients (argument is '
      'an empty list): result is zeros',
      arg=lambda: [])
def _():
  @fedc(F(T(np.float32, [2]), C))
  def comp(x):
    return tff.federated_sum(x)
  return comp


# --- generic_* intrinsics (built from building blocks) ----------------------


def _generic_comp(defn, param_type, result_type):
  """Lambda x -> generic_op(x) with param_type = <A,A>."""
  intr = bb.Intrinsic(defn.uri, tff.FunctionType(param_type, result_type))
  ref = bb.Reference('x', param_type)
  lam = bb.Lambda('x', param_type, bb.Call(intr, ref))
  return tff.framework.ConcreteComputation.from_building_block(lam)


_I3 = T(np.int32, [3])
_AB = S([('a', T(np.float32, [2])), ('b', T(np.float32))])


@case('generic_plus_int32',
      'generic_plus intrinsic on <int32[3],int32[3]> (built from building '
      'blocks)',
      arg=lambda: tff.structure.Struct([
          (None, np.array([1, 2, 3], np.int32)),
          (None, np.array([10, -20, 30], np.int32))]))
def _():
  return _generic_comp(intrinsic_defs.GENERIC_PLUS, S([_I3, _I3]), _I3)


@case('generic_plus_struct',
      'generic_plus intrinsic on two named structs <a=float32[2],b=float32>',
      arg=lambda: tff.structure.Struct([
          (None, OD(a=np.array([1, 2], np.float32), b=np.float32(0.5))),
          (None, OD(a=np.array([0.25, -2], np.float32), b=np.float32(1.5)))]))
def _():
  return _generic_comp(intrinsic_defs.GENERIC_PLUS, S([_AB, _AB]), _AB)


@case('generic_plus_server',
      'generic_plus intrinsic on <int32@SERVER,int32@SERVER> (federated '
      'operands: TFF zips and applies)',
      arg=lambda: tff.structure.Struct([(None, np.int32(40)),
                                        (None, np.int32(2))]))
def _():
  fs = F(T(np.int32), SRV)
  return _generic_comp(intrinsic_defs.GENERIC_PLUS, S([fs, fs]), fs)


@case('generic_multiply_float32',
      'generic_multiply intrinsic on <float32[2],float32[2]>',
      arg=lambda: tff.structure.Struct([
          (None, np.array([1.5, -2.0], np.float32)),
          (None, np.array([4.0, 0.25], np.float32))]))
def _():
  t = T(np.float32, [2])
  return _generic_comp(intrinsic_defs.GENERIC_MULTIPLY, S([t, t]), t)


@case('generic_divide_int32',
      'generic_divide intrinsic on <int32[3],int32[3]> -> float64[3] (TF true '
      'division of int32 gives float64)',
      arg=lambda: tff.structure.Struct([
          (None, np.array([1, 7, -9], np.int32)),
          (None, np.array([2, 2, 4], np.int32))]))
def _():
  return _generic_comp(intrinsic_defs.GENERIC_DIVIDE, S([_I3, _I3]),
                       T(np.float64, [3]))


@case('generic_divide_float32',
      'generic_divide intrinsic on <float32[2],float32[2]> -> float32[2]',
      arg=lambda: tff.structure.Struct([
          (None, np.array([1.0, 3.0], np.float32)),
          (None, np.array([4.0, -2.0], np.float32))]))
def _():
  t = T(np.float32, [2])
  return _generic_comp(intrinsic_defs.GENERIC_DIVIDE, S([t, t]), t)


@case('generic_zero_struct',
      'generic_zero intrinsic of type <a=float32[2],b=int32> returned by a '
      'no-arg lambda (TFF 0.87 cannot execute generic_zero: expected computed '
      'by hand)',
      expected_fn=lambda: OD(a=np.zeros([2], np.float32), b=np.int32(0)))
def _():
  t = S([('a', T(np.float32, [2])), ('b', T(np.int32))])
  intr = bb.Intrinsic(intrinsic_defs.GENERIC_ZERO.uri, t)
  lam = bb.Lambda(None, None, intr)
  return tff.framework.ConcreteComputation.from_building_block(lam)


# --- sequences --------------------------------------------------------------

_CLIENT_SEQS = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]]


@case('seq_map_reduce_clients',
      'sequence_map (x*x) then sequence_reduce (sum) on each client\'s int32 '
      'dataset; per-client results {int32}@CLIENTS (4 clients)',
      arg=lambda: [[np.int32(v) for v in s] for s in _CLIENT_SEQS])
def _():
  @tfc(T(np.int32))
  def sq(v):
    return v * v

  @tfc(T(np.int32), T(np.int32))
  def add(a, b):
    return a + b

  @fedc(Q(T(np.int32)))
  def client_fn(ds):
    return tff.sequence_reduce(tff.sequence_map(sq, ds), np.int32(0), add)

  @fedc(F(Q(T(np.int32)), C))
  def comp(x):
    return tff.federated_map(client_fn, x)
  return comp


@case('seq_sum_clients',
      'sequence_sum on each client\'s float32[2] dataset (4 clients)',
      arg=lambda: [[np.array([v, -v], np.float32) for v in s]
                   for s in _CLIENT_SEQS],
      expected_fn=lambda: [np.array([sum(s), -sum(s)], np.float32)
                           for s in _CLIENT_SEQS])
def _():
  @fedc(Q(T(np.float32, [2])))
  def client_fn(ds):
    return tff.sequence_sum(ds)

  @fedc(F(Q(T(np.float32, [2])), C))
  def comp(x):
    return tff.federated_map(client_fn, x)
  return comp


@case('seq_map_server',
      'sequence_map (int32 -> float32 x/2) on a SERVER dataset via '
      'federated_apply; the result is a float32 sequence at SERVER (TFF 0.87 '
      'cannot return a sequence_map result: expected computed by hand)',
      arg=lambda: [np.int32(v) for v in [1, 2, 3, 4, 5]],
      expected_fn=lambda: [np.float32(v / 2) for v in [1, 2, 3, 4, 5]])
def _():
  @tfc(T(np.int32))
  def half(v):
    return tf.cast(v, tf.float32) / 2.0

  @fedc(Q(T(np.int32)))
  def server_fn(ds):
    return tff.sequence_map(half, ds)

  @fedc(F(Q(T(np.int32)), SRV))
  def comp(x):
    return tff.federated_map(server_fn, x)
  return comp


@case('seq_reduce_server_struct',
      'sequence_reduce of a SERVER dataset of <x=float32[2]> elements into a '
      'struct accumulator <total=float32[2],n=int32>',
      arg=lambda: [OD(x=np.array([i, 10 * i], np.float32)) for i in range(1, 5)])
def _():
  elem = S([('x', T(np.float32, [2]))])
  acc = S([('total', T(np.float32, [2])), ('n', T(np.int32))])

  @tfc(acc, elem)
  def step(a, e):
    return OD(total=a['total'] + e['x'], n=a['n'] + 1)

  @tfc
  def zero():
    return OD(total=tf.zeros([2], tf.float32), n=tf.constant(0, tf.int32))

  @fedc(Q(elem))
  def server_fn(ds):
    return tff.sequence_reduce(ds, zero(), step)

  @fedc(F(Q(elem), SRV))
  def comp(x):
    return tff.federated_map(server_fn, x)
  return comp


@case('seq_sum_server',
      'sequence_sum of a SERVER int64 dataset via federated_apply',
      arg=lambda: [np.int64(v) for v in [2**40, 1, 2, 3]],
      expected_fn=lambda: np.int64(2**40 + 6))
def _():
  @fedc(Q(T(np.int64)))
  def server_fn(ds):
    return tff.sequence_sum(ds)

  @fedc(F(Q(T(np.int64)), SRV))
  def comp(x):
    return tff.federated_map(server_fn, x)
  return comp


@case('seq_map_unplaced',
      'sequence_map over an unplaced int32 sequence argument (no federated '
      'values); result is an int32 sequence (TFF 0.87 cannot return a '
      'sequence_map result: expected computed by hand)',
      arg=lambda: [np.int32(v) for v in [3, 1, 4, 1, 5]],
      expected_fn=lambda: [np.int32(v + 10) for v in [3, 1, 4, 1, 5]])
def _():
  @tfc(T(np.int32))
  def plus10(v):
    return v + 10

  @fedc(Q(T(np.int32)))
  def comp(ds):
    return tff.sequence_map(plus10, ds)
  return comp


@case('seq_tf_dataset_out_clients',
      'federated_map of a tf computation ds.map(x*3+1) over CLIENTS int32 '
      'datasets; the result is a sequence per client {int32*}@CLIENTS '
      '(TF-produced datasets can be returned by TFF)',
      arg=lambda: [[np.int32(v) for v in s] for s in _CLIENT_SEQS])
def _():
  @tfc(Q(T(np.int32)))
  def f(ds):
    return ds.map(lambda v: v * 3 + 1)

  @fedc(F(Q(T(np.int32)), C))
  def comp(x):
    return tff.federated_map(f, x)
  return comp


@case('tf_dataset_struct_out',
      'tf computation mapping an unplaced float32[2] dataset to a dataset of '
      'named structs <sum=float32,diff=float32>',
      arg=lambda: [np.array([i, 2 * i], np.float32) for i in range(1, 4)])
def _():
  @tfc(Q(T(np.float32, [2])))
  def comp(ds):
    return ds.map(lambda v: OD(sum=v[0] + v[1], diff=v[0] - v[1]))
  return comp


# --- federated_aggregate -------------------------------------------------------


@case('fed_aggregate_struct_acc',
      'federated_aggregate with a struct accumulator <sum=float32[2],'
      'wsum=float32,n=int32,max=float32> (zero has -inf) and a report '
      'computing <mean=float32[2],n=int32,max=float32> (5 clients)',
      arg=lambda: [OD(v=np.array(v, np.float32), w=np.float32(w)) for v, w in
                   [([1, 2], 1.0), ([3, -1], 2.0), ([0, 0], 0.5),
                    ([-4, 8], 1.5), ([2, 2], 1.0)]])
def _():
  item = S([('v', T(np.float32, [2])), ('w', T(np.float32))])
  acc = S([('sum', T(np.float32, [2])), ('wsum', T(np.float32)),
           ('n', T(np.int32)), ('max', T(np.float32))])

  @tfc
  def zero_fn():
    return OD(sum=tf.zeros([2]), wsum=tf.constant(0.0),
              n=tf.constant(0), max=tf.constant(-np.inf, tf.float32))

  @tfc(acc, item)
  def accumulate(a, x):
    return OD(sum=a['sum'] + x['v'] * x['w'], wsum=a['wsum'] + x['w'],
              n=a['n'] + 1, max=tf.maximum(a['max'], tf.reduce_max(x['v'])))

  @tfc(acc, acc)
  def merge(a, b):
    return OD(sum=a['sum'] + b['sum'], wsum=a['wsum'] + b['wsum'],
              n=a['n'] + b['n'], max=tf.maximum(a['max'], b['max']))

  @tfc(acc)
  def report(a):
    return OD(mean=a['sum'] / a['wsum'], n=a['n'], max=a['max'])

  @fedc(F(item, C))
  def comp(x):
    return tff.federated_aggregate(x, zero_fn(), accumulate, merge, report)
  return comp


@case('fed_aggregate_string_join',
      'federated_aggregate whose accumulate and merge join strings with different '
      'separators (accumulate: acc + "+" + x; merge: a + "|" + b), so the result '
      'shows where partial aggregates were merged; identity report (8 clients)',
      arg=lambda: [np.str_(c) for c in 'abcdefgh'],
      notes='TFF folds accumulate over the clients in client order and never '
            'calls merge here: the expected string has no "|".')
def _():
  text = T(np.str_)

  @tfc
  def zero_fn():
    return tf.constant('')

  @tfc(text, text)
  def accumulate(acc, x):
    return tf.strings.join([acc, x], separator='+')

  @tfc(text, text)
  def merge(a, b):
    return tf.strings.join([a, b], separator='|')

  @tfc(text)
  def report(a):
    return tf.identity(a)

  @fedc(F(text, C))
  def comp(x):
    return tff.federated_aggregate(x, zero_fn(), accumulate, merge, report)
  return comp


# --- TensorFlow computations ----------------------------------------------------


@case('tf_noarg_string',
      'no-arg tf computation returning a UTF-8 string scalar and a string[2] '
      'tensor')
def _():
  @tfc
  def comp():
    return OD(greeting=tf.constant('héllo, wörld ✓'),
              words=tf.constant(['federated', 'línea']))
  return comp


@case('tf_small_dtypes',
      'tf computation on <h=float16[3],u=uint8[4],c=complex64[2]> returning '
      'h*2, u+1 (wraps at 255), c*(1+2j) and |c|',
      arg=lambda: OD(h=np.array([0.5, -1.25, 1000.0], np.float16),
                     u=np.array([0, 1, 128, 255], np.uint8),
                     c=np.array([1 + 1j, -2.5 + 0.5j], np.complex64)))
def _():
  @tfc(OD(h=T(np.float16, [3]), u=T(np.uint8, [4]), c=T(np.complex64, [2])))
  def comp(h, u, c):
    return OD(h2=h * tf.constant(2.0, tf.float16),
              u1=u + tf.constant(1, tf.uint8),
              c2=c * tf.constant(1 + 2j, tf.complex64),
              cabs=tf.abs(c))
  return comp


@case('tf_variable',
      'tf computation with a tf.Variable: v=[1,2,3]; v.assign_add(x); return '
      '2*v (stateless per call: the variable is re-initialized each call)',
      arg=lambda: np.float32(0.5))
def _():
  @tfc(T(np.float32))
  def comp(x):
    v = tf.Variable([1.0, 2.0, 3.0], dtype=tf.float32, name='v')
    with tf.control_dependencies([v.assign_add(tf.fill([3], x))]):
      return v.read_value() * 2.0
  return comp


@case('tf_lookup_table',
      'tf computation using tf.lookup.StaticHashTable (string -> int64, '
      'default -1) on a string[4] argument',
      arg=lambda: np.array([b'apple', b'kiwi', b'cherry', b'banana'],
                           dtype=object))
def _():
  @tfc(T(np.str_, [4]))
  def comp(keys):
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(['apple', 'banana', 'cherry']),
            tf.constant([1, 2, 3], tf.int64)),
        default_value=tf.constant(-1, tf.int64))
    return table.lookup(keys)
  return comp


@case('tf_random_op_seed',
      'tf computation using tf.random.uniform/normal with explicit op seeds '
      '(stateful: values depend on TF\'s session state; recorded as TFF '
      'returned them on the first call) plus tf.random.stateless_uniform '
      '(deterministic)',
      random=True,
      notes='stateful outputs u, n may differ between calls/runtimes; '
            'stateless output s is deterministic')
def _():
  @tfc
  def comp():
    return OD(u=tf.random.uniform([4], seed=42),
              n=tf.random.normal([2], seed=7, dtype=tf.float64),
              s=tf.random.stateless_uniform([3], seed=[1, 2]))
  return comp


# --- heavy hitters (IBLT) ------------------------------------------------------

_IBLT_CLIENTS = [
    [['hello', 'world', 'hello'], ['fed']],
    [['hello', 'tff'], ['world', 'hello']],
    [['fed', 'fed', 'hello']],
    [['world', 'rare']],
]
_IBLT_ORDERED = ('heavy_hitters', 'heavy_hitters_unique_counts',
                 'heavy_hitters_counts')


def _iblt_canonical(tagged):
  """The IBLT result as TFF's test does: rows as a set, no timestamp."""
  server = tagged['federated']['values'][0]
  members = {m['name']: m['value'] for m in server['struct']}
  rows = zip(*(members[k]['value'] for k in _IBLT_ORDERED))
  return (members['clients'], members['num_not_decoded'],
          sorted(tuple(r) for r in rows))


@case('iblt_heavy_hitters',
      'tff.analytics.heavy_hitters.iblt.build_iblt_computation(capacity=8, '
      'string_max_bytes=8, repetitions=3, seed=0) over 4 clients whose '
      'datasets hold batches of strings: the in-memory queue ops '
      '(RandomShuffleQueueV2, QueueEnqueueV2, QueueDequeueV2, QueueSizeV2) '
      'of the IBLT decoder, federated_sum, federated_eval of a timestamp',
      arg=lambda: [[np.array(b, dtype=object) for b in c]
                   for c in _IBLT_CLIENTS],
      random=True, canonical=_iblt_canonical,
      compare={'kind': 'rows_as_set',
               'row_members': list(_IBLT_ORDERED),
               'exact_members': ['clients', 'num_not_decoded'],
               'ignored_members': ['round_timestamp']},
      notes='the decoded rows come in a random order (the decoder drains a '
            'RandomShuffleQueueV2) and round_timestamp is the wall clock: '
            'compare heavy_hitters, heavy_hitters_unique_counts and '
            'heavy_hitters_counts as a set of rows, clients and '
            'num_not_decoded exactly, and ignore round_timestamp')
def _():
  return tff.analytics.heavy_hitters.iblt.build_iblt_computation(
      capacity=8, string_max_bytes=8, repetitions=3, seed=0)


# --- deeply nested -------------------------------------------------------------

_TRACE_DEPTH = 12
_BLOCK_DEPTH = 20


@case('deep_nested_lambdas',
      f'{_TRACE_DEPTH + 1} nested lambdas: {_TRACE_DEPTH} nested traced '
      'federated computations (each a lambda whose body is a block calling '
      'federated_map(+1) and the next level) inside an outer one doing '
      'federated_sum (3 clients). This is the deepest TFF 0.87 can trace: one '
      'more level and TFF\'s own proto parse hits protobuf\'s recursion limit '
      '(about 100 nested messages)',
      arg=lambda: [np.int32(v) for v in [0, 10, 100]])
def _():
  @tfc(T(np.int32))
  def add_one(v):
    return v + 1

  def make(inner):
    @fedc(F(T(np.int32), C))
    def f(x):
      y = tff.federated_map(add_one, x)
      return inner(y) if inner is not None else y
    return f

  level = None
  for _ in range(_TRACE_DEPTH):
    level = make(level)

  @fedc(F(T(np.int32), C))
  def comp(x):
    return tff.federated_sum(level(x))
  return comp


@case('deep_nested_blocks',
      f'{_BLOCK_DEPTH} blocks nested in each other\'s result (built from '
      'building blocks); block k binds y_k = (z -> federated_map(+k, z))'
      '(y_{k-1}), an inline lambda; the innermost result is '
      'federated_sum(y_20) (3 clients)',
      arg=lambda: [np.int32(v) for v in [0, 10, 100]])
def _():
  fed_t = F(T(np.int32), C)
  adders = []

  def make_adder(k):
    @tfc(T(np.int32))
    def add_k(v):
      return v + k
    return add_k

  for k in range(1, _BLOCK_DEPTH + 1):
    adders.append(make_adder(k).to_building_block())
  result = bbf.create_federated_sum(bb.Reference(f'y{_BLOCK_DEPTH}', fed_t))
  for k in range(_BLOCK_DEPTH, 0, -1):
    z = bb.Reference(f'z{k}', fed_t)
    lam = bb.Lambda(f'z{k}', fed_t, bbf.create_federated_map(adders[k - 1], z))
    prev = bb.Reference(f'y{k - 1}' if k > 1 else 'x', fed_t)
    result = bb.Block([(f'y{k}', bb.Call(lam, prev))], result)
  return tff.framework.ConcreteComputation.from_building_block(
      bb.Lambda('x', fed_t, result))


# --- README examples ------------------------------------------------------------

EXAMPLES: list[Case] = []


def example(name, description, **kw):
  def deco(build):
    EXAMPLES.append(Case(name=name, description=description, build=build,
                         **kw))
    return build
  return deco


@example('mean_of_clients',
         'federated_mean of one float32 reading per client, over 10 clients '
         '({float32}@CLIENTS -> float32@SERVER)',
         arg=lambda: [np.float32(v) for v in
                      [21.5, 19.0, 23.25, 20.0, 22.5, 18.75, 24.0, 21.0, 20.5,
                       19.5]])
def _():
  @fedc(F(T(np.float32), C))
  def mean_of_clients(readings):
    return tff.federated_mean(readings)
  return mean_of_clients


def _fedavg_arg():
  r = rng(2024)
  w_true = np.array([2.0, -1.0, 0.5], np.float32)
  clients = []
  for _ in range(5):
    x = np.round(r.normal(size=(8, 3)), 3).astype(np.float32)
    y = (x @ w_true + 1.0 + 0.1 * r.normal(size=8)).astype(np.float32)
    clients.append(OD(x=x, y=np.round(y, 3).astype(np.float32)))
  return OD(model=OD(w=np.zeros([3], np.float32), b=np.float32(0.0)),
            data=clients)


@example('fedavg_round',
         'one FedAvg round for linear regression: broadcast the SERVER model, '
         'each of 5 clients runs 5 local gradient steps on its 8 examples, '
         'the SERVER gets the example-weighted mean model and mean loss',
         arg=_fedavg_arg)
def _():
  model_t = S([('w', T(np.float32, [3])), ('b', T(np.float32))])
  data_t = S([('x', T(np.float32, [8, 3])), ('y', T(np.float32, [8]))])

  @tfc(model_t, data_t)
  def client_update(model, data):
    w, b = model['w'], model['b']
    lr = 0.1
    for _ in range(5):
      err = tf.linalg.matvec(data['x'], w) + b - data['y']
      w = w - lr * tf.reduce_mean(data['x'] * err[:, None], axis=0)
      b = b - lr * tf.reduce_mean(err)
    err = tf.linalg.matvec(data['x'], w) + b - data['y']
    loss = tf.reduce_mean(err * err)
    return OD(model=OD(w=w, b=b), loss=loss,
              n=tf.cast(tf.shape(data['y'])[0], tf.float32))

  @fedc(OD(model=F(model_t, SRV), data=F(data_t, C)))
  def fedavg_round(model, data):
    out = tff.federated_map(
        client_update, (tff.federated_broadcast(model), data))
    new_model = tff.federated_mean(out.model, weight=out.n)
    loss = tff.federated_mean(out.loss, weight=out.n)
    return OD(model=new_model, loss=loss)
  return fedavg_round


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def _timing(kind, ndc, comp, arg, has_arg, n):
  run_in(kind, ndc, comp, arg, has_arg)  # warm-up
  ts = []
  for _ in range(n):
    t0 = time.perf_counter()
    run_in(kind, ndc, comp, arg, has_arg)
    ts.append(time.perf_counter() - t0)
  return ts


def generate_case(c: Case, outdir: str, timing_runs: int, example_mode=False):
  d = os.path.join(outdir, c.name)
  os.makedirs(d, exist_ok=True)
  for f in ('comp.pb', 'native_comp.pb', 'arg.pb', 'expected.pb',
            'expected.json', 'meta.json', 'arg.json'):
    if os.path.exists(os.path.join(d, f)):
      os.remove(os.path.join(d, f))
  comp = c.build()
  ts = comp.type_signature
  param_t, result_t = ts.parameter, ts.result
  has_arg = param_t is not None
  comp_pb = tff.framework.serialize_computation(comp)
  comp_bytes = comp_pb.SerializeToString()
  intrinsics, depths = count_intrinsics(comp_pb)

  # Argument.
  arg = c.arg() if c.arg is not None else None
  arg_bytes = b''
  if has_arg:
    arg_pb, _ = tff.framework.serialize_value(arg, param_t)
    arg_bytes = arg_pb.SerializeToString()
  if has_clients_value(param_t):
    num_clients = count_clients(arg, param_t)
    clients_source = 'inferred from argument (len of CLIENTS lists)'
  elif c.default_num_clients:
    num_clients = c.default_num_clients
    clients_source = ('explicit default_num_clients (not inferable from the '
                      'argument)')
  else:
    num_clients = 0
    clients_source = 'n/a (no CLIENTS values)'
  ndc = 0 if has_clients_value(param_t) else c.default_num_clients

  # Compiled (native) form.
  native_bytes = None
  native_error = None
  try:
    native = compile_native(comp, c.context)
    native_bytes = tff.framework.serialize_computation(native).SerializeToString()
    if native_bytes == comp_bytes and not example_mode and c.expected_fn:
      # The compiler swallows ValueErrors and returns its input unchanged.
      native_error = 'compiler returned the computation unchanged'
  except Exception as e:  # pylint: disable=broad-except
    native_error = f'{type(e).__name__}: {e}'
    native_bytes = None

  # Run in TFF.
  expected_source = 'tff'
  run_error = None
  first_call_s = None
  try:
    t0 = time.perf_counter()
    result = run_in(c.context, ndc, comp, arg, has_arg)
    first_call_s = time.perf_counter() - t0
    try:
      py_tagged(result, result_t)
    except Exception as e:  # pylint: disable=broad-except
      raise TypeError(
          f'TFF returned a {type(result).__name__} object (the unevaluated '
          f'computation) instead of a value of type {result_t}') from e
  except Exception as e:  # pylint: disable=broad-except
    detail = e.details() if hasattr(e, 'details') else str(e)
    run_error = f'{type(e).__name__}: {detail[:2000]}'
    if c.expected_fn is None:
      raise
    result = c.expected_fn()
    expected_source = 'numpy by hand'
  if expected_source == 'tff' and c.expected_fn is not None:
    # Cross-check the hand-computed value too.
    if not tagged_equal(py_tagged(result, result_t),
                        py_tagged(c.expected_fn(), result_t)):
      raise AssertionError(f'{c.name}: TFF result != hand-computed expected')

  expected_pb, _ = tff.framework.serialize_value(result, result_t)
  expected_bytes = expected_pb.SerializeToString()
  expected_tagged = value_pb_tagged(expected_pb, result_t)

  # Round trip: deserialize everything and rerun (comp.pb and native_comp.pb).
  roundtrip_ok, roundtrip_error = None, None
  native_roundtrip_ok = None
  if expected_source == 'tff':
    try:
      p = computation_pb2.Computation()
      p.ParseFromString(comp_bytes)
      comp2 = tff.framework.deserialize_computation(p)
      arg2 = None
      arg_note = None
      if has_arg:
        v = executor_pb2.Value()
        v.ParseFromString(arg_bytes)
        try:
          arg2, _ = tff.framework.deserialize_value(v, param_t)
        except Exception as e:  # pylint: disable=broad-except
          arg_note = (f'TFF cannot deserialize its own arg.pb '
                      f'({type(e).__name__}: {e}); rerun used the in-memory '
                      'argument')
          arg2 = arg
      r2 = run_in(c.context, ndc, comp2, arg2, has_arg)
      e = executor_pb2.Value()
      e.ParseFromString(expected_bytes)
      got = py_tagged(r2, result_t)
      want = value_pb_tagged(e, result_t)
      if c.canonical is not None:
        roundtrip_ok = c.canonical(got) == c.canonical(want)
        if not roundtrip_ok:
          roundtrip_error = f'rerun gave {json.dumps(got)[:500]}'
      elif c.random:
        # Only the deterministic (stateless) element is compared.
        det = [x for x in got['struct'] if x['name'] == 's']
        det_w = [x for x in want['struct'] if x['name'] == 's']
        roundtrip_ok = tagged_equal(det, det_w)
        roundtrip_error = ('stateful random outputs are not compared'
                           if roundtrip_ok else 'stateless output differs')
      else:
        roundtrip_ok = tagged_equal(got, want)
        if not roundtrip_ok:
          roundtrip_error = f'rerun gave {json.dumps(got)[:500]}'
      if arg_note:
        roundtrip_error = arg_note if roundtrip_ok else (
            f'{roundtrip_error}; {arg_note}')
      if native_bytes is not None:
        p = computation_pb2.Computation()
        p.ParseFromString(native_bytes)
        ncomp = tff.framework.deserialize_computation(p)
        r3 = run_in(c.context, ndc, ncomp, arg2, has_arg)
        got3 = py_tagged(r3, result_t)
        if c.canonical is not None:
          native_roundtrip_ok = c.canonical(got3) == c.canonical(want)
        else:
          native_roundtrip_ok = (True if c.random else
                                 tagged_equal(got3, want))
    except Exception as e:  # pylint: disable=broad-except
      roundtrip_ok = False
      roundtrip_error = f'{type(e).__name__}: {str(e)[:1000]}'
  else:
    roundtrip_error = 'not run: TFF cannot execute this computation'

  timing = None
  if expected_source == 'tff' and timing_runs > 0:
    tt = _timing(c.context, ndc, comp, arg, has_arg, timing_runs)
    timing = {'first_call_s': first_call_s, 'n': timing_runs,
              'median_s': statistics.median(tt), 'min_s': min(tt),
              'max_s': max(tt), 'note': TIMING_NOTE}

  meta = OD()
  meta['name'] = c.name
  meta['description'] = c.description
  meta['type_signature'] = str(ts)
  meta['parameter_type'] = str(param_t) if has_arg else None
  meta['result_type'] = str(result_t)
  meta['has_arg'] = has_arg
  meta['computation_kind'] = comp_pb.WhichOneof('computation')
  meta['num_clients'] = num_clients
  meta['clients_source'] = clients_source
  meta['tff_version'] = tff.__version__
  meta['tf_version'] = tf.__version__
  meta['runtime'] = RUNTIME_TEST if c.context == 'test' else RUNTIME_NATIVE
  meta['timing'] = timing
  meta['sizes'] = OD(comp_pb=len(comp_bytes), arg_pb=len(arg_bytes),
                     expected_pb=len(expected_bytes),
                     native_comp_pb=len(native_bytes) if native_bytes else 0)
  meta['roundtrip_ok'] = roundtrip_ok
  meta['roundtrip_error'] = roundtrip_error
  meta['native_roundtrip_ok'] = native_roundtrip_ok
  meta['intrinsics'] = intrinsics
  meta['max_lambda_depth'] = depths['lambda']
  meta['max_block_depth'] = depths['block']
  meta['max_proto_message_depth'] = depths['message']
  meta['expected_source'] = expected_source
  if run_error:
    meta['tff_error'] = run_error
  if native_bytes is None:
    meta['native_comp_error'] = native_error
  elif native_error:
    meta['native_comp_note'] = native_error
  meta['native_comp_compiler'] = (
      'tff.backends.test compiler: replace_secure_intrinsics_with_bodies + '
      'native desugar_and_transform_to_native' if c.context == 'test' else
      'tff.backends.native.compiler.desugar_and_transform_to_native')
  meta['random'] = c.random
  if c.compare:
    meta['compare'] = c.compare
  if c.notes:
    meta['notes'] = c.notes

  with open(os.path.join(d, 'comp.pb'), 'wb') as f:
    f.write(comp_bytes)
  if native_bytes is not None and not example_mode:
    with open(os.path.join(d, 'native_comp.pb'), 'wb') as f:
      f.write(native_bytes)
  if has_arg:
    with open(os.path.join(d, 'arg.pb'), 'wb') as f:
      f.write(arg_bytes)
    if example_mode:
      v = executor_pb2.Value()
      v.ParseFromString(arg_bytes)
      a2, _ = tff.framework.deserialize_value(v, param_t)
      write_plain_json(os.path.join(d, 'arg.json'), py_plain(a2, param_t))
  with open(os.path.join(d, 'expected.pb'), 'wb') as f:
    f.write(expected_bytes)
  write_json(os.path.join(d, 'expected.json'),
             OD(type=str(result_t), value=expected_tagged))
  write_json(os.path.join(d, 'meta.json'), meta)
  return meta


def generate_corpus_args(corpus: str, outdir: str, only=None):
  """arg.plain.json + arg.npz for each public corpus case with an arg.pb."""
  report = []
  for name in sorted(os.listdir(corpus)):
    src = os.path.join(corpus, name)
    if only and name not in only:
      continue
    if not os.path.exists(os.path.join(src, 'arg.pb')):
      continue
    p = computation_pb2.Computation()
    with open(os.path.join(src, 'comp.pb'), 'rb') as f:
      p.ParseFromString(f.read())
    param_t = type_serialization.deserialize_type(p.type).parameter
    v = executor_pb2.Value()
    with open(os.path.join(src, 'arg.pb'), 'rb') as f:
      v.ParseFromString(f.read())
    value, _ = tff.framework.deserialize_value(v, param_t)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    plain = py_plain(value, param_t)
    write_plain_json(os.path.join(d, 'arg.plain.json'), plain)
    # Self-check 1: the plain JSON converts back to an equal Value.
    back = plain_to_py(json.loads(json.dumps(plain)), param_t)
    ok_json = tagged_equal(py_tagged(back, param_t), py_tagged(value, param_t),
                           rtol=0)
    arrays = npz_arrays(value, param_t)
    npz_path = os.path.join(d, 'arg.npz')
    if os.path.exists(npz_path):
      os.remove(npz_path)
    if arrays is not None:
      buf = io.BytesIO()
      np.savez(buf, **arrays)
      with open(npz_path, 'wb') as f:
        f.write(buf.getvalue())
    report.append((name, str(param_t), ok_json,
                   None if arrays is None else sorted(
                       (k, a.shape, str(a.dtype)) for k, a in arrays.items())))
  return report


def main(argv):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('outdir', help='where case folders go (examples/cases)')
  ap.add_argument('--examples-dir', default=None,
                  help='also write the README examples here (examples/)')
  ap.add_argument('--corpus-args-dir', default=None,
                  help='also write plain JSON/npz args for the public corpus')
  ap.add_argument('--corpus', default=os.environ.get('TFFEXEC_CORPUS'),
                  help='the public corpus folder, read by --corpus-args-dir '
                       '(default: $TFFEXEC_CORPUS)')
  ap.add_argument('--only', nargs='*', default=None, help='case names')
  ap.add_argument('--timing-runs', type=int, default=10)
  ap.add_argument('--no-cases', action='store_true')
  args = ap.parse_args(argv)
  if args.corpus_args_dir and not args.corpus:
    ap.error('--corpus-args-dir needs the public corpus: pass --corpus DIR '
             'or set TFFEXEC_CORPUS')

  failures = []
  if not args.no_cases:
    os.makedirs(args.outdir, exist_ok=True)
    for c in CASES:
      if args.only and c.name not in args.only:
        continue
      try:
        m = generate_case(c, args.outdir, args.timing_runs)
        print(f'[case] {c.name}: {m["type_signature"]} source='
              f'{m["expected_source"]} roundtrip={m["roundtrip_ok"]} '
              f'native={m["native_roundtrip_ok"]} intrinsics={m["intrinsics"]}',
              flush=True)
        if m.get('tff_error'):
          print(f'   tff_error: {m["tff_error"][:300]}', flush=True)
        if m['roundtrip_ok'] is False:
          failures.append((c.name, m['roundtrip_error']))
      except Exception as e:  # pylint: disable=broad-except
        traceback.print_exc()
        failures.append((c.name, f'{type(e).__name__}: {e}'))
        print(f'[FAIL] {c.name}: {type(e).__name__}: {str(e)[:500]}',
              flush=True)
  if args.examples_dir:
    for c in EXAMPLES:
      if args.only and c.name not in args.only:
        continue
      try:
        m = generate_case(c, args.examples_dir, args.timing_runs,
                          example_mode=True)
        print(f'[example] {c.name}: roundtrip={m["roundtrip_ok"]}', flush=True)
        if m['roundtrip_ok'] is False:
          failures.append((c.name, m['roundtrip_error']))
      except Exception as e:  # pylint: disable=broad-except
        traceback.print_exc()
        failures.append((c.name, f'{type(e).__name__}: {e}'))
  if args.corpus_args_dir:
    for name, t, ok, arrs in generate_corpus_args(
        args.corpus, args.corpus_args_dir):
      print(f'[corpus_args] {name}: {t} json_roundtrip={ok} '
            f'npz={arrs}', flush=True)
      if not ok:
        failures.append((name, 'plain JSON does not round-trip'))
  print(f'DONE failures={len(failures)}', flush=True)
  for n, e in failures:
    print(f'  {n}: {e}', flush=True)
  return 1 if failures else 0


def run_script(main) -> None:
  """Runs a generator's `main(argv)` and exits with its status, killing TFF's worker_binary
  children first (they hold stdout/stderr; a normal exit could wait on them)."""
  rc = 1
  try:
    rc = main(sys.argv[1:])
  except SystemExit as e:  # argparse: usage errors (2) and --help (0)
    rc = e.code if isinstance(e.code, int) else 2
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    kill_worker_children()
    os._exit(rc)  # pylint: disable=protected-access


if __name__ == '__main__':
  run_script(main)
