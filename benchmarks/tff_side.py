"""Time real TFF 0.87 on one case folder, for side-by-side comparison.

Runs under the TFF 0.87 peer environment, never under tffexec's:

    $PEER/bin/python benchmarks/tff_side.py CASE_DIR --runs 20 --warmup 3

($PEER: the virtual environment holding TFF 0.87; see benchmarks/README.md.)

CASE_DIR holds comp.pb (and arg.pb when the computation takes an argument)
and, optionally, meta.json. Both files are deserialized before timing. The
timed region is `comp(arg)` on TFF's sync local C++ execution context
("argument in memory -> result in memory"; it includes TFF's cached Python
compile, argument serialization, gRPC to the worker_binary, execution and
fetching the result). Cases whose meta.json says they ran in the
tff.backends.test context (secure intrinsics) use that context.

Prints exactly one JSON line to stdout:
    {"case": ..., "median_s": ..., "min_s": ..., "max_s": ..., "runs": N, ...}
Everything else (TF logs, the worker's output) goes to stderr. The
worker_binary subprocess is killed (by pid) at exit.

With --serve (no CASE_DIR) it keeps TFF imported and answers timing
requests, one JSON line on stdin each ({"case_dir", "comp", "runs",
"warmup"}), with one JSON line on stdout each (after a first
{"ready": true} line); benchmarks/bench_learning.py uses it to interleave
TFF's runs with tffexec's case by case, in steady state.
"""

import argparse
import atexit
import json
import os
import signal
import statistics
import sys
import time

# TFF's worker_binary inherits our stdout; send fd 1 to stderr and keep a
# private copy of the real stdout for the one JSON result line.
_REAL_STDOUT = os.dup(1)
os.dup2(2, 1)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


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
  for pid in _child_pids():
    try:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)  # reap it: no zombie left behind
    except OSError:
      pass


atexit.register(kill_worker_children)


def _has_clients_value(type_spec, tff):
  if type_spec is None:
    return False
  if isinstance(type_spec, tff.FederatedType):
    return type_spec.placement is tff.CLIENTS and not type_spec.all_equal
  if isinstance(type_spec, tff.StructType):
    return any(_has_clients_value(t, tff)
               for _, t in tff.structure.to_elements(type_spec))
  return False


def load_case(tff, case_dir, comp_file='comp.pb', context='auto', num_clients=None):
  """Deserializes CASE_DIR's computation and argument; returns (call, info).

  `call()` runs the computation on the argument in TFF's sync local C++ context (chosen here and
  set as the default context again on every call, so cases with different contexts interleave).
  """
  from tensorflow_federated.proto.v0 import computation_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.proto.v0 import executor_pb2  # pylint: disable=g-import-not-at-top

  case_dir = case_dir.rstrip('/')
  meta = {}
  meta_path = os.path.join(case_dir, 'meta.json')
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      meta = json.load(f)

  comp_pb = computation_pb2.Computation()
  with open(os.path.join(case_dir, comp_file), 'rb') as f:
    comp_pb.ParseFromString(f.read())
  comp = tff.framework.deserialize_computation(comp_pb)
  param_t = comp.type_signature.parameter

  arg = None
  if param_t is not None:
    value_pb = executor_pb2.Value()
    with open(os.path.join(case_dir, 'arg.pb'), 'rb') as f:
      value_pb.ParseFromString(f.read())
    arg, _ = tff.framework.deserialize_value(value_pb, param_t)

  if num_clients is None:
    if _has_clients_value(param_t, tff):
      num_clients = 0  # TFF infers it from the argument
    else:
      num_clients = int(meta.get('num_clients') or 0)

  kind = context
  if kind == 'auto':
    kind = 'test' if 'backends.test' in meta.get('runtime', '') else 'native'
  ctx = _context(tff, kind, num_clients)

  def call():
    tff.framework.set_default_context(ctx)
    return comp(arg) if param_t is not None else comp()

  info = {'case': meta.get('name') or os.path.basename(case_dir), 'comp_file': comp_file,
          'context': kind, 'default_num_clients': num_clients}
  return call, info


_CONTEXTS = {}


def _context(tff, kind, num_clients):
  """One execution context (one worker_binary) per (kind, default_num_clients)."""
  key = (kind, num_clients)
  if key not in _CONTEXTS:
    if kind == 'test':
      _CONTEXTS[key] = tff.backends.test.create_sync_test_cpp_execution_context(
          default_num_clients=num_clients)
    else:
      _CONTEXTS[key] = tff.backends.native.create_sync_local_cpp_execution_context(
          default_num_clients=num_clients)
  return _CONTEXTS[key]


def time_calls(call, runs, warmup):
  """Median/min/max seconds of `runs` calls after `warmup` untimed ones (and the first call)."""
  first_call_s = None
  for i in range(warmup):
    t0 = time.perf_counter()
    call()
    if i == 0:
      first_call_s = time.perf_counter() - t0
  times = []
  for _ in range(runs):
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)
  if first_call_s is None and times:
    first_call_s = times[0]
  out = {'runs': runs, 'warmup': warmup, 'first_call_s': first_call_s, 'times_s': times}
  if times:
    out.update(median_s=statistics.median(times), min_s=min(times), max_s=max(times))
  return out


def _write_line(obj):
  os.write(_REAL_STDOUT, (json.dumps(obj) + '\n').encode())


def serve(tff):
  """--serve: one request per stdin line, one JSON answer line each, until EOF.

  A request is {"case_dir": ..., "comp": "comp.pb", "runs": N, "warmup": W}. Cases are
  deserialized once and kept, so a benchmark can interleave cases with the other side's runs
  and measure TFF in steady state (its Python-side compile cache stays warm).
  """
  loaded = {}
  _write_line({'ready': True, 'tff_version': tff.__version__})
  for line in sys.stdin:
    if not line.strip():
      continue
    req = json.loads(line)
    key = (req['case_dir'], req.get('comp', 'comp.pb'))
    try:
      if key not in loaded:
        loaded[key] = load_case(tff, key[0], key[1])
      call, info = loaded[key]
      _write_line({**info, **time_calls(call, int(req.get('runs', 3)),
                                        int(req.get('warmup', 0)))})
    except Exception as e:  # pylint: disable=broad-except
      _write_line({'error': f'{type(e).__name__}: {str(e)[:500]}'})
  return 0


def main(argv):
  ap = argparse.ArgumentParser(description='Time TFF 0.87 on a case folder.')
  ap.add_argument('case_dir', nargs='?')
  ap.add_argument('--runs', type=int, default=15)
  ap.add_argument('--warmup', type=int, default=1)
  ap.add_argument('--comp', default='comp.pb',
                  help='computation file in CASE_DIR (e.g. native_comp.pb)')
  ap.add_argument('--context', choices=('auto', 'native', 'test'),
                  default='auto',
                  help='auto: test context if meta.json says so, else native')
  ap.add_argument('--num-clients', type=int, default=None,
                  help='default_num_clients (default: meta.json num_clients '
                       'when the argument has no CLIENTS values, else 0)')
  ap.add_argument('--serve', action='store_true',
                  help='answer timing requests read from stdin (JSON lines), one JSON '
                       'line each, with TFF and the cases kept loaded')
  args = ap.parse_args(argv)
  if not args.serve and not args.case_dir:
    ap.error('CASE_DIR is required (or --serve)')

  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  if args.serve:
    return serve(tff)
  call, info = load_case(tff, args.case_dir, args.comp, args.context, args.num_clients)
  result = {**info, **time_calls(call, args.runs, args.warmup),
            'tff_version': tff.__version__}
  del result['times_s']
  _write_line(result)
  return 0


if __name__ == '__main__':
  rc = 1
  try:
    rc = main(sys.argv[1:])
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    kill_worker_children()
    os._exit(rc)  # pylint: disable=protected-access
