"""Write training processes for `tffexec iterate`, using real TFF 0.87 (not tffexec).

Run it under the TFF 0.87 peer virtualenv (see examples/README.md), with the output sent to a file
(TFF's worker_binary inherits stdout/stderr):

    "$PEER/bin/python" examples/make_iterate_examples.py examples/iterate \
        > /tmp/make_iterate_examples.log 2>&1

(add process names after OUTDIR to redo only those).

For each process it writes OUTDIR/<name>/:

  init.pb, next.pb        `process.initialize` and `process.next`, from
                          tff.framework.serialize_computation
  clients/                one value file per client: client_NNN.pb (TFF's serialize_value of the
                          client's tf.data.Dataset) for even NNN, client_NNN.json (plain JSON: a
                          list of batched elements, written here with json, not by tffexec) for
                          odd NNN
  clients_all.pb          all clients in one `{T*}@CLIENTS` value
  expected_state.pb       TFF's state after ROUNDS rounds on all clients (sorted by name)
  expected_metrics.json   TFF's metrics of each of those rounds, flattened to "a/b/c" keys
  meta.json               types, sizes, TFF/TF versions, rounds

Processes:
  fedavg_keras    tff.learning.algorithms.build_weighted_fed_avg on a Keras softmax regression
                  (4 features, 3 classes), client SGD lr 0.1, server SGD lr 1.0
  fedavg_unweighted  build_unweighted_fed_avg on the same model and data
  fedsgd_keras    tff.learning.algorithms.build_fed_sgd on the same model, server SGD lr 0.5
  running_sum     hand-written with tff.federated_computation; next returns only the state (no
                  metrics): state <rounds=int32,total=float32[2]>@SERVER, client data
                  {<reading=float32[2]>}@CLIENTS; clients/ holds client_NNN.npz (even NNN, key
                  "reading") and client_NNN.json (odd NNN, plain JSON), no clients_all.pb

Running the script again gives the same data (fixed seeds); `.pb` bytes of the computations can
differ (TFF generates names).
"""

import collections
import json
import os
import signal
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_cases as mc  # noqa: E402  (imports TFF 0.87 and TensorFlow, kills workers at exit)

tf = mc.tf
tff = mc.tff
OD = collections.OrderedDict

NUM_CLIENTS = 10
FEATURES = 4
CLASSES = 3
BATCH = 5
ROUNDS = 3


def make_client_data(seed: int = 7):
  """Separable-ish 3-class data: class centres in R^4, 8 to 22 examples per client."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(0.0, 2.0, size=(CLASSES, FEATURES)).astype(np.float32)
  clients = []
  for _ in range(NUM_CLIENTS):
    n = int(rng.integers(8, 23))
    y = rng.integers(0, CLASSES, size=n).astype(np.int32)
    x = (centres[y] + rng.normal(0.0, 1.0, size=(n, FEATURES))).astype(np.float32)
    clients.append((np.round(x, 3), y.reshape(n, 1)))
  return clients


def dataset(x, y):
  return tf.data.Dataset.from_tensor_slices(OD(x=x, y=y)).batch(BATCH)


def model_fn_factory(element_spec):
  def model_fn():
    keras_model = tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(FEATURES,)),
        tf.keras.layers.Dense(CLASSES, kernel_initializer='zeros'),
    ])
    return tff.learning.models.from_keras_model(
        keras_model,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        input_spec=element_spec,
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  return model_fn


def build_processes(element_spec):
  model_fn = model_fn_factory(element_spec)
  sgd = tff.learning.optimizers.build_sgdm
  return {
      'fedavg_keras': tff.learning.algorithms.build_weighted_fed_avg(
          model_fn, client_optimizer_fn=sgd(learning_rate=0.1),
          server_optimizer_fn=sgd(learning_rate=1.0)),
      'fedavg_unweighted': tff.learning.algorithms.build_unweighted_fed_avg(
          model_fn, client_optimizer_fn=sgd(learning_rate=0.1),
          server_optimizer_fn=sgd(learning_rate=1.0)),
      'fedsgd_keras': tff.learning.algorithms.build_fed_sgd(
          model_fn, server_optimizer_fn=sgd(learning_rate=0.5)),
  }


def plain(obj):
  """numpy -> plain JSON (lists of numbers)."""
  if isinstance(obj, dict):
    return {k: plain(v) for k, v in obj.items()}
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  return obj


def flatten(value, prefix=''):
  """Metrics (nested OrderedDicts / Structs of scalars) -> {"a/b/c": number}."""
  out = OD()
  if isinstance(value, (dict, OD)):
    items = list(value.items())
  elif isinstance(value, tff.structure.Struct):
    items = [(n if n is not None else str(i), v)
             for i, (n, v) in enumerate(tff.structure.iter_elements(value))]
  elif isinstance(value, (list, tuple)) and not hasattr(value, 'dtype'):
    items = [(str(i), v) for i, v in enumerate(value)]
  else:
    arr = np.asarray(value)
    return OD([(prefix, arr.item() if arr.shape == () else arr.tolist())])
  for name, v in items:
    out.update(flatten(v, f'{prefix}/{name}' if prefix else str(name)))
  return out


def write_value(path, value, type_spec):
  pb, _ = tff.framework.serialize_value(value, type_spec)
  with open(path, 'wb') as f:
    f.write(pb.SerializeToString())


def write_comp(path, comp):
  with open(path, 'wb') as f:
    f.write(tff.framework.serialize_computation(comp).SerializeToString())


def running_sum(d):
  """A state-only process: count rounds and add up every client's reading."""
  import io  # pylint: disable=g-import-not-at-top
  T, F, S = tff.TensorType, tff.FederatedType, tff.StructType
  state_t = S([('rounds', T(np.int32)), ('total', T(np.float32, [2]))])
  client_t = S([('reading', T(np.float32, [2]))])

  @tff.tensorflow.computation
  def zeros():
    return OD(rounds=tf.constant(0, tf.int32), total=tf.zeros([2], tf.float32))

  @tff.federated_computation
  def initialize():
    return tff.federated_eval(zeros, tff.SERVER)

  @tff.tensorflow.computation(state_t, T(np.float32, [2]))
  def add(state, total):
    return OD(rounds=state['rounds'] + 1, total=state['total'] + total)

  @tff.tensorflow.computation(client_t)
  def reading(x):
    return x['reading']

  @tff.federated_computation(OD(state=F(state_t, tff.SERVER), data=F(client_t, tff.CLIENTS)))
  def next_fn(state, data):
    total = tff.federated_sum(tff.federated_map(reading, data))
    return tff.federated_map(add, tff.federated_zip((state, total)))

  cdir = os.path.join(d, 'clients')
  os.makedirs(cdir, exist_ok=True)
  for f in os.listdir(cdir):
    os.remove(os.path.join(cdir, f))
  write_comp(os.path.join(d, 'init.pb'), initialize)
  write_comp(os.path.join(d, 'next.pb'), next_fn)
  rng = np.random.default_rng(11)
  clients = [OD(reading=np.round(rng.normal(size=2), 3).astype(np.float32)) for _ in range(6)]
  for i, c in enumerate(clients):
    if i % 2 == 0:
      buf = io.BytesIO()
      np.savez(buf, **mc.npz_arrays(c, client_t))
      with open(os.path.join(cdir, f'client_{i:03d}.npz'), 'wb') as f:
        f.write(buf.getvalue())
    else:
      with open(os.path.join(cdir, f'client_{i:03d}.json'), 'w') as f:
        json.dump(plain(c), f)
  state = initialize()
  for _ in range(ROUNDS):
    state = next_fn(state, clients)
  write_value(os.path.join(d, 'expected_state.pb'), state, next_fn.type_signature.result)
  expected_total = ROUNDS * np.sum([c['reading'] for c in clients], axis=0)
  ok = int(state['rounds']) == ROUNDS and np.allclose(state['total'], expected_total, atol=1e-5)
  with open(os.path.join(d, 'meta.json'), 'w') as f:
    json.dump(OD(name='running_sum', init_type=str(initialize.type_signature),
                 next_type=str(next_fn.type_signature), clients=len(clients), rounds=ROUNDS,
                 expected='TFF 0.87 native runtime, all clients each round',
                 tff_version=tff.__version__, tf_version=tf.__version__), f, indent=1)
  print(f'[running_sum] next {next_fn.type_signature} ok={ok}', flush=True)
  return 0 if ok else 1


def main(outdir, only=None):
  tff.framework.set_default_context(mc.get_context('native', 0))
  data = make_client_data()
  datasets = [dataset(x, y) for x, y in data]
  element_spec = datasets[0].element_spec
  processes = build_processes(element_spec)
  failures = 0
  for name, process in processes.items():
    if only is not None and name not in only:
      continue
    d = os.path.join(outdir, name)
    cdir = os.path.join(d, 'clients')
    os.makedirs(cdir, exist_ok=True)
    for f in os.listdir(cdir):
      os.remove(os.path.join(cdir, f))
    init_t = process.initialize.type_signature
    next_t = process.next.type_signature
    write_comp(os.path.join(d, 'init.pb'), process.initialize)
    write_comp(os.path.join(d, 'next.pb'), process.next)
    data_t = next_t.parameter[1]  # {T*}@CLIENTS
    seq_t = data_t.member
    for i, ((x, y), ds) in enumerate(zip(data, datasets)):
      if i % 2 == 0:
        write_value(os.path.join(cdir, f'client_{i:03d}.pb'), ds, seq_t)
      else:
        batches = [OD(x=x[s:s + BATCH], y=y[s:s + BATCH]) for s in range(0, len(y), BATCH)]
        with open(os.path.join(cdir, f'client_{i:03d}.json'), 'w') as f:
          json.dump([plain(b) for b in batches], f)
    write_value(os.path.join(d, 'clients_all.pb'), datasets, data_t)

    state = process.initialize()
    metrics = []
    for r in range(ROUNDS):
      out = process.next(state, datasets)
      state = out.state
      metrics.append(OD(round=r + 1, **flatten(out.metrics)))
      print(f'[{name}] round {r + 1}: {dict(metrics[-1])}', flush=True)
    write_value(os.path.join(d, 'expected_state.pb'), state, next_t.result[0])
    with open(os.path.join(d, 'expected_metrics.json'), 'w') as f:
      json.dump(metrics, f, indent=1)
    losses = [m.get('client_work/train/loss') for m in metrics]
    if not all(a > b for a, b in zip(losses, losses[1:])):
      print(f'[{name}] WARNING: loss does not decrease: {losses}', flush=True)
      failures += 1 if name != 'fedsgd_keras' else 0
    meta = OD(
        name=name,
        init_type=str(init_t),
        next_type=str(next_t),
        clients=NUM_CLIENTS,
        examples_per_client=[int(len(y)) for _, y in data],
        batch=BATCH,
        rounds=ROUNDS,
        expected='TFF 0.87 native runtime, all clients each round in client_NNN order',
        tff_version=tff.__version__,
        tf_version=tf.__version__,
    )
    with open(os.path.join(d, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=1)
    print(f'[{name}] init {init_t}', flush=True)
    print(f'[{name}] next {next_t}', flush=True)
  if only is None or 'running_sum' in only:
    failures += running_sum(os.path.join(outdir, 'running_sum'))
  print(f'DONE failures={failures}', flush=True)
  return 1 if failures else 0


if __name__ == '__main__':
  rc = 1
  try:
    rc = main(sys.argv[1] if len(sys.argv) > 1 else 'examples/iterate',
              sys.argv[2:] or None)
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    mc.kill_worker_children()
    os._exit(rc)  # pylint: disable=protected-access
