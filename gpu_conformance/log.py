"""The one type every part of the project reports progress through: one line at a time."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def silent(_line: str) -> None:
    """A Log that drops every line."""
