"""Reports of a check run: one line per case, a summary, a JSON document, JUnit XML.

JUnit XML is the format CI systems display (GitHub Actions through a test-report action, GitLab's
`artifacts:reports:junit`, Jenkins' `junit` step): one `<testcase>` per case, a `<failure>` for a
mismatch, an `<error>` for a case that could not run (its exit class in `type`), `<skipped>` for a
case `--fail-fast` did not start.
"""
from __future__ import annotations

import dataclasses
import re
import socket
import time
from typing import Sequence
from xml.etree import ElementTree

from tffexec import checking

#: Characters XML 1.0 cannot hold, even escaped (messages may quote binary values).
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
SUITE_NAME = "tffexec check"


@dataclasses.dataclass(frozen=True)
class Summary:
    total: int
    passed: int
    failed: int
    errors: int
    not_run: int
    seconds: float
    exit_code: int

    @classmethod
    def of(cls, verdicts: Sequence[checking.Verdict], seconds: float) -> "Summary":
        def count(status: str) -> int:
            return sum(1 for v in verdicts if v.status == status)

        return cls(len(verdicts), count(checking.PASS), count(checking.FAIL),
                   count(checking.ERROR), count(checking.SKIPPED), seconds,
                   checking.exit_code(verdicts))

    def line(self) -> str:
        """`47 cases: 45 passed, 1 failed, 1 error in 12.3 s`."""
        parts = [f"{self.passed} passed"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.errors:
            parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        if self.not_run:
            parts.append(f"{self.not_run} not run")
        cases = f"{self.total} case{'s' if self.total != 1 else ''}"
        return f"{cases}: {', '.join(parts)} in {_duration(self.seconds)}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def line(verdict: checking.Verdict) -> str:
    """`PASS name 12 ms`, `FAIL name: result.x: got .. vs expected ..`,
    `ERROR name: <message> (exit N)`, `SKIP name: not run (--fail-fast)`."""
    if verdict.status == checking.PASS:
        return f"PASS {verdict.name} {_duration(verdict.seconds)}"
    if verdict.status == checking.FAIL:
        return f"FAIL {verdict.name}: {verdict.message}"
    if verdict.status == checking.SKIPPED:
        return f"SKIP {verdict.name}: {verdict.message}"
    return f"ERROR {verdict.name}: {verdict.message} (exit {verdict.exit_code})"


def to_json(verdicts: Sequence[checking.Verdict], summary: Summary) -> dict:
    """The `--json` document: `cases` in order, then `summary`."""
    return {
        "cases": [{
            "name": v.name,
            "status": v.status,
            "exit_code": v.exit_code,
            "seconds": None if v.seconds is None else round(v.seconds, 6),
            "message": v.message,
            "computation": v.comp,
            "differences": [{"path": p, "got_vs_expected": d} for p, d in v.differences],
        } for v in verdicts],
        "summary": dataclasses.asdict(summary),
    }


def junit_xml(verdicts: Sequence[checking.Verdict], summary: Summary) -> bytes:
    """A JUnit XML document (UTF-8) with one test suite holding one test case per verdict."""
    counts = {"tests": str(summary.total), "failures": str(summary.failed),
              "errors": str(summary.errors), "skipped": str(summary.not_run),
              "time": f"{summary.seconds:.3f}"}
    root = ElementTree.Element("testsuites", name=SUITE_NAME, **counts)
    suite = ElementTree.SubElement(
        root, "testsuite", name=SUITE_NAME, **counts, hostname=socket.gethostname(),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"))
    for verdict in verdicts:
        case = ElementTree.SubElement(suite, "testcase", name=_clean(verdict.name),
                                      classname="tffexec.check",
                                      time=f"{verdict.seconds or 0.0:.3f}")
        if verdict.comp:
            case.set("file", _clean(verdict.comp))
        message = _clean(verdict.message)
        if verdict.status == checking.FAIL:
            element = ElementTree.SubElement(case, "failure", message=message,
                                             type="mismatch" if verdict.differences else
                                             "check failed")
            element.text = "\n".join(_clean(f"{p}: {d}  (got vs expected)")
                                     for p, d in verdict.differences) or message
        elif verdict.status == checking.ERROR:
            element = ElementTree.SubElement(case, "error", message=message,
                                             type=f"exit {verdict.exit_code}")
            element.text = message
        elif verdict.status == checking.SKIPPED:
            ElementTree.SubElement(case, "skipped", message=message)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
