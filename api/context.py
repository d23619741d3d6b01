"""tffexec as federated-language's execution context.

`install_context()` sets a `SyncExecutionContext` backed by tffexec's lazy executor factory as
federated-language's default context: calling a traced `@federated_language.federated_computation`
then runs it on tffexec's stack (client count inferred from the argument, stacks cached per count).
"""
from __future__ import annotations

from typing import Optional

import federated_language

from tffexec.factories import config as config_lib
from tffexec.factories import executor_factory


def create_context(config: Optional[config_lib.StackConfig] = None):
    """A federated-language synchronous execution context running on tffexec."""
    factory = executor_factory.LazyExecutorFactory(config)
    return federated_language.framework.SyncExecutionContext(executor_fn=factory)


def install_context(config: Optional[config_lib.StackConfig] = None):
    """Makes tffexec the default execution context; returns the context it installed."""
    context = create_context(config)
    federated_language.framework.set_default_context(context)
    return context


def ensure_installed():
    """Installs tffexec as the default context unless someone installed a context already.

    Why: `import tffexec.tensorflow` and `tffexec.load` make computations callable without a
    setup step, but must not replace a context the user chose (federated-language's initial
    context is one that only raises).
    """
    current = federated_language.framework.get_context_stack().current
    if type(current).__name__ == "RuntimeErrorContext":
        return install_context()
    return current
