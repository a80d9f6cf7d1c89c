"""Typed errors. Each carries a one-line message meant for the person running the tool."""

from __future__ import annotations


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


class WaitTimeout(GpuConformanceError):
    """A bounded wait ran out; the message states what was expected and what was last seen."""


class FinalStateError(GpuConformanceError):
    """A wait ended early because the object reached a state it cannot leave (e.g. Job failed)."""
