"""Write the tff.learning benchmark set (examples/learning/) with real TFF 0.87 (not tffexec).

Issue 16's set of training rounds: each case is ONE `process.next` round of a tff.learning
process applied to the state from `process.initialize` and to the clients' tf.data datasets, in
the corpus format (comp.pb, native_comp.pb, arg.pb, expected.pb = TFF 0.87's result,
meta.json with TFF's timing), laid out like
examples/conformance/learn_keras_fedavg_next.

Run it under the TFF 0.87 peer virtualenv, with the output sent to a file (TFF's worker_binary
inherits stdout/stderr, so a pipe can hang):

    $PEER/bin/python examples/make_learning_set.py examples/learning \
        > make_learning_set.log 2>&1

(`--only NAME ...` redoes some cases; `--timing-runs N` sets how many timed calls TFF gets,
`--list` prints the names). Names are `<workload>_c<clients>`, e.g. `fedavg_mlp_c100`.

Workloads (tiny models so the files stay small: 8x8 inputs, 4 classes, batches of 4):
  fedavg_mlp, fedavg_cnn, fedavg_lstm, fedavg_bn   weighted FedAvg, client SGD lr 0.1, server
                          SGD with momentum 0.9 (lr 1.0) on an MLP, a small CNN, an
                          Embedding+LSTM and a Dense+BatchNormalization model
  fedsgd_mlp              FedSGD, server SGD momentum 0.9 (lr 0.5)
  fedprox_mlp             weighted FedProx (proximal strength 0.1)
  mimelite_mlp            weighted MimeLite (base SGD momentum 0.9, server SGD lr 1.0)
  eval_mlp                federated evaluation (build_fed_eval): next(state, data)
  robust_mlp              weighted FedAvg with tff.learning.robust_aggregator (adaptive zeroing +
                          clipping)
  dp_mlp                  unweighted FedAvg with DifferentiallyPrivateFactory.gaussian_fixed,
                          noise multiplier 0 (clipping at 1.0, noise of stddev 0: results compare)
  *_unequal               fedavg_mlp and fedsgd_mlp on unequal datasets (6 to 32 examples per
                          client: 2 to 8 batches, ragged last batch)
each at 10 and 100 clients; the others have 16 examples per client (4 equal batches).

To stay small (issue 16 asks for < 15 MB) the folders hold no expected.json, and the 100-client
ones no native_comp.pb (the tests and the benchmark run comp.pb; each 10-client case keeps TFF's
compiled form of its process); meta.json's
`omitted_files` lists what was left out, and `compare` the tolerance a result is checked with.

Everything is seeded: running the script again gives the same data and results; comp.pb bytes
and the timings can differ (TFF generates names).
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

tf = mc.tf
tff = mc.tff
OD = collections.OrderedDict

CLASSES = 4
SIDE = 8          # inputs are SIDE x SIDE
BATCH = 4
EQUAL_EXAMPLES = 16   # 4 batches per client
UNEQUAL_RANGE = (6, 33)  # 6..32 examples: 2..8 batches
VOCAB, SEQ_LEN = 20, 6
CLIENT_COUNTS = (10, 100)

#: Float results of a training round: tffexec runs TF 2.21 kernels, TFF ran TF 2.14's; a few SGD
#: steps amplify last-bit differences (recorded in meta.json's `compare`).
TRAINING_TOLERANCE = {'kind': 'tolerance', 'rtol': 1e-4, 'atol': 1e-5}


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def _sizes(num_clients: int, unequal: bool, seed: int) -> list[int]:
  if not unequal:
    return [EQUAL_EXAMPLES] * num_clients
  r = np.random.default_rng(seed)
  return [int(n) for n in r.integers(*UNEQUAL_RANGE, size=num_clients)]


def image_data(num_clients: int, unequal: bool, channels: bool):
  """Clients' datasets of <x=float32[?,8,8(,1)],y=int32[?,1]>: class means plus noise."""
  r = np.random.default_rng(1600 + num_clients + (7 if unequal else 0))
  centres = r.normal(0.0, 1.0, size=(CLASSES, SIDE, SIDE))
  out = []
  for n in _sizes(num_clients, unequal, 16 + num_clients):
    y = r.integers(0, CLASSES, size=n).astype(np.int32)
    x = (centres[y] + r.normal(0.0, 1.0, size=(n, SIDE, SIDE))).astype(np.float32)
    if channels:
      x = x[..., None]
    out.append(tf.data.Dataset.from_tensor_slices(OD(x=x, y=y.reshape(n, 1))).batch(BATCH))
  return out


def token_data(num_clients: int, unequal: bool):
  """Clients' datasets of <x=int32[?,6],y=int32[?,1]>: the label is (first token) mod 4."""
  r = np.random.default_rng(1700 + num_clients)
  out = []
  for n in _sizes(num_clients, unequal, 17 + num_clients):
    x = r.integers(0, VOCAB, size=(n, SEQ_LEN)).astype(np.int32)
    y = (x[:, :1] % CLASSES).astype(np.int32)
    out.append(tf.data.Dataset.from_tensor_slices(OD(x=x, y=y)).batch(BATCH))
  return out


# ---------------------------------------------------------------------------
# Models (seeded initializers: the same initial state on every run)
# ---------------------------------------------------------------------------


def _glorot(seed):
  return tf.keras.initializers.GlorotUniform(seed=seed)


def _mlp():
  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=(SIDE, SIDE)),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(16, activation='relu', kernel_initializer=_glorot(1)),
      tf.keras.layers.Dense(CLASSES, kernel_initializer=_glorot(2)),
  ])


def _cnn():
  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=(SIDE, SIDE, 1)),
      tf.keras.layers.Conv2D(4, 3, activation='relu', kernel_initializer=_glorot(3)),
      tf.keras.layers.MaxPooling2D(2),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(CLASSES, kernel_initializer=_glorot(4)),
  ])


def _lstm():
  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=(SEQ_LEN,), dtype=tf.int32),
      tf.keras.layers.Embedding(
          VOCAB, 8, embeddings_initializer=tf.keras.initializers.RandomUniform(
              -0.05, 0.05, seed=5)),
      tf.keras.layers.LSTM(8, kernel_initializer=_glorot(6),
                           recurrent_initializer=tf.keras.initializers.Orthogonal(seed=7)),
      tf.keras.layers.Dense(CLASSES, kernel_initializer=_glorot(8)),
  ])


def _bn():
  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=(SIDE, SIDE)),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(16, kernel_initializer=_glorot(9)),
      tf.keras.layers.BatchNormalization(),
      tf.keras.layers.ReLU(),
      tf.keras.layers.Dense(CLASSES, kernel_initializer=_glorot(10)),
  ])


MODELS = {'mlp': _mlp, 'cnn': _cnn, 'lstm': _lstm, 'bn': _bn}


def model_fn_factory(keras_builder, element_spec):
  def model_fn():
    return tff.learning.models.from_keras_model(
        keras_builder(),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        input_spec=element_spec,
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  return model_fn


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

sgd = tff.learning.optimizers.build_sgdm


def _fedavg(model_fn, num_clients):
  del num_clients
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn, client_optimizer_fn=sgd(learning_rate=0.1),
      server_optimizer_fn=sgd(learning_rate=1.0, momentum=0.9))


def _fedsgd(model_fn, num_clients):
  del num_clients
  return tff.learning.algorithms.build_fed_sgd(
      model_fn, server_optimizer_fn=sgd(learning_rate=0.5, momentum=0.9))


def _fedprox(model_fn, num_clients):
  del num_clients
  return tff.learning.algorithms.build_weighted_fed_prox(
      model_fn, proximal_strength=0.1, client_optimizer_fn=sgd(learning_rate=0.1),
      server_optimizer_fn=sgd(learning_rate=1.0, momentum=0.9))


def _mimelite(model_fn, num_clients):
  del num_clients
  return tff.learning.algorithms.build_weighted_mime_lite(
      model_fn, base_optimizer=sgd(learning_rate=0.1, momentum=0.9),
      server_optimizer=sgd(learning_rate=1.0))


def _eval(model_fn, num_clients):
  del num_clients
  return tff.learning.algorithms.build_fed_eval(model_fn)


def _robust(model_fn, num_clients):
  del num_clients
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn, client_optimizer_fn=sgd(learning_rate=0.1),
      server_optimizer_fn=sgd(learning_rate=1.0, momentum=0.9),
      model_aggregator=tff.learning.robust_aggregator(zeroing=True, clipping=True))


def _dp(model_fn, num_clients):
  return tff.learning.algorithms.build_unweighted_fed_avg(
      model_fn, client_optimizer_fn=sgd(learning_rate=0.1),
      server_optimizer_fn=sgd(learning_rate=1.0, momentum=0.9),
      model_aggregator=tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
          noise_multiplier=0.0, clients_per_round=float(num_clients), clip=1.0))


#: workload -> (model, process builder, unequal datasets, description)
WORKLOADS = OD([
    ('fedavg_mlp', ('mlp', _fedavg, False, 'weighted FedAvg (client SGD lr 0.1, server SGD '
                    'momentum 0.9) on an MLP 8x8 -> Dense 16 relu -> Dense 4')),
    ('fedavg_cnn', ('cnn', _fedavg, False, 'weighted FedAvg on a CNN 8x8x1 -> Conv 3x3x4 relu '
                    '-> MaxPool 2 -> Dense 4')),
    ('fedavg_lstm', ('lstm', _fedavg, False, 'weighted FedAvg on Embedding(20,8) -> LSTM 8 -> '
                     'Dense 4 over 6 tokens')),
    ('fedavg_bn', ('bn', _fedavg, False, 'weighted FedAvg on 8x8 -> Dense 16 -> '
                   'BatchNormalization -> relu -> Dense 4')),
    ('fedsgd_mlp', ('mlp', _fedsgd, False, 'FedSGD (server SGD lr 0.5 momentum 0.9) on the MLP')),
    ('fedprox_mlp', ('mlp', _fedprox, False, 'weighted FedProx (proximal strength 0.1) on the '
                     'MLP')),
    ('mimelite_mlp', ('mlp', _mimelite, False, 'weighted MimeLite (base SGD lr 0.1 momentum '
                      '0.9, server SGD lr 1.0) on the MLP')),
    ('eval_mlp', ('mlp', _eval, False, 'federated evaluation (build_fed_eval) of the MLP')),
    ('robust_mlp', ('mlp', _robust, False, 'weighted FedAvg with robust_aggregator (adaptive '
                    'zeroing and clipping) on the MLP')),
    ('dp_mlp', ('mlp', _dp, False, 'unweighted FedAvg with DifferentiallyPrivateFactory.'
                'gaussian_fixed (noise multiplier 0, clip 1.0) on the MLP')),
    ('fedavg_mlp_unequal', ('mlp', _fedavg, True, 'weighted FedAvg on the MLP, unequal datasets '
                            '(6-32 examples: 2-8 batches, ragged last batch)')),
    ('fedsgd_mlp_unequal', ('mlp', _fedsgd, True, 'FedSGD on the MLP, unequal datasets (6-32 '
                            'examples: 2-8 batches, ragged last batch)')),
])


def client_data(model: str, num_clients: int, unequal: bool):
  if model == 'lstm':
    return token_data(num_clients, unequal)
  return image_data(num_clients, unequal, channels=(model == 'cnn'))


_PROCESSES = {}


def process_for(workload: str, num_clients: int):
  """The tff.learning process of a workload (built once; dp depends on the client count)."""
  model, builder, _, _ = WORKLOADS[workload]
  key = (workload, num_clients if builder is _dp else 0)
  if key not in _PROCESSES:
    spec = client_data(model, 2, False)[0].element_spec
    _PROCESSES[key] = builder(model_fn_factory(MODELS[model], spec), num_clients)
  return _PROCESSES[key]


def _next_arg(workload: str, num_clients: int):
  model, _, unequal, _ = WORKLOADS[workload]
  process = process_for(workload, num_clients)
  tff.framework.set_default_context(mc.get_context('native', 0))
  state = process.initialize()
  names = [n for n, _ in tff.structure.to_elements(process.next.type_signature.parameter)]
  return OD(zip(names, [state, client_data(model, num_clients, unequal)]))


def _case(workload: str, num_clients: int) -> mc.Case:
  model, _, unequal, text = WORKLOADS[workload]
  sizes = 'unequal datasets' if unequal else f'{EQUAL_EXAMPLES} examples each'
  return mc.Case(
      name=f'{workload}_c{num_clients}',
      description=(f'tff.learning: one process.next round of {text}; {num_clients} clients '
                   f'({sizes}, tf.data batches of {BATCH}); argument = the state from '
                   'initialize + the client datasets; result = <state, metrics>'),
      build=lambda: process_for(workload, num_clients).next,
      arg=lambda: _next_arg(workload, num_clients),
      compare=TRAINING_TOLERANCE)


CASES = [_case(w, n) for w in WORKLOADS for n in CLIENT_COUNTS]


def trim(case_dir: str) -> None:
  """Keeps the set small: drops expected.json (a readable copy of expected.pb, 100 KB a case;
  `tffexec convert expected.pb expected.json` renders it) and, in the 100-client cases,
  native_comp.pb (the 10-client case keeps the process's compiled form); meta.json says so."""
  meta_path = os.path.join(case_dir, 'meta.json')
  with open(meta_path) as f:
    meta = json.load(f, object_pairs_hook=OD)
  dropped = []
  for name in ('expected.json',) + (('native_comp.pb',) if meta['num_clients'] >= 100 else ()):
    if os.path.exists(os.path.join(case_dir, name)):
      os.remove(os.path.join(case_dir, name))
      dropped.append(name)
  if dropped:
    meta['omitted_files'] = sorted(set(meta.get('omitted_files', [])) | set(dropped))
    mc.write_json(meta_path, meta)


def main(argv) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('outdir', nargs='?', default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), 'learning'),
                  help='where the case folders go (default: examples/learning)')
  ap.add_argument('--only', nargs='*', default=None, choices=[c.name for c in CASES],
                  metavar='NAME', help='case names (see --list)')
  ap.add_argument('--timing-runs', type=int, default=5)
  ap.add_argument('--list', action='store_true', help='print the case names and stop')
  ap.add_argument('--trim-only', action='store_true',
                  help='only drop the files trim() drops from existing case folders')
  args = ap.parse_args(argv)
  selected = [c for c in CASES if not args.only or c.name in args.only]
  if args.list:
    print('\n'.join(c.name for c in CASES), flush=True)
    return 0
  if args.trim_only:
    for c in selected:
      if os.path.isdir(os.path.join(args.outdir, c.name)):
        trim(os.path.join(args.outdir, c.name))
    return 0
  os.makedirs(args.outdir, exist_ok=True)
  failures = []
  for c in selected:
    try:
      m = mc.generate_case(c, args.outdir, args.timing_runs)
      trim(os.path.join(args.outdir, c.name))
      print(f'[case] {c.name}: clients={m["num_clients"]} roundtrip={m["roundtrip_ok"]} '
            f'native={m["native_roundtrip_ok"]} median_s={(m["timing"] or {}).get("median_s")} '
            f'sizes={dict(m["sizes"])}', flush=True)
      if m['expected_source'] != 'tff' or m['roundtrip_ok'] is not True:
        failures.append((c.name, m.get('tff_error') or m.get('roundtrip_error')))
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      failures.append((c.name, f'{type(e).__name__}: {e}'))
      print(f'[FAIL] {c.name}: {type(e).__name__}: {str(e)[:500]}', flush=True)
  print('\n  '.join([f'DONE failures={len(failures)}'] + [f'{n}: {e}' for n, e in failures]),
        flush=True)
  return 1 if failures else 0


if __name__ == '__main__':
  mc.run_script(main)
