"""Typed errors, each with a one-line message meant for the person running the tool, and the
one helper that turns any exception into such a line."""

from __future__ import annotations

import enum
import json
from typing import Any

MAX_LINE = 300


class GpuConformanceError(Exception):
    """Base of every error this project raises on purpose; str() is one clear line."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def one_line(self) -> str:
        text = " ".join(str(self).split())
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(GpuConformanceError):
    """The user asked for something impossible or malformed (bad option, missing file)."""


class ToolchainError(GpuConformanceError):
    """A program the offline cluster needs is missing or could not be built."""


class ClusterError(GpuConformanceError):
    """A cluster could not be created, reached or removed."""


class AccessError(ClusterError):
    """The cluster answered, but refused: bad credentials (401) or too few rights (403)."""


class WaitTimeout(GpuConformanceError):
    """A bounded wait ran out; the message states what was expected and what was last seen."""


class FinalStateError(GpuConformanceError):
    """A wait ended early because the object reached a state it cannot leave (e.g. Job failed)."""


def _api_message(body: Any) -> str:
    try:
        parsed = json.loads(body or "{}")
    except (TypeError, ValueError):
        return ""
    return str(parsed.get("message", "")) if isinstance(parsed, dict) else ""


def one_line(exc: BaseException) -> str:
    """One line describing any exception: ours as written, a Kubernetes API error as
    ``status reason: message`` (never a body dump), anything else as its first line."""
    if isinstance(exc, GpuConformanceError):
        return exc.one_line()
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if isinstance(status, int) and hasattr(exc, "body"):
        message = _api_message(getattr(exc, "body", None))
        text = f"{status} {reason or ''}".strip() + (f": {message}" if message else "")
    else:
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        text = first.strip() or type(exc).__name__
    return shorten(text)


def shorten(text: str, limit: int = MAX_LINE) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _codes(error: Any, depth: int = 0) -> list[str]:
    if error is None or depth > 5:
        return []
    def get(name: str) -> Any:
        return error.get(name) if isinstance(error, dict) else getattr(error, name, None)

    found = [str(get("code"))] if get("code") else []
    for detail in get("details") or []:
        found += _codes(detail, depth + 1)
    return found


def is_not_found(exc: BaseException) -> bool:
    """A 404 from the Kubernetes API or Azure (nested ARM error codes included)."""
    status = getattr(exc, "status", None)
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)
    if status == 404 or type(exc).__name__ == "ResourceNotFoundError":
        return True
    codes = {c.lower() for c in _codes(getattr(exc, "error", None))}
    return bool(codes & {"resourcenotfound", "resourcegroupnotfound", "notfound"})


class ExitCode(enum.IntEnum):
    """The exit status of every gpu-conformance command and run (pytest's where they overlap)."""

    OK = 0
    #: one or more checks failed: the cluster is not conformant
    CHECKS_FAILED = 1
    #: interrupted (Ctrl-C, SIGTERM); what the run created was removed
    INTERRUPTED = 2
    #: a bug in this tool (the message says so)
    INTERNAL_ERROR = 3
    #: a mistake in the command line, an option, an environment variable or a file given
    USAGE_ERROR = 4
    #: nothing was selected to run (pytest's -k/-m matched no check)
    NO_TESTS = 5
    #: the cluster or cloud could not be reached, refused access, or could not be provided
    CLUSTER_UNAVAILABLE = 6


def exit_code_for(exc: BaseException) -> ExitCode:
    if isinstance(exc, UsageError):
        return ExitCode.USAGE_ERROR
    if isinstance(exc, GpuConformanceError):
        return ExitCode.CLUSTER_UNAVAILABLE
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.INTERNAL_ERROR
