"""TFF's session token (`session_token_tensor_name`) is fed, a unique string per call, only to
graphs with a result that depends on it: only custom ops read it, and making a string tensor on
every call of every other graph that merely declares the placeholder cost time per client."""
from __future__ import annotations

import numpy as np
import pytest
from federated_language.proto import computation_pb2

from tffexec.executors import tf_function

tf = pytest.importorskip("tensorflow")


def _graph(result: str) -> computation_pb2.TensorFlow:
    """x:int32 -> `result`: "length" adds the token's length to x, "double" ignores the token."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.int32, [], name="x")
        token = tf.compat.v1.placeholder(tf.string, [], name="session_token_tensor")
        tf.identity(x + tf.strings.length(token), name="length")
        tf.identity(x * 2, name="double")
    proto = computation_pb2.TensorFlow(session_token_tensor_name=token.name)
    proto.graph_def.Pack(graph.as_graph_def())
    proto.parameter.tensor.tensor_name = x.name
    proto.result.tensor.tensor_name = f"{result}:0"
    return proto


def test_a_graph_whose_result_reads_the_token_gets_a_new_one_per_call():
    function = tf_function.GraphFunction(_graph("length"))
    assert function.feeds_session_token
    assert int(function([np.int32(1)])[0]) == 1 + 32  # a uuid's 32 hex digits


def test_a_graph_that_only_declares_the_token_is_not_fed_one():
    function = tf_function.GraphFunction(_graph("double"))
    assert not function.feeds_session_token
    assert int(function([np.int32(4)])[0]) == 8
