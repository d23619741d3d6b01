"""One exception hierarchy for everything tffexec refuses or fails at.

The CLI maps each class to its exit code in one place (`tffexec.cli.main`); library code raises
these and never calls `sys.exit`. Messages are one line, written for the user: they name the file,
the path inside the value or AST, and what was expected.
"""
from __future__ import annotations


#: Every exit status the CLI uses and what it means (`tffexec --help` lists them). Each error class
#: below names its status in its header; a status missing here is a bug caught at import.
EXIT_CODES = {
    0: "success",
    1: "a check failed (--expect mismatch; validate found problems)",
    2: "usage error (bad flags)",
    3: "computation unreadable or unsupported",
    4: "argument problem (unreadable value, type mismatch, client count)",
    5: "refused by policy (forbidden op, limit exceeded)",
    6: "execution failed",
    7: "engine unavailable",
    70: "internal error (a bug: please report it)",
    124: "--timeout reached",
    130: "interrupted",
    143: "terminated (SIGTERM)",
}


class TffexecError(Exception):
    """Base class; `exit_code` is the process exit status the CLI uses."""

    exit_code = 70
    #: The global index of the client whose work failed, once the client work has named it.
    client: int | None = None

    def __init_subclass__(cls, *, exit_code: int | None = None, **kwargs) -> None:
        """A kind of error with its own exit status names it in its class header."""
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            if exit_code not in EXIT_CODES:
                raise TypeError(f"{cls.__name__}: exit code {exit_code} is not in EXIT_CODES")
            cls.exit_code = exit_code

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None):
        self.message = message
        self.file = file
        self.path = path
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.path:
            parts.append(self.path)
        prefix = ": ".join(parts)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(text.split("\n"))

    def with_file(self, file: str) -> "TffexecError":
        """Attach the file name once it is known (lower layers only see bytes)."""
        if not self.file:
            self.file = file
            self.args = (self.one_line(),)
        return self


class CheckFailed(TffexecError, exit_code=1):
    """A check did not pass: an `--expect` mismatch, or `validate` found problems."""


class UsageError(TffexecError, exit_code=2):
    """Bad flags or flag combinations."""


class ComputationError(TffexecError, exit_code=3):
    """The computation is unreadable or uses something unsupported."""


class ArgumentError(TffexecError, exit_code=4):
    """An argument value is unreadable, of the wrong type, or has an inconsistent client count."""


class PolicyError(TffexecError, exit_code=5):
    """Refused by policy: a forbidden TensorFlow op or an exceeded limit."""


class ExecutionError(TffexecError, exit_code=6):
    """Execution failed: a TensorFlow error, a violated secure-sum bound, a failed client."""


class EngineUnavailable(TffexecError, exit_code=7):
    """The requested engine cannot be used: missing extra, unreachable cluster, lost worker."""


class InternalError(TffexecError, exit_code=70):
    """A bug in tffexec."""


class Timeout(TffexecError, exit_code=124):
    """`--timeout` was reached."""


class Interrupted(TffexecError, exit_code=130):
    """The user interrupted the run."""


class Terminated(Interrupted, exit_code=143):
    """SIGTERM arrived (a service manager, `kill`, a CI job cancelled): handled like Ctrl-C,
    with the shell's exit status for it (128 + 15)."""


class TerminateSignal(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises KeyboardInterrupt (the CLI installs
    the handler: `tffexec.cli.watchdog.install_sigterm`), so code that stops work on Ctrl-C
    stops it on SIGTERM too."""


def interruption(error: KeyboardInterrupt, message: str) -> Interrupted:
    """The error for Ctrl-C (`Interrupted`, exit 130) or SIGTERM (`Terminated`, exit 143)."""
    if isinstance(error, TerminateSignal):
        return Terminated(message.replace("interrupted", "terminated", 1))
    return Interrupted(message)
