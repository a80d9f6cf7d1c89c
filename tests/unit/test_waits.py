"""gpu_conformance.waits.wait_for with a fake list function, a fake watch and a fake clock."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from gpu_conformance import waits
from gpu_conformance.errors import FinalStateError, WaitTimeout
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for
from tests.unit.k8s_objects import listed, named


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeWatch:
    """Each stream() call plays the next script: a list of events, or an exception to raise.

    When a script runs out the server "closes" the watch after ``timeout_seconds``.
    """

    scripts: list[Iterable[dict[str, Any]] | BaseException] = []
    calls: list[dict[str, Any]] = []
    stopped = 0
    clock: FakeClock | None = None

    def stream(self, func: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        type(self).calls.append(kwargs)
        script = type(self).scripts.pop(0) if type(self).scripts else []
        if isinstance(script, BaseException):
            raise script
        yield from script
        clock = type(self).clock
        if clock is not None:
            clock.now += kwargs["timeout_seconds"]

    def stop(self) -> None:
        type(self).stopped += 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock, and a fake Watch class that advances it whenever a watch chunk ends."""
    fake = FakeClock()
    monkeypatch.setattr(FakeWatch, "scripts", [])
    monkeypatch.setattr(FakeWatch, "calls", [])
    monkeypatch.setattr(FakeWatch, "stopped", 0)
    monkeypatch.setattr(FakeWatch, "clock", fake)
    monkeypatch.setattr("gpu_conformance.waits.watch.Watch", FakeWatch)
    return fake


class Lister:
    """A ``list_*`` method: returns the next prepared list, repeating the last one."""

    def __init__(self, *lists: list[Any]) -> None:
        self.lists = list(lists)
        self.kwargs: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.kwargs.append(kwargs)
        items = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
        return listed(items, resource_version=str(100 + len(self.kwargs)))


def ready_count(objects: list[Any]) -> Verdict:
    ready = sorted(o.metadata.name for o in objects if (o.metadata.labels or {}).get("state") == "ready")
    failed = [o.metadata.name for o in objects if (o.metadata.labels or {}).get("state") == "failed"]
    if failed:
        return Verdict(False, f"{len(ready)}/2 ready", final=f"{failed[0]} failed")
    return Verdict(len(ready) == 2, f"{len(ready)}/2 ready")


def event(kind: str, obj: Any) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def test_done_on_initial_list(clock: FakeClock) -> None:
    lister = Lister([named("a", state="ready"), named("b", state="ready")])
    lines: list[str] = []
    result = wait_for("2 pods ready", lister, ready_count, timeout=60, timeout_name="nodes-ready",
                      progress=lines.append, clock=clock, namespace="ns")
    assert sorted(o.metadata.name for o in result) == ["a", "b"]
    assert lister.kwargs == [{"namespace": "ns"}]
    assert FakeWatch.calls == []
    assert lines == ["[  0.0s] 2/2 ready"]


def test_done_after_modified_event(clock: FakeClock) -> None:
    FakeWatch.scripts = [[
        event("ADDED", named("b", "102")),
        event("BOOKMARK", named("", "103")),
        event("MODIFIED", named("b", "104", state="ready")),
        event("ADDED", named("never-seen", "105")),
    ]]
    lister = Lister([named("a", state="ready")])
    result = wait_for("2 pods ready", lister, ready_count, timeout=60, timeout_name="nodes-ready",
                      clock=clock, label_selector="app=x")
    assert sorted(o.metadata.name for o in result) == ["a", "b"]
    [watch_call] = FakeWatch.calls
    assert watch_call == {"resource_version": "101", "timeout_seconds": 30, "_request_timeout": 35,
                          "allow_watch_bookmarks": True, "label_selector": "app=x"}
    assert FakeWatch.stopped == 1


def test_deleted_event_removes_the_object(clock: FakeClock) -> None:
    FakeWatch.scripts = [[
        event("DELETED", named("stale", "102")),
        event("ADDED", named("b", "103", state="ready")),
    ]]
    seen: list[list[str]] = []

    def evaluate(objects: list[Any]) -> Verdict:
        seen.append(sorted(o.metadata.name for o in objects))
        return ready_count(objects)

    lister = Lister([named("a", state="ready"), named("stale")])
    result = wait_for("2 pods ready", lister, evaluate, timeout=60, timeout_name="nodes-ready",
                      clock=clock)
    assert sorted(o.metadata.name for o in result) == ["a", "b"]
    assert seen == [["a", "stale"], ["a"], ["a", "b"]]


def test_final_state_raises_at_once(clock: FakeClock) -> None:
    FakeWatch.scripts = [[event("MODIFIED", named("a", "102", state="failed")),
                          event("MODIFIED", named("b", "103", state="ready"))]]
    with pytest.raises(FinalStateError) as info:
        wait_for("2 pods ready", Lister([named("a"), named("b", state="ready")]), ready_count,
                 timeout=60, timeout_name="nodes-ready", clock=clock)
    assert str(info.value) == "expected 2 pods ready, but a failed"
    assert clock.now == 1000.0
    assert FakeWatch.stopped == 1


def test_final_state_on_initial_list(clock: FakeClock) -> None:
    with pytest.raises(FinalStateError, match=r"^expected 2 pods ready, but a failed$"):
        wait_for("2 pods ready", Lister([named("a", state="failed")]), ready_count,
                 timeout=60, timeout_name="nodes-ready", clock=clock)
    assert FakeWatch.calls == []


def test_timeout_states_expectation_and_last_summary(clock: FakeClock) -> None:
    FakeWatch.scripts = [[event("MODIFIED", named("a", "102", state="ready"))]]
    with pytest.raises(WaitTimeout) as info:
        wait_for("2 pods ready", Lister([named("a"), named("b")]), ready_count,
                 timeout=45, timeout_name="plugin-rollout", clock=clock)
    assert str(info.value) == ("timed out after 45s (plugin-rollout timeout): expected 2 pods ready, "
                               "got instead: 1/2 ready")
    assert [c["timeout_seconds"] for c in FakeWatch.calls] == [30, 15]
    assert clock.now == 1045.0


def test_recheck_every_relists_between_short_watches(clock: FakeClock) -> None:
    lister = Lister([named("a")], [named("a", state="ready"), named("b", state="ready")])
    wait_for("2 pods ready", lister, ready_count, timeout=60, timeout_name="job-complete",
             clock=clock, recheck_every=5)
    assert len(lister.kwargs) == 2
    assert [c["timeout_seconds"] for c in FakeWatch.calls] == [5]
    assert clock.now == 1005.0


def test_watch_error_event_relists(clock: FakeClock) -> None:
    FakeWatch.scripts = [[event("ERROR", named("", "0")),
                          event("MODIFIED", named("b", "999", state="ready"))]]
    lister = Lister([named("a", state="ready")], [named("a", state="ready"), named("b", state="ready")])
    wait_for("2 pods ready", lister, ready_count, timeout=60, timeout_name="nodes-ready", clock=clock)
    assert len(lister.kwargs) == 2


def test_gone_410_relists(clock: FakeClock) -> None:
    FakeWatch.scripts = [ApiException(status=410, reason="Gone")]
    lister = Lister([named("a")], [named("a", state="ready"), named("b", state="ready")])
    wait_for("2 pods ready", lister, ready_count, timeout=60, timeout_name="nodes-ready", clock=clock)
    assert len(lister.kwargs) == 2


def test_dropped_connection_is_noted_and_relisted(clock: FakeClock) -> None:
    FakeWatch.scripts = [ConnectionResetError("connection reset by peer")]
    lister = Lister([named("a")], [named("a", state="ready"), named("b", state="ready")])
    lines: list[str] = []
    wait_for("2 pods ready", lister, ready_count, timeout=60, timeout_name="nodes-ready",
             progress=lines.append, clock=clock)
    assert lines == ["[  0.0s] 0/2 ready",
                     "[  0.0s] watch interrupted (connection reset by peer); listing again",
                     "[  0.0s] 2/2 ready"]


def test_permanent_watch_error_is_raised(clock: FakeClock) -> None:
    FakeWatch.scripts = [ApiException(status=403, reason="Forbidden")]
    with pytest.raises(ApiException) as info:
        wait_for("2 pods ready", Lister([named("a")]), ready_count, timeout=60,
                 timeout_name="nodes-ready", clock=clock)
    assert info.value.status == 403
    assert FakeWatch.stopped == 1


def test_progress_lines_on_state_change_only(clock: FakeClock) -> None:
    def script() -> Iterator[dict[str, Any]]:
        clock.now = 1002.0
        yield event("MODIFIED", named("a", "102", other="x"))
        clock.now = 1003.0
        yield event("MODIFIED", named("a", "103", state="ready"))
        clock.now = 1012.5
        yield event("MODIFIED", named("b", "104", state="ready"))

    FakeWatch.scripts = [script()]
    lines: list[str] = []
    wait_for("2 pods ready", Lister([named("a"), named("b")]), ready_count, timeout=600,
             timeout_name="plugin-rollout", progress=lines.append, clock=clock)
    assert lines == ["[  0.0s] 0/2 ready", "[  3.0s] 1/2 ready", "[ 12.5s] 2/2 ready"]


def test_progress_repeats_during_a_long_quiet_spell(clock: FakeClock) -> None:
    def script() -> Iterator[dict[str, Any]]:
        clock.now = 1000.0 + waits.PROGRESS_EVERY
        yield event("MODIFIED", named("a", "102", other="x"))
        clock.now += 1
        yield event("MODIFIED", named("a", "103", other="y"))
        clock.now += 1
        yield event("MODIFIED", named("a", "104", state="ready"))

    FakeWatch.scripts = [script()]
    lines: list[str] = []
    with pytest.raises(WaitTimeout):
        wait_for("2 pods ready", Lister([named("a"), named("b")]), ready_count, timeout=20,
                 timeout_name="plugin-rollout", progress=lines.append, clock=clock)
    assert lines == ["[  0.0s] 0/2 ready", "[ 15.0s] 0/2 ready", "[ 17.0s] 1/2 ready"]
