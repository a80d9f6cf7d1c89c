"""One module per check, each holding its observation, its judge, its wait and its final-state
rule: ``rollout``, ``capacity``, ``workload``, ``device``. Suites call one function and assert
on the ``Outcome``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """A check's verdict: ``ok``, and the one message that says why not."""

    ok: bool
    message: str = ""
    #: not a verdict on the cluster (e.g. a node busy with other work under --busy skip)
    skip: bool = False

    def __repr__(self) -> str:  # short: pytest shows it next to a failed assert
        return f"Outcome({'skipped' if self.skip else 'passed' if self.ok else 'failed'})"

    @classmethod
    def from_problems(cls, problems: list[str], prefix: str = "") -> Outcome:
        return cls(not problems, prefix + "; ".join(problems) if problems else "")
