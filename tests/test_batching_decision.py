"""The batched-or-per-client choice is made in one place, the federating executor's client work.

The intrinsic handlers describe *what* an intrinsic computes; `FederatingExecutor.map_clients`,
`fold_clients` and `reduce_clients` decide *how*: one batched TensorFlow call or numpy reduction
over columns where they can, client after client where they cannot. These tests read the source,
because the property is structural: a handler that starts choosing again would still pass every
behaviour test. The behaviour (same bits either way) is tests/test_batching.py's.
"""
from __future__ import annotations

import ast
import inspect

import pytest

from tffexec.executors import batch_lambda
from tffexec.executors import client_work
from tffexec.executors import federated_intrinsics
from tffexec.executors import federating_executor
from tffexec.executors import tf_batch

BATCHING_MODULES = ("batch", "tf_batch", "batch_lambda", "client_work")


def _tree(module) -> ast.Module:
    return ast.parse(inspect.getsource(module))


def _identifiers(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, (ast.FunctionDef, ast.alias)):
            names.add(n.name)
    return names


def test_no_intrinsic_handler_chooses_between_batched_and_per_client_work():
    tree = _tree(federated_intrinsics)
    imported = {alias.name.rsplit(".", 1)[-1] for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for alias in n.names}
    assert imported.isdisjoint(BATCHING_MODULES)
    batch_words = sorted(name for name in _identifiers(tree)
                         if "batch" in name.lower() or name in ("client_work", "columnar"))
    assert batch_words == []


def _methods_using(cls, names: set[str]) -> set[str]:
    tree = ast.parse(inspect.getsource(cls))
    (class_def,) = tree.body
    return {f.name for f in class_def.body
            if isinstance(f, ast.FunctionDef) and _identifiers(f) & names}


def test_only_the_client_work_methods_of_the_federating_executor_take_the_batched_paths():
    executor = federating_executor.FederatingExecutor
    assert _methods_using(executor, {"map_batched"}) == {"map_clients"}
    assert _methods_using(executor, {"fold_batched"}) == {"fold_clients"}
    assert _methods_using(executor, {"columnar"}) == {"reduce_clients"}


@pytest.mark.parametrize("module", [federating_executor, federated_intrinsics, client_work,
                                    tf_batch, batch_lambda], ids=lambda m: m.__name__)
def test_batching_code_uses_declared_interfaces_not_probes_or_privates(module):
    tree = _tree(module)
    probes = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name) and n.func.id in ("hasattr", "getattr")
              and not (n.func.id == "getattr" and len(n.args) == 2
                       and isinstance(n.args[1], ast.Constant) and n.args[1].value == "lambda")]
    # `getattr(proto, "lambda")` is how a proto field named by a keyword is read.
    assert probes == []
    foreign_privates = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                        and n.attr.startswith("_") and not n.attr.startswith("__")
                        and not (isinstance(n.value, ast.Name)
                                 and (n.value.id in ("self", "cls") or n.value.id.startswith("_")))]
    # (a module's own private classes, e.g. a rule table of `_Evaluation` methods, are its own)
    assert foreign_privates == []
