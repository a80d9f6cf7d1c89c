"""Cleanup registered before the thing it cleans, run last-in-first-out, errors collected.

An interrupt that arrives while cleanup runs does not abandon it: the first Ctrl-C or SIGTERM
is noted and cleanup goes on (every step is bounded); a second one stops it and prints what
is left to remove by hand. A run ended by Ctrl-C near its end still leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

from gpu_conformance.errors import is_not_found, one_line
from gpu_conformance.log import Log

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _Deferral:
    depth: int = 0
    #: the signal noted during the outermost deferral (kept after it ends); 0: none
    signum: int = 0


_DEFERRAL = _Deferral()


def defer_interrupts(log: Log) -> Callable[[], None] | None:
    """From now on the first SIGINT/SIGTERM is logged and noted (``deferred_signal``), a second
    raises KeyboardInterrupt; returns what gives the previous handlers back, or None where
    nothing changed (already deferring, or off the main thread, which alone gets signals)."""
    if threading.current_thread() is not threading.main_thread() or _DEFERRAL.depth:
        return None

    def note(signum: int, frame: FrameType | None) -> None:
        if _DEFERRAL.signum:
            raise KeyboardInterrupt(f"signal {signum}")
        _DEFERRAL.signum = signum
        log(f"interrupted ({signal.Signals(signum).name}): finishing cleanup first, so nothing "
            "is left behind; interrupt again to stop it")

    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _DEFERRAL.depth, _DEFERRAL.signum = 1, 0
    for signum in SIGNALS:
        signal.signal(signum, note)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _DEFERRAL.depth = 0

    return restore


@contextlib.contextmanager
def interrupts_deferred(log: Log) -> Iterator[None]:
    """``defer_interrupts`` while inside; nested uses share the outermost one."""
    restore = defer_interrupts(log)
    try:
        yield
    finally:
        if restore is not None:
            restore()


def deferred_signal() -> int:
    """The signal the last deferral noted (0: none)."""
    return _DEFERRAL.signum


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
        """Run every entry, newest first; return one line per failure, with its manual command.

        A first interrupt meanwhile is deferred; a second raises KeyboardInterrupt after
        logging what is left to do by hand.
        """
        failures = []
        with interrupts_deferred(log):
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
                    self.entries.append(entry)
                    log(self.abandoned())
                    raise
        return failures

    def abandoned(self) -> str:
        """The line for cleanup stopped with these entries not done."""
        left = list(reversed(self.entries))
        manual = [e.manual for e in left if e.manual]
        if manual:
            return "cleanup interrupted; clean up by hand: " + " && ".join(manual)
        return "cleanup interrupted (steps not done: " + "; ".join(
            e.description for e in left) + ")"
