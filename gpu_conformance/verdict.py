"""What a judgement of observed objects says; kept free of the Kubernetes client so the
pure checks can run anywhere (e.g. judging real GPU output on a machine without it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What ``evaluate`` says of the objects seen so far."""

    done: bool
    summary: str
    #: set when the objects are in a state they cannot leave: the wait fails at once
    final: str | None = None
