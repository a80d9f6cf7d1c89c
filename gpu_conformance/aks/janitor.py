"""Delete what crashed runs left: resource groups and clusters whose expiry tag has passed.

Only resources carrying both the run-id and the expiry tag are candidates, so nothing a person
created by hand is ever touched. Deletions are started, not awaited, unless asked: ARM finishes
them on its own, and a janitor that blocks for ten minutes per group would stall CI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from gpu_conformance.aks.clients import Clients
from gpu_conformance.aks.errors import call, clean_error
from gpu_conformance.aks.plan import EXPIRES_TAG, RUN_ID_TAG, format_time, parse_time
from gpu_conformance.errors import GpuConformanceError, is_not_found
from gpu_conformance.log import Log

_GROUP_IN_ID = re.compile(r"/resourcegroups/([^/]+)/", re.IGNORECASE)


@dataclass
class SweepResult:
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def expiry(tags: Mapping[str, str] | None) -> datetime | None:
    """The expiry of a resource this project tagged, or None if it is not ours to judge."""
    tags = tags or {}
    if not tags.get(RUN_ID_TAG) or not tags.get(EXPIRES_TAG):
        return None
    return parse_time(tags[EXPIRES_TAG])


def sweep(clients: Clients, now: datetime, log: Log, *, exclude_run_id: str | None = None,
          dry_run: bool = False, wait_s: float | None = None,
          retry_wait: float | None = None) -> SweepResult:
    """Start deleting expired tagged resource groups, then expired tagged clusters elsewhere."""
    result = SweepResult()
    gone: set[str] = set()

    def delete(what: str, begin: Callable[[], Any]) -> None:
        if dry_run:
            log(f"janitor: would delete {what}")
            result.deleted.append(what)
            return

        def once() -> bool:
            try:
                poller = begin()
                if wait_s:
                    poller.result(timeout=wait_s)
            except Exception as exc:
                if is_not_found(exc):
                    return False
                raise
            return True

        try:
            started = call(once, action=f"janitor: delete {what}", log=log, wait=retry_wait)
        except GpuConformanceError as exc:
            result.errors.append(exc.one_line())
            log(f"janitor: {exc.one_line()}")
            return
        if not started:
            log(f"janitor: {what} already gone")
            return
        log(f"janitor: deleting {what}")
        result.deleted.append(what)

    groups = call(lambda: list(clients.resources.resource_groups.list(
        filter=f"tagName eq '{EXPIRES_TAG}'")), action="janitor: list resource groups", log=log,
        wait=retry_wait)
    for group in groups:
        name = str(group.name)
        expires = expiry(group.tags)
        if expires is None or (group.tags or {}).get(RUN_ID_TAG) == exclude_run_id:
            continue
        if expires > now:
            result.kept.append(f"resource group {name}")
            log(f"janitor: keeping resource group {name} until {format_time(expires)}")
            continue
        gone.add(name.lower())
        delete(f"resource group {name} (expired {format_time(expires)})",
               partial(clients.resources.resource_groups.begin_delete, name))

    clusters = call(lambda: list(clients.aks.managed_clusters.list()),
                    action="janitor: list AKS clusters", log=log, wait=retry_wait)
    for cluster in clusters:
        expires = expiry(cluster.tags)
        match = _GROUP_IN_ID.search(str(cluster.id or ""))
        if expires is None or match is None or match.group(1).lower() in gone:
            continue
        if (cluster.tags or {}).get(RUN_ID_TAG) == exclude_run_id:
            continue
        group_name, name = match.group(1), str(cluster.name)
        if expires > now:
            result.kept.append(f"cluster {group_name}/{name}")
            continue
        delete(f"cluster {group_name}/{name} (expired {format_time(expires)})",
               partial(clients.aks.managed_clusters.begin_delete, group_name, name))
    return result


def sweep_quietly(clients: Clients, now: datetime, log: Log, **kwargs: Any) -> None:
    """Best effort before provisioning: a janitor failure must not stop the run."""
    try:
        result = sweep(clients, now, log, **kwargs)
    except GpuConformanceError as exc:
        log(f"janitor skipped: {exc.one_line()}")
        return
    except Exception as exc:  # the sweep is optional; the run must go on
        log(f"janitor skipped: {clean_error(exc, 'janitor', None).one_line()}")
        return
    if result.deleted:
        log(f"janitor: started deleting {len(result.deleted)} expired resource(s)")
