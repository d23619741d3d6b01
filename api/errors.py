"""One exception hierarchy for everything tffexec refuses or fails at.

The CLI maps each class to its exit code in one place (`tffexec.cli.main`); library code raises
these and never calls `sys.exit`. Messages are one line, written for the user: they name the file,
the path inside the value or AST, and what was expected.
"""
from __future__ import annotations


class TffexecError(Exception):
    """Base class; `exit_code` is the process exit status the CLI uses."""

    exit_code = 70
    #: The global index of the client whose work failed, once the client work has named it.
    client: int | None = None

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


class CheckFailed(TffexecError):
    """A check did not pass: an `--expect` mismatch, or `validate` found problems."""

    exit_code = 1


class UsageError(TffexecError):
    """Bad flags or flag combinations."""

    exit_code = 2


class ComputationError(TffexecError):
    """The computation is unreadable or uses something unsupported."""

    exit_code = 3


class ArgumentError(TffexecError):
    """An argument value is unreadable, of the wrong type, or has an inconsistent client count."""

    exit_code = 4


class PolicyError(TffexecError):
    """Refused by policy: a forbidden TensorFlow op or an exceeded limit."""

    exit_code = 5


class ExecutionError(TffexecError):
    """Execution failed: a TensorFlow error, a violated secure-sum bound, a failed client."""

    exit_code = 6


class EngineUnavailable(TffexecError):
    """The requested engine cannot be used: missing extra, unreachable cluster, lost worker."""

    exit_code = 7


class InternalError(TffexecError):
    """A bug in tffexec."""

    exit_code = 70


class Timeout(TffexecError):
    """`--timeout` was reached."""

    exit_code = 124


class Interrupted(TffexecError):
    """The user interrupted the run."""

    exit_code = 130


class Terminated(Interrupted):
    """SIGTERM arrived (a service manager, `kill`, a CI job cancelled): handled like Ctrl-C,
    with the shell's exit status for it (128 + 15)."""

    exit_code = 143


class TerminateSignal(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises KeyboardInterrupt (the CLI installs
    the handler: `tffexec.cli.watchdog.install_sigterm`), so code that stops work on Ctrl-C
    stops it on SIGTERM too."""


def interruption(error: KeyboardInterrupt, message: str) -> Interrupted:
    """The error for Ctrl-C (`Interrupted`, exit 130) or SIGTERM (`Terminated`, exit 143)."""
    if isinstance(error, TerminateSignal):
        return Terminated(message.replace("interrupted", "terminated", 1))
    return Interrupted(message)


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
