"""Generate the state-isolation cases (examples/isolation/) with real TFF 0.87.

Each case is a `federated_map` over 4 clients of a `tff.tensorflow.computation` whose graph
creates a TensorFlow resource (a hash table, a variable, a queue, a stack, a tensor array, an
accumulator), reads what the resource holds and then writes the client's value into it. TFF's
runtime starts every call from fresh resources, so no client sees another client's value: these
cases record that answer (a runtime that lets state leak from one call to the next returns the
previous client's value instead).

Like examples/make_cases.py (whose case writer this script reuses), it runs under the TFF 0.87
peer virtualenv, never imports tffexec, and its output must go to a file:

    "$PEER/bin/python" examples/make_isolation_cases.py examples/isolation \
        > /tmp/make_isolation_cases.log 2>&1
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import make_cases  # pylint: disable=g-import-not-at-top,wrong-import-position
from make_cases import C, F, T, fedc, np, tf, tfc, tff  # pylint: disable=g-import-not-at-top

CLIENT_VALUES = [7, 101, 202, 303]
CASES = []
_I64 = np.int64


def _case(name, description, expected):
  def deco(make_tf):
    def build():
      client_fn = make_tf()

      @fedc(F(T(_I64), C))
      def comp(x):
        return tff.federated_map(client_fn, x)
      return comp
    CASES.append(make_cases.Case(
        name=name, description=description, build=build,
        arg=lambda: [_I64(v) for v in CLIENT_VALUES],
        expected_fn=lambda: [_I64(v) for v in expected]))
    return make_tf
  return deco


def _after(first, then):
  """`then()` run after `first` (a tensor or op); returns `first`'s value."""
  with tf.control_dependencies([first]):
    op = then()
  with tf.control_dependencies([op]):
    return tf.identity(first)


def _key():
  return tf.constant(1, _I64)


def _find_then_insert(table, x):
  """Key 1's value in `table` (default -1), then `x` inserted under key 1."""
  found = tf.raw_ops.LookupTableFindV2(table_handle=table, keys=_key(),
                                       default_value=tf.constant(-1, _I64))
  return _after(found, lambda: tf.raw_ops.LookupTableInsertV2(
      table_handle=table, keys=_key(), values=x))


@_case('iso_mutable_hash_table', 'MutableHashTableV2 (shared_name set): look key 1 up '
       '(default -1), then insert the client value', [-1] * 4)
def _():
  @tfc(_I64)
  def f(x):
    t = tf.raw_ops.MutableHashTableV2(key_dtype=tf.int64, value_dtype=tf.int64,
                                      shared_name='iso_table')
    return _find_then_insert(t, x)
  return f


@_case('iso_mutable_hash_table_node_sharing', 'MutableHashTableV2 with an empty shared_name '
       'and use_node_name_sharing: look up, then insert', [-1] * 4)
def _():
  @tfc(_I64)
  def f(x):
    t = tf.raw_ops.MutableHashTableV2(key_dtype=tf.int64, value_dtype=tf.int64,
                                      use_node_name_sharing=True)
    return _find_then_insert(t, x)
  return f


@_case('iso_mutable_dense_hash_table', 'MutableDenseHashTableV2: look up, then insert',
       [-1] * 4)
def _():
  @tfc(_I64)
  def f(x):
    t = tf.raw_ops.MutableDenseHashTableV2(
        empty_key=tf.constant(-2, _I64), deleted_key=tf.constant(-3, _I64),
        value_dtype=tf.int64, shared_name='iso_dense')
    return _find_then_insert(t, x)
  return f


@_case('iso_mutable_hash_table_of_tensors', 'MutableHashTableOfTensorsV2: size, then insert',
       [0] * 4)
def _():
  @tfc(_I64)
  def f(x):
    t = tf.raw_ops.MutableHashTableOfTensorsV2(
        key_dtype=tf.int64, value_dtype=tf.int64, value_shape=[1], shared_name='iso_tensors')
    size = tf.raw_ops.LookupTableSizeV2(table_handle=t)
    return _after(size, lambda: tf.raw_ops.LookupTableInsertV2(
        table_handle=t, keys=tf.reshape(x, [1]), values=tf.reshape(x, [1, 1])))
  return f


@_case('iso_hash_table', 'HashTableV2 initialised in the call with the client value as key: '
       'the lookup finds it (a table kept from an earlier call refuses the new data)',
       CLIENT_VALUES)
def _():
  @tfc(_I64)
  def f(x):
    t = tf.raw_ops.HashTableV2(key_dtype=tf.int64, value_dtype=tf.int64,
                               shared_name='iso_static')
    init = tf.raw_ops.InitializeTableV2(table_handle=t, keys=tf.reshape(x, [1]),
                                        values=tf.reshape(x, [1]))
    with tf.control_dependencies([init]):
      return tf.reshape(tf.raw_ops.LookupTableFindV2(
          table_handle=t, keys=x, default_value=tf.constant(-1, _I64)), [])
  return f


@_case('iso_resource_variable', 'VarHandleOp: whether the variable is initialised, then '
       'assign the client value', [0] * 4)
def _():
  @tfc(_I64)
  def f(x):
    v = tf.raw_ops.VarHandleOp(dtype=tf.int64, shape=[], shared_name='iso_var')
    initialized = tf.cast(tf.raw_ops.VarIsInitializedOp(resource=v), _I64)
    return _after(initialized, lambda: tf.raw_ops.AssignVariableOp(resource=v, value=x))
  return f


@_case('iso_ref_variable', 'VariableV2 (a ref variable): whether it is initialised, then '
       'assign the client value', [0] * 4)
def _():
  @tfc(_I64)
  def f(x):
    v = tf.raw_ops.VariableV2(shape=[], dtype=tf.int64, shared_name='iso_ref_var')
    initialized = tf.cast(tf.raw_ops.IsVariableInitialized(ref=v), _I64)
    return _after(initialized, lambda: tf.raw_ops.Assign(ref=v, value=x))
  return f


@_case('iso_fifo_queue', 'FIFOQueueV2: size, then enqueue the client value', [0] * 4)
def _():
  @tfc(_I64)
  def f(x):
    q = tf.raw_ops.FIFOQueueV2(component_types=[tf.int64], shapes=[[]], capacity=8,
                               shared_name='iso_queue')
    size = tf.cast(tf.raw_ops.QueueSizeV2(handle=q), _I64)
    return _after(size, lambda: tf.raw_ops.QueueEnqueueV2(handle=q, components=[x]))
  return f


@_case('iso_stack', 'StackV2: push the client value and pop it', CLIENT_VALUES)
def _():
  @tfc(_I64)
  def f(x):
    s = tf.raw_ops.StackV2(max_size=tf.constant(4), elem_type=tf.int64, stack_name='iso_stack')
    pushed = tf.raw_ops.StackPushV2(handle=s, elem=x)
    with tf.control_dependencies([pushed]):
      return tf.reshape(tf.raw_ops.StackPopV2(handle=s, elem_type=tf.int64), [])
  return f


@_case('iso_tensor_array', 'TensorArrayV3: size, then write the client value', [1] * 4)
def _():
  @tfc(_I64)
  def f(x):
    handle, flow = tf.raw_ops.TensorArrayV3(size=tf.constant(1), dtype=tf.int64,
                                            dynamic_size=True, tensor_array_name='iso_ta')
    flow = tf.raw_ops.TensorArrayWriteV3(handle=handle, index=tf.constant(0), value=x,
                                         flow_in=flow)
    return tf.cast(tf.raw_ops.TensorArraySizeV3(handle=handle, flow_in=flow), _I64)
  return f


@_case('iso_conditional_accumulator', 'ResourceConditionalAccumulator: number accumulated, '
       'then apply the client value (TFF 0.87 answers on a fresh worker only)', [0] * 4)
def _():
  @tfc(_I64)
  def f(x):
    a = tf.raw_ops.ResourceConditionalAccumulator(dtype=tf.float32, shape=[],
                                                  shared_name='iso_accumulator')
    count = tf.cast(tf.raw_ops.ResourceAccumulatorNumAccumulated(handle=a), _I64)
    return _after(count, lambda: tf.raw_ops.ResourceAccumulatorApplyGradient(
        handle=a, local_step=tf.constant(0, _I64), gradient=tf.cast(x, tf.float32)))
  return f


@_case('iso_table_in_library_function', 'MutableHashTableV2 created inside a tf.function '
       'called from the computation (a library function): look up, then insert', [-1] * 4)
def _():
  @tf.function
  def lookup_then_insert(x):
    t = tf.raw_ops.MutableHashTableV2(key_dtype=tf.int64, value_dtype=tf.int64,
                                      shared_name='iso_library_table')
    return _find_then_insert(t, x)

  @tfc(_I64)
  def f(x):
    return lookup_then_insert(x)
  return f


_run_in = make_cases.run_in


def _fresh_run_in(*args):
  """`make_cases.run_in` on a new TFF worker: TFF 0.87 answers the accumulator case only on a
  fresh one (its runtime clears a session's resource container after each call, but the
  accumulator kernel keeps the handle it made on the first call, so a second call on the same
  worker fails with "Container ... does not exist"). A new worker per run costs a second and
  makes every case's answer the same kind of evidence."""
  make_cases._CONTEXTS.clear()  # pylint: disable=protected-access
  return _run_in(*args)


def main(argv):
  outdir = argv[0] if argv else 'examples/isolation'
  make_cases.CASES[:] = CASES
  make_cases.run_in = _fresh_run_in
  rc = make_cases.main([outdir, '--timing-runs', '1'])
  by_hand = [c.name for c in CASES if json.load(open(os.path.join(
      outdir, c.name, 'meta.json')))['expected_source'] != 'tff']
  if by_hand:
    print(f'TFF did not answer: {by_hand}', flush=True)
  return rc or (1 if by_hand else 0)


if __name__ == '__main__':
  exit_code = main(sys.argv[1:])  # on an exception, make_cases' atexit hook stops the workers
  make_cases.kill_worker_children()
  os._exit(exit_code)  # pylint: disable=protected-access
