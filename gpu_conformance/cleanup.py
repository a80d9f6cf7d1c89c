"""Cleanup registered before the thing it cleans, run last-in-first-out, errors collected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gpu_conformance.errors import is_not_found, one_line
from gpu_conformance.log import Log


@dataclass
class _Entry:
    description: str
    action: Callable[[], None]
    manual: str


@dataclass
class CleanupStack:
    entries: list[_Entry] = field(default_factory=list)

    def push(self, description: str, action: Callable[[], None], manual: str = "") -> None:
        """Register ``action`` (idempotent; NotFound counts as done) and its manual command."""
        self.entries.append(_Entry(description, action, manual))

    def run(self, log: Log) -> list[str]:
        """Run every entry, newest first; return one line per failure, with its manual command."""
        failures = []
        while self.entries:
            entry = self.entries.pop()
            try:
                entry.action()
            except Exception as exc:
                if is_not_found(exc):
                    continue
                line = f"cleanup failed: {entry.description}: {one_line(exc)}"
                if entry.manual:
                    line += f"; clean up by hand: {entry.manual}"
                log(line)
                failures.append(line)
            except KeyboardInterrupt:
                remaining = [e.manual for e in [entry, *reversed(self.entries)] if e.manual]
                log("cleanup interrupted; clean up by hand: " + " && ".join(remaining))
                raise
        return failures
