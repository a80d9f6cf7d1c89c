"""Bounded list+watch waits that report what they last saw.

Every wait names what it expects and the named timeout that bounds it; it stops at once
when the objects reach a state they cannot leave; on timeout the error says
"expected <description>, got instead: <last state>".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from gpu_conformance.errors import FinalStateError, WaitTimeout, one_line
from gpu_conformance.kube import call, is_transient
from gpu_conformance.log import Log
from gpu_conformance.verdict import Verdict

WATCH_CHUNK_SECONDS = 30  # the server closes each watch after this; the wait then resumes
PROGRESS_EVERY = 15.0  # a "still waiting" line at least this often during long waits
PROGRESS_MIN_GAP = 1.0  # state changes faster than this are summarized by the next line
RELIST_PAUSE = 0.5  # after a dropped watch, before listing again (an API server restarting)


def _meta(obj: Any, field: str) -> Any:
    """A metadata field of a watch event's object, in either shape the client hands over:
    a model (ADDED/MODIFIED/DELETED) or a plain dict (BOOKMARK, ERROR, unknown kinds)."""
    if isinstance(obj, dict):
        meta = obj.get("metadata") or {}
        key = {"resource_version": "resourceVersion"}.get(field, field)
        return meta.get(key) if isinstance(meta, dict) else None
    meta = getattr(obj, "metadata", None)
    return getattr(meta, field, None) if meta is not None else None


def wait_for(
    description: str,
    list_fn: Callable[..., Any],
    evaluate: Callable[[list[Any]], Verdict],
    *,
    timeout: float,
    timeout_name: str,
    progress: Log | None = None,
    clock: Callable[[], float] = time.monotonic,
    recheck_every: float | None = None,
    watch_seconds: float = WATCH_CHUNK_SECONDS,
    **list_kwargs: Any,
) -> list[Any]:
    """List, then watch ``list_fn`` until ``evaluate`` says done; never longer than ``timeout``."""
    deadline = clock() + timeout
    objects: dict[str, Any] = {}
    verdict = Verdict(False, "nothing observed yet")
    reporter = _Progress(progress, description, clock)
    resource_version: str | None = None

    def judge() -> Verdict:
        nonlocal verdict
        verdict = evaluate(list(objects.values()))
        reporter.update(verdict.summary, force=verdict.done or verdict.final is not None)
        if verdict.final:
            raise FinalStateError(f"expected {description}, but {verdict.final}")
        return verdict

    def timed_out() -> WaitTimeout:
        return WaitTimeout(
            f"timed out after {timeout:g}s ({timeout_name} timeout): expected {description}, "
            f"got instead: {verdict.summary}"
        )

    while True:
        if resource_version is None:
            try:
                listed = call(list_fn, deadline=deadline, **list_kwargs)
            except Exception as exc:
                if not is_transient(exc) or clock() >= deadline:
                    if is_transient(exc):
                        raise timed_out() from None
                    raise
                reporter.note(f"listing failed ({one_line(exc)}); trying again")
                time.sleep(min(RELIST_PAUSE, max(0.0, deadline - clock())))
                continue
            objects = {item.metadata.uid: item for item in listed.items}
            resource_version = listed.metadata.resource_version
            if judge().done:
                return list(objects.values())
        remaining = deadline - clock()
        if remaining <= 0:
            raise timed_out()
        # recheck_every: states that change with time alone (e.g. "unschedulable for 10 s")
        # need a fresh look even when no event arrives
        chunk = max(1, int(min(remaining, recheck_every or watch_seconds, watch_seconds)))
        stream = watch.Watch()
        try:
            for event in stream.stream(
                list_fn, resource_version=resource_version, timeout_seconds=chunk,
                _request_timeout=chunk + 5, allow_watch_bookmarks=True, **list_kwargs,
            ):
                kind, obj = event.get("type"), event.get("object")
                if kind == "ERROR":
                    resource_version = None  # e.g. 410 Gone: resourceVersion too old; relist
                    break
                resource_version = _meta(obj, "resource_version") or resource_version
                if kind not in ("ADDED", "MODIFIED", "DELETED") or isinstance(obj, dict):
                    continue  # BOOKMARK, or an object the client could not deserialize
                uid = _meta(obj, "uid")
                if kind == "DELETED":
                    objects.pop(uid, None)
                else:
                    objects[uid] = obj
                if judge().done:
                    return list(objects.values())
                if clock() >= deadline:
                    break
            if recheck_every:
                resource_version = None
        except ApiException as exc:
            if exc.status != 410 and not is_transient(exc):
                raise
            resource_version = None
        except FinalStateError:
            raise
        except Exception as exc:  # the watch connection dropped: relist within the deadline
            if not is_transient(exc):
                raise
            reporter.note(f"watch interrupted ({one_line(exc)}); listing again")
            resource_version = None
            time.sleep(min(RELIST_PAUSE, max(0.0, deadline - clock())))
        finally:
            stream.stop()


class _Progress:
    """Progress lines: each change of state, and a reminder during long quiet spells."""

    def __init__(self, sink: Log | None, description: str, clock: Callable[[], float]) -> None:
        self.sink, self.description, self.clock = sink, description, clock
        self.started = clock()
        self.last_summary: str | None = None
        self.last_time = self.started

    def update(self, summary: str, force: bool = False) -> None:
        now = self.clock()
        changed = summary != self.last_summary and (force or now - self.last_time >= PROGRESS_MIN_GAP)
        if changed or now - self.last_time >= PROGRESS_EVERY or self.last_summary is None:
            self.note(summary)

    def note(self, text: str) -> None:
        now = self.clock()
        if not text.startswith(("watch ", "listing ")):
            self.last_summary = text
        self.last_time = now
        if self.sink:
            self.sink(f"[{now - self.started:5.1f}s] {text}")
