"""Every intrinsic table derives from the one registry, `tffexec.intrinsics`.

The registry lists each URI with its kind; each layer's table must cover exactly the URIs of the
kinds it implements, so a new intrinsic cannot be supported by `validate` yet missing from a stack
(or the other way round), and the composing rule cannot be forgotten: it is registered with the
federating handler.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tffexec import errors
from tffexec import intrinsics
from tffexec.executors import federated_intrinsics
from tffexec.executors import sequence_executor
from tffexec.checks import analysis

K = intrinsics.Kind
FEDERATED_KINDS = {K.PLACEMENT, K.CLIENT_MAP, K.SERVER, K.AGGREGATION, K.SECURE_AGGREGATION,
                   K.SELECT}


def _callable(*kinds) -> set[str]:
    return {d.uri for d in intrinsics.INTRINSICS.values() if d.kind in kinds and not d.constant}


@pytest.mark.parametrize("table, kinds", [
    (federated_intrinsics.INTRINSICS, FEDERATED_KINDS | {K.GENERIC}),
    (federated_intrinsics.COMPOSE, FEDERATED_KINDS | {K.GENERIC}),
    (sequence_executor.HANDLERS, {K.SEQUENCE, K.GENERIC}),
], ids=["federating handlers", "composing rules", "sequence handlers"])
def test_every_handler_table_covers_exactly_the_callable_uris_of_its_kinds(table, kinds):
    assert set(table) == _callable(*kinds)


def test_the_supported_list_of_inspect_and_validate_is_the_registry():
    assert analysis.SUPPORTED_INTRINSICS == set(intrinsics.INTRINSICS)


def test_every_kind_has_an_intrinsic_and_every_uri_is_handled_somewhere():
    assert {d.kind for d in intrinsics.INTRINSICS.values()} == set(K)
    handled = set(federated_intrinsics.INTRINSICS) | set(sequence_executor.HANDLERS)
    constants = {d.uri for d in intrinsics.INTRINSICS.values() if d.constant}
    assert handled | constants == intrinsics.SUPPORTED
    assert constants == {intrinsics.GENERIC_ZERO}


def test_a_handler_for_a_uri_missing_from_the_registry_is_refused_at_registration():
    with pytest.raises(errors.InternalError, match="federated_frobnicate.*tffexec.intrinsics"):
        federated_intrinsics.intrinsic("federated_frobnicate",
                                       compose=federated_intrinsics.forward)(lambda *a: None)
    with pytest.raises(errors.InternalError, match="sequence_frobnicate"):
        sequence_executor.handles("sequence_frobnicate")(lambda *a: None)
    assert "federated_frobnicate" not in federated_intrinsics.INTRINSICS


def test_registry_imports_neither_tensorflow_nor_federated_language():
    # A fresh interpreter: what this test process already imported must not hide an import.
    code = ("import sys, tffexec.intrinsics; "
            "print(sorted(m for m in ('tensorflow', 'federated_language', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
