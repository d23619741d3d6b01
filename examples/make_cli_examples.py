"""Write the CLI walkthrough's extra example files, using real TFF 0.87 (not tffexec).

Run it under the TFF 0.87 peer virtualenv (see examples/README.md), after make_cases.py wrote the
examples, with the output sent to a file (TFF's worker_binary inherits stdout/stderr):

    "$PEER/bin/python" examples/make_cli_examples.py examples > /tmp/make_cli_examples.log 2>&1

It writes, from TFF's own deserialization of the committed arg.pb files (so the files are TFF's
values, not tffexec's writer's):

  mean_of_clients/arg.npz           the argument as npz (the third format next to arg.pb/arg.json)
  fedavg_round/arg.npz              the same for the FedAvg round
  fedavg_round/model.pb             the `model` element alone (`<w,b>@SERVER`), for --arg
  fedavg_round/data.npz, data.json  the `data` element alone (`{<x,y>}@CLIENTS`), for --arg
  slow_loop/                        a TensorFlow while-loop of `n` 64x64 matmul steps
                                    (`int64 -> <steps=int64,state=float32[64,64]>`): comp.pb,
                                    arg.pb/arg.json/arg.npz (n = 3), expected.pb/expected.json
                                    (TFF's result), meta.json. A large `n` keeps TensorFlow busy
                                    inside one kernel, for trying Ctrl-C and --timeout.
"""

import io
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_cases as mc  # noqa: E402  (imports TFF 0.87 and TensorFlow)

tf = mc.tf
tff = mc.tff
OD = mc.OD
T, F, S = mc.T, mc.F, mc.S

SLOW_LOOP_DIM = 64
SLOW_LOOP_ARG = 3


def _load_comp(path):
  p = mc.computation_pb2.Computation()
  with open(path, 'rb') as f:
    p.ParseFromString(f.read())
  return p


def _load_value(path, type_spec):
  v = mc.executor_pb2.Value()
  with open(path, 'rb') as f:
    v.ParseFromString(f.read())
  value, _ = tff.framework.deserialize_value(v, type_spec)
  return value


def _write_npz(path, value, type_spec):
  arrays = mc.npz_arrays(value, type_spec)
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  with open(path, 'wb') as f:
    f.write(buf.getvalue())
  return sorted(arrays)


def _write_value_pb(path, value, type_spec):
  pb, _ = tff.framework.serialize_value(value, type_spec)
  with open(path, 'wb') as f:
    f.write(pb.SerializeToString())


def _elements(value):
  if isinstance(value, dict):
    return list(value.items())
  return [(n, v) for n, v in tff.structure.iter_elements(value)]


def npz_and_pieces(examples_dir):
  for name in ('mean_of_clients', 'fedavg_round'):
    d = os.path.join(examples_dir, name)
    comp_pb = _load_comp(os.path.join(d, 'comp.pb'))
    param_t = mc.type_serialization.deserialize_type(comp_pb.type).parameter
    value = _load_value(os.path.join(d, 'arg.pb'), param_t)
    keys = _write_npz(os.path.join(d, 'arg.npz'), value, param_t)
    print(f'[npz] {name}/arg.npz: {keys}', flush=True)
    if name != 'fedavg_round':
      continue
    elements = dict(_elements(value))
    types = dict(tff.structure.iter_elements(param_t))
    _write_value_pb(os.path.join(d, 'model.pb'), elements['model'], types['model'])
    keys = _write_npz(os.path.join(d, 'data.npz'), elements['data'], types['data'])
    mc.write_plain_json(os.path.join(d, 'data.json'),
                        mc.py_plain(elements['data'], types['data']))
    print(f'[pieces] fedavg_round: model.pb, data.npz {keys}, data.json', flush=True)


def slow_loop(examples_dir):
  d = os.path.join(examples_dir, 'slow_loop')
  os.makedirs(d, exist_ok=True)

  @mc.tfc(T(np.int64))
  def slow_loop_comp(n):
    w = tf.constant(np.linspace(-1.0, 1.0, SLOW_LOOP_DIM * SLOW_LOOP_DIM, dtype=np.float32)
                    .reshape(SLOW_LOOP_DIM, SLOW_LOOP_DIM) / SLOW_LOOP_DIM)
    s0 = tf.eye(SLOW_LOOP_DIM, dtype=tf.float32)

    def body(i, s):
      return i + 1, tf.tanh(tf.matmul(s, w) + 0.01)

    steps, state = tf.while_loop(lambda i, s: i < n, body, (tf.constant(0, tf.int64), s0))
    return OD(steps=steps, state=state)

  comp_pb = tff.framework.serialize_computation(slow_loop_comp)
  with open(os.path.join(d, 'comp.pb'), 'wb') as f:
    f.write(comp_pb.SerializeToString())
  fn_t = slow_loop_comp.type_signature
  arg = np.int64(SLOW_LOOP_ARG)
  _write_value_pb(os.path.join(d, 'arg.pb'), arg, fn_t.parameter)
  with open(os.path.join(d, 'arg.json'), 'w') as f:
    f.write(f'{SLOW_LOOP_ARG}\n')
  np.savez(os.path.join(d, 'arg.npz'), value=np.asarray(arg))
  tff.framework.set_default_context(mc.get_context('native', 1))
  result = slow_loop_comp(arg)
  _write_value_pb(os.path.join(d, 'expected.pb'), result, fn_t.result)
  mc.write_json(os.path.join(d, 'expected.json'),
                {'type': str(fn_t.result), 'value': mc.py_tagged(result, fn_t.result)})
  meta = {
      'name': 'slow_loop',
      'description': f'a TensorFlow while-loop of n steps s <- tanh(s @ w + 0.01) on a '
                     f'{SLOW_LOOP_DIM}x{SLOW_LOOP_DIM} state; a large n keeps TensorFlow busy '
                     'inside one kernel (for trying Ctrl-C and --timeout)',
      'type_signature': str(fn_t),
      'parameter_type': str(fn_t.parameter),
      'result_type': str(fn_t.result),
      'arg': SLOW_LOOP_ARG,
      'tff_version': tff.__version__,
      'tf_version': tf.__version__,
  }
  mc.write_json(os.path.join(d, 'meta.json'), meta)
  print(f'[example] slow_loop: {fn_t}', flush=True)


def main(argv):
  examples_dir = argv[0] if argv else os.path.dirname(os.path.abspath(__file__))
  npz_and_pieces(examples_dir)
  slow_loop(examples_dir)
  print('DONE', flush=True)
  return 0


if __name__ == '__main__':
  rc = 1
  try:
    rc = main(sys.argv[1:])
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    mc.kill_worker_children()
    os._exit(rc)  # pylint: disable=protected-access
