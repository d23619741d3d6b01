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


def main(argv):
  ap = argparse.ArgumentParser(description='Time TFF 0.87 on a case folder.')
  ap.add_argument('case_dir')
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
  args = ap.parse_args(argv)

  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.proto.v0 import computation_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.proto.v0 import executor_pb2  # pylint: disable=g-import-not-at-top

  case_dir = args.case_dir.rstrip('/')
  meta = {}
  meta_path = os.path.join(case_dir, 'meta.json')
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      meta = json.load(f)

  comp_pb = computation_pb2.Computation()
  with open(os.path.join(case_dir, args.comp), 'rb') as f:
    comp_pb.ParseFromString(f.read())
  comp = tff.framework.deserialize_computation(comp_pb)
  param_t = comp.type_signature.parameter

  arg = None
  if param_t is not None:
    value_pb = executor_pb2.Value()
    with open(os.path.join(case_dir, 'arg.pb'), 'rb') as f:
      value_pb.ParseFromString(f.read())
    arg, _ = tff.framework.deserialize_value(value_pb, param_t)

  if args.num_clients is not None:
    num_clients = args.num_clients
  elif _has_clients_value(param_t, tff):
    num_clients = 0  # TFF infers it from the argument
  else:
    num_clients = int(meta.get('num_clients') or 0)

  kind = args.context
  if kind == 'auto':
    kind = 'test' if 'backends.test' in meta.get('runtime', '') else 'native'
  if kind == 'test':
    ctx = tff.backends.test.create_sync_test_cpp_execution_context(
        default_num_clients=num_clients)
  else:
    ctx = tff.backends.native.create_sync_local_cpp_execution_context(
        default_num_clients=num_clients)
  tff.framework.set_default_context(ctx)

  def call():
    return comp(arg) if param_t is not None else comp()

  first_call_s = None
  for i in range(args.warmup):
    t0 = time.perf_counter()
    call()
    if i == 0:
      first_call_s = time.perf_counter() - t0
  times = []
  for _ in range(args.runs):
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)
  if first_call_s is None and times:
    first_call_s = times[0]

  result = {
      'case': meta.get('name') or os.path.basename(case_dir),
      'median_s': statistics.median(times),
      'min_s': min(times),
      'max_s': max(times),
      'runs': args.runs,
      'warmup': args.warmup,
      'first_call_s': first_call_s,
      'comp_file': args.comp,
      'context': kind,
      'default_num_clients': num_clients,
      'tff_version': tff.__version__,
  }
  os.write(_REAL_STDOUT, (json.dumps(result) + '\n').encode())
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
