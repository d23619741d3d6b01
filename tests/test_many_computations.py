"""Many computations in one process: TensorFlow's function library is process-wide.

Graphs carry library functions named by a counter of the process that traced them
(`__inference_update_state_5027`), so two computations can hold same-named functions with
different bodies: tff.learning's `comp.pb` and its TFF-compiled `native_comp.pb` do. TensorFlow
refuses the second import ("Attempting to add a duplicate function ... definitions differ")
unless tffexec renames each function to its name + content digest (`executors/tf_library.py`).

- Synthetic graphs (no data files): two different functions with one name coexist, in either
  order; two identical ones are shared (one registration); a caller is renamed with its callee;
  two imports of one stateful graph whose function holds a resource (own shared names) coexist.
- `tf_library` on hand-written GraphDefs: every kind of reference is renamed consistently.
- Every case runs both forms in one process on every stack in tests/test_run_conformance.py
  (one Runner per stack, each result checked against `expected.pb`); that is where a duplicate
  function would fail first.
- Either order: which form registers its functions first is a property of the process (they stay
  registered after a `Runner` closes), and earlier test modules of the same pytest process may
  already have run these cases; so each order runs in its own fresh child process, over every
  case whose graphs have library functions (committed and external), on the local stack.

Ray is not run here: a local Ray took 31 s to its first case's result on the 2-core development
machine (13 s to start, 18 s for the actors to import TensorFlow and run it), and its actors
import graphs through the same `GraphFunction` as the local stack.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import uuid

import federated_language as fl
import numpy as np
import pytest

from tffexec import runner as runner_lib
from tffexec.executors import tf_function
from tffexec.executors import tf_library
from tffexec.checks import analysis
from tffexec.checks import graphs
from tffexec.formats import loading
from tffexec import tensorflow as tfc

from tffexec_test_support import all_case_dirs, clean_env, stack_configs

tf = pytest.importorskip("tensorflow")

FORMS = ("comp.pb", "native_comp.pb")
STACKS = stack_configs()  # local (batched), local-nobatch, threaded


# -- where the cases are ---------------------------------------------------------------------------
def _has_library_functions(case: pathlib.Path) -> bool:
    """Whether any TensorFlow graph of either form has library functions (read without TF)."""
    for form in FORMS:
        if (case / form).exists():
            for node in analysis.walk(loading.load_computation(case / form)):
                if node.kind == "tensorflow" and graphs.function_names(
                        graphs.parse_graph_def(node.comp.tensorflow.graph_def)):
                    return True
    return False


LIBRARY_CASES = [c for c in all_case_dirs() if _has_library_functions(c)]


def test_the_cases_with_library_functions_are_found():
    """The cases that exercise the renaming are found (a broken discovery would skip them)."""
    names = {c.name for c in LIBRARY_CASES}
    assert {"tf_dataset_struct_out", "seq_tf_dataset_out_clients", "learn_fedavg_logreg_round",
            "learn_keras_fedavg_next"} <= names
    assert "tf_variable" not in names  # its graph has no library functions


# -- either order, each in a fresh process ---------------------------------------------------------
CHILD = """
import json, pathlib, sys
sys.path.insert(0, sys.argv[1])
import tffexec_test_support as support
print(json.dumps(support.run_cases_in_order(json.loads(sys.argv[2]))))
"""


@pytest.mark.parametrize("forms", [FORMS, FORMS[::-1]], ids=["comp-first", "native-first"])
def test_library_cases_run_in_either_order_in_a_fresh_process(forms):
    plan = {"stacks": ["local"], "forms": list(forms),
            "cases": [str(c) for c in LIBRARY_CASES]}
    assert plan["cases"], "no case has library functions"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(pathlib.Path(__file__).parent),
                           json.dumps(plan)], capture_output=True, text=True, timeout=600,
                          env=clean_env(TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["runs"] == sum((pathlib.Path(c) / f).exists() for c in plan["cases"]
                                 for f in forms) * len(plan["stacks"])
    assert not report["problems"], "\n".join(report["problems"][:10])


# -- synthetic graphs: same name, different or identical bodies ------------------------------------
def _traced(fn_factory, outputs):
    """A float32 -> float32 `tensorflow` computation calling tf.functions made by `fn_factory`."""
    functions = fn_factory()
    return tfc.tensorflow_computation(lambda x: outputs(functions, x), np.float32)


def _traced_int(fn_factory):
    """An int32 -> int32 computation calling the tf.function made by `fn_factory`."""
    function = fn_factory()
    return tfc.tensorflow_computation(lambda x: function(x), np.int32)


def _rename_library(comp, prefixes: dict[str, str]):
    """The computation with library functions whose names start with a prefix renamed, as a
    different process's tracing counter could have named them (references follow)."""
    graph_def = tf.compat.v1.GraphDef.FromString(comp.tensorflow.graph_def.value)
    renames = {}
    for function in graph_def.library.function:
        for prefix, new in prefixes.items():
            if function.signature.name.startswith(prefix):
                renames[function.signature.name] = new
    assert len(renames) == len(prefixes), renames
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for function in graph_def.library.function:
        function.signature.name = renames.get(function.signature.name, function.signature.name)
    for node in nodes:
        for value in node.attr.values():
            if value.HasField("func"):
                value.func.name = renames.get(value.func.name, value.func.name)
    out = type(comp)()
    out.CopyFrom(comp)
    out.tensorflow.graph_def.value = graph_def.SerializeToString(deterministic=True)
    return out


def _scaled(factor: float, name: str):
    """x -> x * factor, computed by a library function called `name`."""

    def make():
        @tf.function(autograph=False)
        def scale(v):
            return v * factor

        return scale

    return _rename_library(_traced(make, lambda scale, x: scale(x)), {"__inference_scale": name})


def _registered(prefix: str) -> list[str]:
    from tensorflow.python.eager import context  # noqa: PLC0415

    return sorted(n for n in context.context().list_function_names() if n.startswith(prefix))


@pytest.mark.parametrize("first", [0, 1], ids=["double-first", "triple-first"])
def test_two_different_functions_with_one_name_coexist_in_either_order(first):
    name = f"tffexec_test_scale_{uuid.uuid4().hex[:8]}"  # fresh: the process library persists
    comps = [_scaled(2.0, name), _scaled(3.0, name)]
    order = [first, 1 - first]
    with runner_lib.Runner() as runner:
        results = {i: runner.run(comps[i], np.float32(5.0)) for i in order}
    assert results == {0: np.float32(10.0), 1: np.float32(15.0)}
    assert len(_registered(name)) == 2


def test_identical_functions_in_two_computations_are_shared():
    name = f"tffexec_test_scale_{uuid.uuid4().hex[:8]}"
    comp = _scaled(2.0, name)
    # A second computation of the same graph with another result: its own import, same library.
    plus_one = type(comp)()
    plus_one.CopyFrom(comp)
    graph_def = tf.compat.v1.GraphDef.FromString(comp.tensorflow.graph_def.value)
    with tf.Graph().as_default() as graph:
        result, = tf.graph_util.import_graph_def(
            graph_def, return_elements=[comp.tensorflow.result.tensor.tensor_name], name="")
        tf.add(result, 1.0, name="plus_one")
    plus_one.tensorflow.graph_def.value = graph.as_graph_def().SerializeToString(deterministic=True)
    plus_one.tensorflow.result.tensor.tensor_name = "plus_one:0"
    with runner_lib.Runner() as runner:
        assert runner.run(comp, np.float32(5.0)) == np.float32(10.0)
        assert runner.run(plus_one, np.float32(5.0)) == np.float32(11.0)
        assert len(_registered(name)) == 1


def test_a_caller_whose_callee_differs_gets_its_own_name():
    tag = uuid.uuid4().hex[:8]
    outer, inner = f"tffexec_test_outer_{tag}", f"tffexec_test_inner_{tag}"

    def nested(factor):
        def make():
            @tf.function(autograph=False)
            def inner_fn(v):
                return v * factor

            @tf.function(autograph=False)
            def outer_fn(v):
                return inner_fn(v) + 1.0

            return outer_fn

        comp = _traced(make, lambda fn, x: fn(x))
        return _rename_library(comp, {"__inference_outer_fn": outer, "__inference_inner_fn": inner})

    with runner_lib.Runner() as runner:
        assert runner.run(nested(2.0), np.float32(5.0)) == np.float32(11.0)
        assert runner.run(nested(3.0), np.float32(5.0)) == np.float32(16.0)
    assert len(_registered(outer)) == 2 and len(_registered(inner)) == 2


@pytest.mark.parametrize("stack", ["local", "local-nobatch"])
def test_same_named_functions_mapped_over_clients_on_both_client_paths(stack):
    """The batched stack first imports a mapped graph inside a tf.function to vectorise it (pfor
    refuses calls of imported library functions, so it then runs per client); the no-batch stack
    imports it once for all clients."""
    name = f"tffexec_test_scale_{uuid.uuid4().hex[:8]}"
    clients = fl.FederatedType(np.float32, fl.CLIENTS)

    def mapped(comp):
        return fl.federated_computation(
            lambda xs: fl.federated_map(tfc.as_computation(comp), xs), clients)

    programs = [mapped(_scaled(2.0, name)), mapped(_scaled(3.0, name))]
    values = [np.float32(1.0), np.float32(2.0)]
    with runner_lib.Runner(STACKS[stack]) as runner:
        doubled = runner.run(programs[0], values)
        tripled = runner.run(programs[1], values)
    assert [float(v) for v in doubled] == [2.0, 4.0]
    assert [float(v) for v in tripled] == [3.0, 6.0]


def test_instances_of_a_graph_with_a_resource_inside_a_function_coexist():
    """A stateful graph gets one import per concurrent call, each with its own shared names;
    when a library function holds the resource op, each import's function body differs."""

    def make():
        @tf.function(autograph=False)
        def double(v):
            return v * 2

        return double

    comp = _traced_int(make)
    graph_def = tf.compat.v1.GraphDef.FromString(comp.tensorflow.graph_def.value)
    function = graph_def.library.function[0]
    table = function.node_def.add(name="table", op="HashTableV2")
    table.attr["key_dtype"].type = table.attr["value_dtype"].type = tf.int32.as_datatype_enum
    table.attr["shared_name"].s = b"table"
    function.control_ret["table"] = "table"
    function.signature.control_output.append("table")
    comp.tensorflow.graph_def.value = graph_def.SerializeToString(deterministic=True)
    graph_function = tf_function.GraphFunction(comp.tensorflow)
    first, second = graph_function._build_instance(), graph_function._build_instance()
    assert int(tf_function.call_flat(first, [tf.constant(2)])[0]) == 4
    assert int(tf_function.call_flat(second, [tf.constant(3)])[0]) == 6


# -- tf_library on hand-written GraphDefs ----------------------------------------------------------
GRAPH = """
node { name: "direct" op: "fn_alpha" }
node { name: "call" op: "PartitionedCall"
       attr { key: "f" value { func { name: "fn_alpha" } } } }
node { name: "case" op: "Case"
       attr { key: "branches"
              value { list { func { name: "fn_beta" } func { name: "fn_gamma" } } } } }
library {
  function { signature { name: "fn_alpha" }
             node_def { name: "inner" op: "MapDataset"
                        attr { key: "f" value { func { name: "fn_beta"
                               attr { key: "nested" value { func { name: "fn_gamma" } } } } } } }
             attr { key: "backward_function_name" value { s: "fn_gamma" } } }
  function { signature { name: "fn_beta" } node_def { name: "c" op: "Const" } }
  function { signature { name: "fn_gamma" } node_def { name: "loop" op: "fn_alpha" } }
  gradient { function_name: "fn_beta" gradient_func: "fn_gamma" }
}
"""


def _graph(text: str = GRAPH):
    from google.protobuf import text_format  # noqa: PLC0415

    return text_format.Parse(text, tf.compat.v1.GraphDef())


def test_every_reference_to_a_library_function_is_renamed_even_in_cycles():
    graph_def = _graph()
    renames = tf_library.make_unique(graph_def)
    assert set(renames) == {"fn_alpha", "fn_beta", "fn_gamma"}
    assert all(new.startswith(old + "_") and len(new) == len(old) + 1 + tf_library.DIGEST_HEX
               for old, new in renames.items())
    text = str(graph_def)
    for old in renames:
        assert f'"{old}"' not in text  # no reference kept the old name
    assert graph_def.node[0].op == renames["fn_alpha"]
    assert graph_def.node[1].attr["f"].func.name == renames["fn_alpha"]
    assert [f.name for f in graph_def.node[2].attr["branches"].list.func] == [
        renames["fn_beta"], renames["fn_gamma"]]
    alpha = graph_def.library.function[0]
    assert alpha.node_def[0].attr["f"].func.attr["nested"].func.name == renames["fn_gamma"]
    assert alpha.attr["backward_function_name"].s.decode() == renames["fn_gamma"]
    assert graph_def.library.gradient[0].function_name == renames["fn_beta"]
    assert graph_def.library.gradient[0].gradient_func == renames["fn_gamma"]


CHAIN = """
node { name: "call" op: "PartitionedCall" attr { key: "f" value { func { name: "fn_top" } } } }
library {
  function { signature { name: "fn_top" } node_def { name: "t" op: "fn_bottom" } }
  function { signature { name: "fn_bottom" } node_def { name: "b" op: "Const" } }
}
"""


def test_a_name_depends_on_the_bodies_of_the_function_and_of_what_it_calls():
    base = tf_library.content_names(_graph(CHAIN))
    assert tf_library.content_names(_graph(CHAIN)) == base  # deterministic
    # Another top-level graph around the same library: the same names (shared on import).
    other_graph = CHAIN.replace('name: "call"', 'name: "other"')
    assert tf_library.content_names(_graph(other_graph)) == base
    # The callee changes: both change (the caller's renamed call would differ).
    bottom = tf_library.content_names(_graph(CHAIN.replace('op: "Const"', 'op: "Identity"')))
    assert bottom["fn_bottom"] != base["fn_bottom"] and bottom["fn_top"] != base["fn_top"]
    # Only the caller changes: the callee keeps its name.
    top = tf_library.content_names(_graph(CHAIN.replace('name: "t"', 'name: "t2"')))
    assert top["fn_top"] != base["fn_top"] and top["fn_bottom"] == base["fn_bottom"]


def test_a_graph_without_a_library_is_left_alone():
    graph_def = _graph('node { name: "a" op: "Const" }')
    before = graph_def.SerializeToString(deterministic=True)
    assert tf_library.make_unique(graph_def) == {}
    assert graph_def.SerializeToString(deterministic=True) == before
