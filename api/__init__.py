"""tffexec: run serialized TensorFlow Federated computations in-process.

Python API (imported lazily, so `import tffexec` stays instant):

- `tffexec.run(computation, arg=None, *, clients=None, stack=None, seed=None)` runs a computation
  (a path, bytes, a `Computation` proto or a federated-language computation) and returns the
  result in tffexec's Python representation (see `tffexec.formats`).
- `tffexec.Runner(config)` keeps stacks and imported graphs across many runs.
- `tffexec.StackConfig` describes the stack (the same object the CLI builds from its flags).
- `tffexec.install_context(config=None)` makes tffexec federated-language's default execution
  context, so traced federated-language computations run on tffexec when called.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "run": ("tffexec.runner", "run"),
    "Runner": ("tffexec.runner", "Runner"),
    "install_context": ("tffexec.context", "install_context"),
    "StackConfig": ("tffexec.factories.config", "StackConfig"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'tffexec' has no attribute {name!r}")


__all__ = ["run", "Runner", "StackConfig", "install_context", "__version__"]
