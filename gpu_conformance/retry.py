"""The one retry helper: retry only errors a caller names as transient, bounded in attempts
and, optionally, by a deadline; say so on each retry ("attempt i/N failed ...; will retry")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from gpu_conformance.log import Log

T = TypeVar("T")

#: why an error is worth another try (None: it is final), given the attempt that failed
Transient = Callable[[BaseException, int], "str | None"]


def exponential(multiplier: float, maximum: float) -> Callable[[int], float]:
    """Pauses ``multiplier * 2**(attempt-1)``, at most ``maximum`` seconds."""
    return lambda attempt: min(maximum, multiplier * 2 ** (attempt - 1))


def retrying(fn: Callable[[], T], *, transient: Transient, attempts: int,
             wait: float | Callable[[int], float], action: str, log: Log | None = None,
             deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn``; on an error ``transient`` names, pause and call again.

    Stops (re-raising the last error) after ``attempts`` calls, or when the next pause would
    end past ``deadline`` (a ``clock()`` value): a wait's own bound is never overrun by retries.
    """

    def pause(state: tenacity.RetryCallState) -> float:
        return wait(state.attempt_number) if callable(wait) else wait

    def should_retry(state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return exc is not None and transient(exc, state.attempt_number) is not None

    def should_stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= attempts:
            return True
        return deadline is not None and clock() + pause(state) >= deadline

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = transient(exc, state.attempt_number) if exc else "error"
        if log is not None:
            log(f"{action}: attempt {state.attempt_number}/{attempts} failed ({reason}); "
                f"will retry in {pause(state):g}s")

    runner = tenacity.Retrying(stop=should_stop, wait=pause, retry=should_retry,
                               before_sleep=before_sleep, reraise=True, sleep=sleep)
    return runner(fn)
