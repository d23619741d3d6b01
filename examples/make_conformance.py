"""Write the conformance cases (examples/conformance/) with real TFF 0.87 (not tffexec).

The repository's own stand-in for the public corpus: one case for each of the corpus's 28 cases,
under the same folder name and with the same type signature, client count and meaning, but with
this script's computations and its own seeded data. Two more cases run a tff.learning FedAvg
process built from a Keras model (`learn_keras_fedavg_init`, `learn_keras_fedavg_next`).

Run it under the TFF 0.87 peer virtualenv (see examples/README.md), with the output sent to a file
(TFF's worker_binary inherits stdout/stderr, so a pipe can hang):

    "$PEER/bin/python" examples/make_conformance.py examples/conformance \
        > make_conformance.log 2>&1

(`--only NAME ...` redoes some cases; `--timing-runs 0` skips the timing).

Each case folder is in exactly the corpus format, written by make_cases.py's machinery:
comp.pb, native_comp.pb, arg.pb (when the computation takes an argument), expected.pb,
expected.json and meta.json. meta.json has exactly the corpus's keys. `wire_result_equals_expected`
is observed, not predicted: the Value that TFF's worker returned over gRPC (names and federated
member types dropped) is captured and compared with expected.pb.

The script exits non-zero when a case fails to build, to run, or to give the same result again
from its deserialized comp.pb/native_comp.pb and arg.pb. Running it again gives the same data
(fixed seeds); comp.pb/native_comp.pb bytes and the timings can differ (TFF generates names).
"""

import argparse
import collections
import json
import os
import sys
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_cases as mc  # noqa: E402  (imports TFF 0.87 and TensorFlow, kills workers at exit)
import make_iterate_examples as mie  # noqa: E402  (Keras model_fn for tff.learning)

from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub  # noqa: E402

tf = mc.tf
tff = mc.tff
T, F, S, Q = mc.T, mc.F, mc.S, mc.Q
C, SRV = mc.C, mc.SRV
tfc, fedc = mc.tfc, mc.fedc
OD = collections.OrderedDict
Case = mc.Case

#: meta.json keys, in the public corpus's order.
META_KEYS = ('name', 'description', 'type_signature', 'parameter_type', 'result_type', 'has_arg',
             'computation_kind', 'num_clients', 'clients_source', 'tff_version', 'tf_version',
             'runtime', 'timing', 'sizes', 'roundtrip_ok', 'roundtrip_error',
             'wire_result_equals_expected')


# ---------------------------------------------------------------------------
# The Value TFF's worker really returned (before Python restores names and types)
# ---------------------------------------------------------------------------

_WIRE = {'last': None}
_original_compute = remote_executor_grpc_stub.RemoteExecutorGrpcStub.compute


def _recording_compute(self, request):
  response = _original_compute(self, request)
  _WIRE['last'] = response.value
  return response


remote_executor_grpc_stub.RemoteExecutorGrpcStub.compute = _recording_compute


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

CASES: list[Case] = []


def case(name, description, **kw):
  def deco(build):
    CASES.append(Case(name=name, description=description, build=build, **kw))
    return build
  return deco


def rng(seed):
  return np.random.default_rng(seed)


def f32s(seed, n, scale=1.0, shape=()):
  """n float32 values (one per client) rounded to 3 decimals, so JSON renders them short."""
  r = rng(seed)
  return [np.round(r.normal(size=shape) * scale, 3).astype(np.float32)[()] for _ in range(n)]


def i32s(seed, n, low=-20, high=50, shape=()):
  r = rng(seed)
  return [r.integers(low, high, size=shape).astype(np.int32)[()] for _ in range(n)]


# --- federated intrinsics -----------------------------------------------------------------------


@case('fed_aggregate_custom',
      'federated_aggregate with a custom accumulator <sum,count,max> (zero, accumulate, merge) '
      'and a report giving <mean=sum/count,max> of one float32 per client (5 clients)',
      arg=lambda: f32s(101, 5, scale=4.0))
def _():
  acc_t = S([('sum', T(np.float32)), ('count', T(np.float32)), ('max', T(np.float32))])

  @tfc
  def zero():
    return OD(sum=tf.constant(0.0), count=tf.constant(0.0),
              max=tf.constant(-np.inf, tf.float32))

  @tfc(acc_t, T(np.float32))
  def accumulate(acc, x):
    return OD(sum=acc['sum'] + x, count=acc['count'] + 1.0, max=tf.maximum(acc['max'], x))

  @tfc(acc_t, acc_t)
  def merge(a, b):
    return OD(sum=a['sum'] + b['sum'], count=a['count'] + b['count'],
              max=tf.maximum(a['max'], b['max']))

  @tfc(acc_t)
  def report(acc):
    return OD(mean=acc['sum'] / acc['count'], max=acc['max'])

  @fedc(F(T(np.float32), C))
  def comp(x):
    return tff.federated_aggregate(x, zero(), accumulate, merge, report)
  return comp


@case('fed_broadcast_map_sum',
      'federated_broadcast of an int32 SERVER value, federated_map of s*c+1 over the zipped '
      '(broadcast, CLIENTS value) pairs, then federated_sum (5 clients)',
      arg=lambda: OD(s=np.int32(3), c=i32s(102, 5)))
def _():
  @tfc(T(np.int32), T(np.int32))
  def affine(s, c):
    return s * c + 1

  @fedc(OD(s=F(T(np.int32), SRV), c=F(T(np.int32), C)))
  def comp(s, c):
    pairs = tff.federated_zip((tff.federated_broadcast(s), c))
    return tff.federated_sum(tff.federated_map(affine, pairs))
  return comp


@case('fed_eval_clients_sum',
      'federated_eval at CLIENTS of a no-arg tf computation returning int32 3, then '
      'federated_sum; no argument, so the client count (4) is given explicitly',
      default_num_clients=4)
def _():
  @tfc
  def three():
    return tf.constant(3, tf.int32)

  @fedc
  def comp():
    return tff.federated_sum(tff.federated_eval(three, C))
  return comp


@case('fed_eval_server',
      'federated_eval at SERVER of a no-arg tf computation computing a float32 (sqrt(2)*1.5)')
def _():
  @tfc
  def value():
    return tf.sqrt(tf.constant(2.0)) * 1.5

  @fedc
  def comp():
    return tff.federated_eval(value, SRV)
  return comp


@case('fed_mean_unweighted',
      'federated_mean (unweighted) of one float32 per client (5 clients)',
      arg=lambda: f32s(103, 5, scale=10.0))
def _():
  @fedc(F(T(np.float32), C))
  def comp(x):
    return tff.federated_mean(x)
  return comp


@case('fed_mean_weighted',
      'federated_mean of one float32 per client, weighted by a float32 CLIENTS weight '
      '(5 clients)',
      arg=lambda: OD(x=f32s(104, 5, scale=10.0),
                     w=[np.float32(v) for v in [1.0, 0.5, 2.0, 0.0, 3.5]]))
def _():
  @fedc(OD(x=F(T(np.float32), C), w=F(T(np.float32), C)))
  def comp(x, w):
    return tff.federated_mean(x, weight=w)
  return comp


@case('fed_named_struct',
      'named struct of federated values in and out: <a={int32}@CLIENTS,b=float32@SERVER> -> '
      '<total=federated_sum(a), b passed through, doubled=federated_map(2*a)> (5 clients)',
      arg=lambda: OD(a=i32s(105, 5), b=np.float32(-1.75)))
def _():
  @tfc(T(np.int32))
  def double(v):
    return 2 * v

  @fedc(OD(a=F(T(np.int32), C), b=F(T(np.float32), SRV)))
  def comp(a, b):
    return OD(total=tff.federated_sum(a), b=b, doubled=tff.federated_map(double, a))
  return comp


@case('fed_secure_sum',
      'federated_secure_sum(x, max_input=100) of int32 at CLIENTS (5 clients). Run in the '
      'tff.backends.test context (the native runtime rejects secure intrinsics); '
      'native_comp.pb is the test context\'s compiled form',
      arg=lambda: i32s(106, 5, low=0, high=101), context='test')
def _():
  @fedc(F(T(np.int32), C))
  def comp(x):
    return tff.federated_secure_sum(x, 100)
  return comp


def _select_arg():
  r = rng(107)
  return OD(keys=[r.integers(0, 4, size=2).astype(np.int32) for _ in range(5)],
            table=np.round(r.normal(size=(4, 3)), 2).astype(np.float32))


@case('fed_select',
      'federated_select: each of 5 clients picks 2 rows (int32 keys, max_key 3) of a SERVER '
      'float32[4,3] table; each client\'s selected rows are summed to one float32[3]',
      arg=_select_arg)
def _():
  @tfc(T(np.float32, [4, 3]), T(np.int32))
  def select_row(table, key):
    return tf.gather(table, key)

  @tfc(Q(T(np.float32, [3])))
  def sum_rows(rows):
    return rows.reduce(tf.zeros([3], tf.float32), lambda acc, row: acc + row)

  @tfc
  def max_key():
    return tf.constant(3, tf.int32)

  @fedc(OD(keys=F(T(np.int32, [2]), C), table=F(T(np.float32, [4, 3]), SRV)))
  def comp(keys, table):
    rows = tff.federated_select(keys, tff.federated_eval(max_key, SRV), table, select_row)
    return tff.federated_map(sum_rows, rows)
  return comp


@case('fed_sum_float32',
      'federated_sum of float32[2] at CLIENTS (5 clients)',
      arg=lambda: f32s(108, 5, scale=3.0, shape=(2,)))
def _():
  @fedc(F(T(np.float32, [2]), C))
  def comp(x):
    return tff.federated_sum(x)
  return comp


@case('fed_sum_int32',
      'federated_sum of int32 at CLIENTS (5 clients)',
      arg=lambda: i32s(109, 5))
def _():
  @fedc(F(T(np.int32), C))
  def comp(x):
    return tff.federated_sum(x)
  return comp


@case('fed_value_clients_sum',
      'federated_value(2) at CLIENTS then federated_sum; no argument, so the client count (7) '
      'is given explicitly',
      default_num_clients=7)
def _():
  @fedc
  def comp():
    return tff.federated_sum(tff.federated_value(np.int32(2), C))
  return comp


@case('fed_value_server',
      'federated_value of an int32 constant (-17) at SERVER (no argument)')
def _():
  @fedc
  def comp():
    return tff.federated_value(np.int32(-17), SRV)
  return comp


@case('fed_zip_clients',
      'federated_zip of two CLIENTS values <int32, float32>, then federated_map of a*b-1; the '
      'result stays at CLIENTS (5 clients)',
      arg=lambda: OD(a=i32s(110, 5, low=-5, high=6), b=f32s(111, 5)))
def _():
  @tfc(T(np.int32), T(np.float32))
  def f(a, b):
    return tf.cast(a, tf.float32) * b - 1.0

  @fedc(OD(a=F(T(np.int32), C), b=F(T(np.float32), C)))
  def comp(a, b):
    return tff.federated_map(f, tff.federated_zip((a, b)))
  return comp


# --- hand-written FedAvg ------------------------------------------------------------------------

_LOGREG_FEATURES, _LOGREG_CLASSES = 4, 3
_LOGREG_MODEL_T = S([('w', T(np.float32, [_LOGREG_FEATURES, _LOGREG_CLASSES])),
                     ('b', T(np.float32, [_LOGREG_CLASSES]))])
_LOGREG_BATCH_T = S([('x', T(np.float32, [None, _LOGREG_FEATURES])), ('y', T(np.int32, [None]))])


def _softmax_sgd_step(model, x, y, lr):
  """One SGD step of softmax regression, with the closed-form cross-entropy gradient."""
  w, b = model['w'], model['b']
  probs = tf.nn.softmax(tf.matmul(x, w) + b)
  delta = probs - tf.one_hot(y, tf.shape(w)[1], dtype=tf.float32)
  n = tf.cast(tf.shape(x)[0], tf.float32)
  return OD(w=w - lr * tf.matmul(x, delta, transpose_a=True) / n,
            b=b - lr * tf.reduce_sum(delta, axis=0) / n)


@case('learn_fedavg_init',
      'hand-written FedAvg initialize (no argument): federated_eval at SERVER of a tf '
      'computation giving the zero model <w=float32[4,3],b=float32[3]>')
def _():
  @tfc
  def zeros_model():
    return OD(w=tf.zeros([_LOGREG_FEATURES, _LOGREG_CLASSES]), b=tf.zeros([_LOGREG_CLASSES]))

  @fedc
  def initialize():
    return tff.federated_eval(zeros_model, SRV)
  return initialize


def _logreg_client_data():
  r = rng(112)
  centres = r.normal(0.0, 2.0, size=(_LOGREG_CLASSES, _LOGREG_FEATURES))
  datasets = []
  for _ in range(4):
    y = r.integers(0, _LOGREG_CLASSES, size=12).astype(np.int32)
    x = np.round(centres[y] + r.normal(size=(12, _LOGREG_FEATURES)), 3).astype(np.float32)
    datasets.append(tf.data.Dataset.from_tensor_slices(OD(x=x, y=y)).batch(5))
  return datasets


@case('learn_fedavg_logreg_round',
      'one round of hand-written FedAvg for 4-feature 3-class softmax regression: the SERVER '
      'model is broadcast, each of 4 clients runs 1 local epoch of SGD (lr 0.1) over its 12 '
      'examples in tf.data batches of 5, the SERVER gets the example-weighted mean model; '
      'returns (new model @SERVER, total examples @SERVER)',
      arg=lambda: OD(server_model=OD(w=np.zeros([4, 3], np.float32), b=np.zeros([3], np.float32)),
                     client_data=_logreg_client_data()))
def _():
  @tfc(_LOGREG_MODEL_T, Q(_LOGREG_BATCH_T))
  def client_update(model, batches):
    def step(state, batch):
      new_model = _softmax_sgd_step(state['model'], batch['x'], batch['y'], 0.1)
      return OD(model=new_model, n=state['n'] + tf.cast(tf.shape(batch['y'])[0], tf.float32))
    start = OD(model=OD(w=model['w'], b=model['b']), n=tf.constant(0.0))
    out = batches.reduce(start, step)
    return OD(model=out['model'], n=out['n'])

  @fedc(OD(server_model=F(_LOGREG_MODEL_T, SRV), client_data=F(Q(_LOGREG_BATCH_T), C)))
  def fedavg_round(server_model, client_data):
    updates = tff.federated_map(client_update,
                                (tff.federated_broadcast(server_model), client_data))
    new_model = tff.federated_mean(updates.model, weight=updates.n)
    return new_model, tff.federated_sum(updates.n)
  return fedavg_round


_MNIST_IN, _MNIST_OUT, _MNIST_EXAMPLES, _MNIST_BATCH = 784, 10, 100, 20


@case('scale_fedavg_784x10_100clients_seeded',
      'FedAvg round of a linear softmax model 784->10 over 100 clients; each client makes its '
      '100 examples in-graph from its int32 seed (tf.random.stateless_normal inputs, labels '
      'from a fixed stateless random teacher) to keep the case small, and runs 1 epoch of SGD '
      '(batch 20, lr 0.1); returns (example-weighted mean model @SERVER, total examples @SERVER)',
      arg=lambda: OD(server_model=OD(w=np.zeros([784, 10], np.float32),
                                     b=np.zeros([10], np.float32)),
                     client_data=[np.int32(s) for s in
                                  rng(113).integers(0, 2**31 - 1, size=100)]))
def _():
  model_t = S([('w', T(np.float32, [_MNIST_IN, _MNIST_OUT])), ('b', T(np.float32, [_MNIST_OUT]))])

  @tfc(model_t, T(np.int32))
  def client_update(model, seed):
    x = tf.random.stateless_normal([_MNIST_EXAMPLES, _MNIST_IN], seed=tf.stack([seed, 0]))
    teacher = tf.random.stateless_normal([_MNIST_IN, _MNIST_OUT], seed=[20240, 7])
    y = tf.argmax(tf.matmul(x, teacher), axis=1, output_type=tf.int32)
    for start in range(0, _MNIST_EXAMPLES, _MNIST_BATCH):
      model = _softmax_sgd_step(model, x[start:start + _MNIST_BATCH],
                                y[start:start + _MNIST_BATCH], 0.1)
    return OD(model=model, n=tf.constant(float(_MNIST_EXAMPLES)))

  @fedc(OD(server_model=F(model_t, SRV), client_data=F(T(np.int32), C)))
  def fedavg_round(server_model, client_data):
    updates = tff.federated_map(client_update,
                                (tff.federated_broadcast(server_model), client_data))
    return (tff.federated_mean(updates.model, weight=updates.n),
            tff.federated_sum(updates.n))
  return fedavg_round


# --- scale: map + mean over many clients -----------------------------------------------------


def _scale_map_mean(n: int):
  @case(f'scale_map_mean_{n}',
        f'federated_map of tanh(2x+1) on float32[16] over {n} clients, then federated_mean',
        arg=lambda: [a.astype(np.float32) for a in rng(114 + n).uniform(-1, 1, size=(n, 16))])
  def _():
    @tfc(T(np.float32, [16]))
    def squash(x):
      return tf.tanh(2.0 * x + 1.0)

    @fedc(F(T(np.float32, [16]), C))
    def comp(x):
      return tff.federated_mean(tff.federated_map(squash, x))
    return comp


for _n in (10, 100, 1000):
  _scale_map_mean(_n)


# --- sequences ----------------------------------------------------------------------------------

_SEQS = [[3, 1, 4, 1, 5], [9, 2, 6], [5, 3, 5, 8, 9, 7], [9], [3, 2, 3, 8]]


@case('seq_sequence_reduce_intrinsic',
      'the sequence_reduce intrinsic (sum, zero 0) inside a federated computation mapped over '
      'each client\'s int32 sequence, then federated_sum (5 clients)',
      arg=lambda: [[np.int32(v) for v in s] for s in _SEQS])
def _():
  @tfc(T(np.int32), T(np.int32))
  def add(a, b):
    return a + b

  @fedc(Q(T(np.int32)))
  def client_total(ds):
    return tff.sequence_reduce(ds, np.int32(0), add)

  @fedc(F(Q(T(np.int32)), C))
  def comp(x):
    return tff.federated_sum(tff.federated_map(client_total, x))
  return comp


@case('seq_tf_reduce_then_sum',
      'a tf computation reducing each client\'s int32 tf.data sequence (sum of squares) with '
      'Dataset.reduce, federated_map, then federated_sum (5 clients)',
      arg=lambda: [[np.int32(v) for v in s] for s in _SEQS])
def _():
  @tfc(Q(T(np.int32)))
  def sum_of_squares(ds):
    return ds.reduce(tf.constant(0, tf.int32), lambda acc, v: acc + v * v)

  @fedc(F(Q(T(np.int32)), C))
  def comp(x):
    return tff.federated_sum(tff.federated_map(sum_of_squares, x))
  return comp


# --- TensorFlow computations --------------------------------------------------------------------


@case('tf_add_int32', 'tf computation adding two int32 scalars',
      arg=lambda: OD(x=np.int32(1234), y=np.int32(-34)))
def _():
  @tfc(OD(x=T(np.int32), y=T(np.int32)))
  def comp(x, y):
    return x + y
  return comp


@case('tf_dtypes_i64_f64_bool',
      'tf computation over int64, float64 and bool tensors: returns <x*3-2^41, y/3, not z, '
      'float64(x)*y> (int64 values beyond 2^32)',
      arg=lambda: OD(x=np.array([2**40, -7, 2**35 + 1], np.int64), y=np.float64(2.5),
                     z=np.bool_(True)))
def _():
  @tfc(OD(x=T(np.int64, [3]), y=T(np.float64), z=T(np.bool_)))
  def comp(x, y, z):
    return (x * 3 - tf.constant(2**41, tf.int64), y / 3.0, tf.logical_not(z),
            tf.cast(x, tf.float64) * y)
  return comp


@case('tf_matmul_float32', 'tf computation: float32 [2,3] x [3,2] matmul',
      arg=lambda: OD(a=np.array([[1.5, -2.0, 0.25], [3.0, 0.5, -1.0]], np.float32),
                     b=np.array([[2.0, 1.0], [0.5, -4.0], [8.0, 0.75]], np.float32)))
def _():
  @tfc(OD(a=T(np.float32, [2, 3]), b=T(np.float32, [3, 2])))
  def comp(a, b):
    return tf.matmul(a, b)
  return comp


@case('tf_noarg_const', 'tf computation with no argument returning an int32[2,3] constant')
def _():
  @tfc
  def comp():
    return tf.constant([[7, -8, 9], [10, 0, -12]], tf.int32)
  return comp


@case('tf_string_concat',
      'tf computation: scalar string concatenation with tf.strings.join (UTF-8 text)',
      arg=lambda: OD(a='grüße, '.encode('utf-8'), b=b'federated'))
def _():
  @tfc(OD(a=T(np.str_), b=T(np.str_)))
  def comp(a, b):
    return tf.strings.join([a, b])
  return comp


@case('tf_struct_in_out',
      'tf computation with a named struct parameter <a=int32,b=float32[3]> and a named struct '
      'result <total=a+sum(b), scaled=a*b, pair=<a,-a>>',
      arg=lambda: OD(a=np.int32(4), b=np.array([0.5, -1.25, 3.0], np.float32)))
def _():
  @tfc(OD(a=T(np.int32), b=T(np.float32, [3])))
  def comp(a, b):
    af = tf.cast(a, tf.float32)
    return OD(total=af + tf.reduce_sum(b), scaled=af * b, pair=(a, -a))
  return comp


# --- tff.learning on a Keras model --------------------------------------------------------------

_KERAS_SIZES = [6, 9, 7]  # examples per client


def _keras_client_data():
  """3 clients' batched tf.data datasets of <x=float32[?,4],y=int32[?,1]> (mie's layout)."""
  r = rng(115)
  centres = r.normal(0.0, 2.0, size=(mie.CLASSES, mie.FEATURES))
  datasets = []
  for n in _KERAS_SIZES:
    y = r.integers(0, mie.CLASSES, size=n).astype(np.int32)
    x = np.round(centres[y] + r.normal(size=(n, mie.FEATURES)), 3).astype(np.float32)
    datasets.append(mie.dataset(x, y.reshape(n, 1)))
  return datasets


_KERAS_PROCESS = {}


def keras_fedavg_process():
  """tff.learning weighted FedAvg on mie's Keras softmax regression (built once)."""
  if 'process' not in _KERAS_PROCESS:
    element_spec = _keras_client_data()[0].element_spec
    _KERAS_PROCESS['process'] = tff.learning.algorithms.build_weighted_fed_avg(
        mie.model_fn_factory(element_spec),
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.1),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0))
  return _KERAS_PROCESS['process']


def _keras_next_arg():
  process = keras_fedavg_process()
  tff.framework.set_default_context(mc.get_context('native', 0))
  state = process.initialize()
  names = [n for n, _ in tff.structure.to_elements(process.next.type_signature.parameter)]
  return OD(zip(names, [state, _keras_client_data()]))


@case('learn_keras_fedavg_init',
      'tff.learning.algorithms.build_weighted_fed_avg on a Keras softmax regression (Dense 4->3, '
      'zero-initialized; client SGD lr 0.1, server SGD lr 1.0): process.initialize (no argument)')
def _():
  return keras_fedavg_process().initialize


@case('learn_keras_fedavg_next',
      'the same tff.learning FedAvg process: one process.next round over 3 clients (6, 9 and 7 '
      'examples of <x=float32[?,4],y=int32[?,1]> in tf.data batches of 5); argument = the '
      'state from initialize + the client datasets; result = <state, metrics>',
      arg=_keras_next_arg)
def _():
  return keras_fedavg_process().next


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def generate(c: Case, outdir: str, timing_runs: int) -> dict:
  """Writes one case with make_cases.generate_case, then the corpus's meta.json."""
  _WIRE['last'] = None
  full = mc.generate_case(c, outdir, timing_runs)
  d = os.path.join(outdir, c.name)
  with open(os.path.join(d, 'expected.pb'), 'rb') as f:
    expected = mc.executor_pb2.Value.FromString(f.read())
  # Every run after the first one (round trips, timing) returned this same result.
  full['wire_result_equals_expected'] = _WIRE['last'] == expected
  meta = OD((k, full.get(k)) for k in META_KEYS)
  mc.write_json(os.path.join(d, 'meta.json'), meta)
  return full


def main(argv) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('outdir', nargs='?', default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), 'conformance'),
                  help='where the case folders go (default: examples/conformance)')
  ap.add_argument('--only', nargs='*', default=None, help='case names')
  ap.add_argument('--timing-runs', type=int, default=15)
  args = ap.parse_args(argv)

  known = {c.name for c in CASES}
  unknown = sorted(set(args.only or ()) - known)
  if unknown:
    print(f'unknown case(s): {", ".join(unknown)}', flush=True)
    return 2
  os.makedirs(args.outdir, exist_ok=True)
  failures = []
  for c in CASES:
    if args.only and c.name not in args.only:
      continue
    try:
      m = generate(c, args.outdir, args.timing_runs)
      print(f'[case] {c.name}: {m["type_signature"]} clients={m["num_clients"]} '
            f'roundtrip={m["roundtrip_ok"]} native={m["native_roundtrip_ok"]} '
            f'wire_equal={m["wire_result_equals_expected"]} '
            f'median_s={(m["timing"] or {}).get("median_s")}', flush=True)
      problems = []
      if m['expected_source'] != 'tff':
        problems.append(f'TFF did not run it: {m.get("tff_error")}')
      if m['roundtrip_ok'] is not True:
        problems.append(f'comp.pb round trip: {m["roundtrip_error"]}')
      if m['native_roundtrip_ok'] is not True:
        problems.append(f'native_comp.pb round trip failed or missing '
                        f'({m.get("native_comp_error") or m.get("native_comp_note")})')
      if problems:
        failures.append((c.name, '; '.join(problems)))
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      failures.append((c.name, f'{type(e).__name__}: {e}'))
      print(f'[FAIL] {c.name}: {type(e).__name__}: {str(e)[:500]}', flush=True)
  print(f'DONE cases={len(args.only or CASES)} failures={len(failures)}', flush=True)
  for name, error in failures:
    print(f'  {name}: {error}', flush=True)
  return 1 if failures else 0


if __name__ == '__main__':
  mc.run_script(main)
