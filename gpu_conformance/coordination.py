"""Runs that share a cluster: who is alive, what a dead run left, and the shared device plugin.

Every run holds a Lease (``coordination.k8s.io``) named after it in its own namespace and
renews it while it lives. A run is dead when its Lease has expired, or at once when its holder
was a process on this machine that no longer exists (a SIGKILLed run). Whatever a dead run
labelled with its id (namespaces, and with them its Jobs, pods and ConfigMaps) is swept by the
next run or by ``gpu-conformance sweep``.

A device plugin a run installs is not the run's alone: it carries the ``managed-by`` label
and the list of runs using it in an annotation. Concurrent runs join it instead of failing on
"already exists"; each run leaves at its end, and the last one to leave deletes it (the
delete is preconditioned on the resourceVersion it saw, so a run joining at that moment is
never left without a plugin). A managed plugin is never mistaken for the cluster's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client

from gpu_conformance import kapi
from gpu_conformance.errors import UsageError, is_not_found, one_line
from gpu_conformance.kube import call, is_conflict
from gpu_conformance.log import Log
from gpu_conformance.objects import RUN_LABEL

MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGED_VALUE = "gpu-conformance"
USERS_ANNOTATION = "gpu-conformance.io/users"
MANIFEST_ANNOTATION = "gpu-conformance.io/manifest-sha256"
#: a run renews its Lease this often; one that has not for LEASE_SECONDS is dead
RENEW_SECONDS = 15
LEASE_SECONDS = 60
#: a run's namespace with no Lease yet: the run may be starting; older than this, it is dead
STARTING_GRACE = timedelta(minutes=2)
UPDATE_ATTEMPTS = 8


def run_namespace(run_id: str) -> str:
    """The namespace holding a run's Lease (its xdist workers' namespaces are beside it)."""
    return f"gpuconf-{run_id}"


def holder_identity() -> str:
    """``host/pid/start``: on the same host, a dead holder is recognised without waiting."""
    return f"{socket.gethostname()}/{os.getpid()}/{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def holder_gone(identity: str) -> bool:
    """True when ``identity`` names a process on this host that is no longer running."""
    host, _, rest = identity.partition("/")
    pid, _, started = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not Path(f"/proc/{pid}").exists() or (started not in ("", "?")
                                                  and _start_time(int(pid)) != started)


def _now() -> datetime:
    return datetime.now(UTC)


class RunLease:
    """This run's namespace and Lease, renewed by a daemon thread until ``stop``."""

    def __init__(self, api: client.ApiClient, run_id: str, log: Log) -> None:
        self.api, self.run_id, self.log = api, run_id, log
        self.namespace = run_namespace(run_id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> dict[str, Any]:
        now = _now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        return {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.namespace, "namespace": self.namespace,
                         "labels": {RUN_LABEL: self.run_id}},
            "spec": {"holderIdentity": holder_identity(), "leaseDurationSeconds": LEASE_SECONDS,
                     "acquireTime": now, "renewTime": now},
        }

    def create(self) -> None:
        core = kapi.CoreV1Api(self.api)
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": {RUN_LABEL: self.run_id}}}
        try:
            call(core.create_namespace, body)
        except Exception as exc:
            if not is_conflict(exc):
                raise
        try:
            call(kapi.CoordinationV1Api(self.api).create_namespaced_lease, self.namespace,
                 self._body())
        except Exception as exc:
            if not is_conflict(exc):
                raise

    def renew(self) -> None:
        now = _now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        call(kapi.CoordinationV1Api(self.api).patch_namespaced_lease, self.namespace,
             self.namespace, {"spec": {"renewTime": now}})

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(RENEW_SECONDS):
                try:
                    self.renew()
                except Exception as exc:
                    if is_not_found(exc):
                        return  # the run's namespace is being deleted: the run is ending
                    # the next round tries again; expiry is 4 rounds away
                    self.log(f"run lease: renewal failed ({one_line(exc)})")

        self._thread = threading.Thread(target=loop, name="gpu-conformance-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def lease_alive(lease: Any, now: datetime) -> bool:
    spec = getattr(lease, "spec", None)
    holder = getattr(spec, "holder_identity", None) or ""
    if holder and holder_gone(holder):
        return False
    renewed = getattr(spec, "renew_time", None) or getattr(spec, "acquire_time", None)
    duration = getattr(spec, "lease_duration_seconds", None) or LEASE_SECONDS
    if not isinstance(renewed, datetime):
        return False
    return renewed + timedelta(seconds=duration) > now


def live_runs(api: client.ApiClient, run_ids: set[str]) -> set[str]:
    """Which of ``run_ids`` hold a live Lease (or are still starting)."""
    coordination, core = kapi.CoordinationV1Api(api), kapi.CoreV1Api(api)
    alive, now = set(), _now()
    for run_id in run_ids:
        name = run_namespace(run_id)
        try:
            lease = call(coordination.read_namespaced_lease, name, name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            try:
                ns = call(core.read_namespace, name)
            except Exception as inner:
                if not is_not_found(inner):
                    raise
                continue
            created = getattr(ns.metadata, "creation_timestamp", None)
            if isinstance(created, datetime) and now - created < STARTING_GRACE:
                alive.add(run_id)
            continue
        if lease_alive(lease, now):
            alive.add(run_id)
    return alive


# --- the shared device plugin -----------------------------------------------------------------

def manifest_digest(objects: list[dict[str, Any]]) -> str:
    """What a plugin install means: runs share a plugin only when they would install the same."""
    text = json.dumps(objects, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_managed(obj: Any) -> bool:
    meta = getattr(obj, "metadata", None)
    return ((getattr(meta, "labels", None) or {}).get(MANAGED_LABEL) == MANAGED_VALUE)


def users_of(ds: Any) -> list[str]:
    annotations = getattr(ds.metadata, "annotations", None) or {}
    return [u for u in annotations.get(USERS_ANNOTATION, "").split(",") if u]


@dataclass(frozen=True)
class SharedPlugin:
    namespace: str
    name: str


def _update_users(apps: kapi.AppsV1Api, plugin: SharedPlugin, change: Any) -> Any | None:
    """Apply ``change(users) -> users`` with optimistic concurrency; the DaemonSet after, or
    None when it is gone."""
    for _ in range(UPDATE_ATTEMPTS):
        try:
            ds: Any = call(apps.read_namespaced_daemon_set, plugin.name, plugin.namespace)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        users = change(users_of(ds))
        patch = {"metadata": {"resourceVersion": ds.metadata.resource_version,
                              "annotations": {USERS_ANNOTATION: ",".join(users)}}}
        try:
            return call(apps.patch_namespaced_daemon_set, plugin.name, plugin.namespace, patch)
        except Exception as exc:
            if is_not_found(exc):
                return None
            if not is_conflict(exc):
                raise
    raise UsageError(f"could not update the users of DaemonSet {plugin.namespace}/{plugin.name}: "
                     f"it changed {UPDATE_ATTEMPTS} times in a row")


def join(api: client.ApiClient, plugin: SharedPlugin, run_id: str) -> bool:
    """Add this run to a managed plugin's users; False when it has gone meanwhile."""
    apps = kapi.AppsV1Api(api)
    return _update_users(apps, plugin, lambda users: sorted({*users, run_id})) is not None


def leave(api: client.ApiClient, plugin: SharedPlugin, run_id: str, log: Log,
          dead: set[str] | None = None, *, keep: bool = False) -> None:
    """Remove this run (and ``dead`` runs) from the users; the last one out deletes the plugin
    and the namespace gpu-conformance created for it (``keep``: leaves it for the next run)."""
    apps = kapi.AppsV1Api(api)
    gone = {run_id, *(dead or ())}
    ds: Any = _update_users(apps, plugin, lambda users: [u for u in users if u not in gone])
    if ds is None or users_of(ds):
        return
    if keep:
        log(f"the device plugin DaemonSet {plugin.namespace}/{plugin.name} stays with the kept "
            "cluster; the next run uses it")
        return
    try:
        call(apps.delete_namespaced_daemon_set, plugin.name, plugin.namespace,
             body={"propagationPolicy": "Background",
                   "preconditions": {"resourceVersion": ds.metadata.resource_version}})
    except Exception as exc:
        if is_conflict(exc):  # someone joined between our update and the delete
            return
        if not is_not_found(exc):
            raise
    log(f"removed the shared device plugin DaemonSet {plugin.namespace}/{plugin.name} "
        "(its last user left)")
    delete_managed_namespace(api, plugin.namespace, log)


def delete_managed_namespace(api: client.ApiClient, name: str, log: Log) -> bool:
    """Delete a namespace gpu-conformance created, once nothing managed is left in it; True
    when its deletion was asked for."""
    core, apps = kapi.CoreV1Api(api), kapi.AppsV1Api(api)
    try:
        ns = call(core.read_namespace, name)
    except Exception as exc:
        if is_not_found(exc):
            return False
        raise
    if not is_managed(ns):
        return False
    left = [d for d in call(apps.list_namespaced_daemon_set, name).items if is_managed(d)]
    if left:
        return False
    with contextlib.suppress(Exception):
        call(core.delete_namespace, name, body={"propagationPolicy": "Background"})
        log(f"removed namespace {name} (created for the shared device plugin)")
        return True
    return False


# --- the sweep ----------------------------------------------------------------------------------

@dataclass
class SweepResult:
    dead_runs: list[str]
    namespaces: list[str]
    plugins: list[str]


def sweep(api: client.ApiClient, log: Log, *, keep: set[str] | None = None,
          keep_plugins: bool = False) -> SweepResult:
    """Remove what dead runs left: their namespaces and their places in shared plugins
    (``keep_plugins``: a plugin nobody uses stays, as a kept offline cluster's does)."""
    core, apps = kapi.CoreV1Api(api), kapi.AppsV1Api(api)
    keep = keep or set()
    labelled: list[Any] = call(core.list_namespace, label_selector=RUN_LABEL).items
    by_run: dict[str, list[str]] = {}
    for ns in labelled:
        run_id = (ns.metadata.labels or {}).get(RUN_LABEL)
        if ns.metadata.deletion_timestamp is not None:
            continue  # already being deleted (a finished run that did not wait for it)
        if run_id and run_id not in keep:
            by_run.setdefault(run_id, []).append(ns.metadata.name)
    managed: list[Any] = call(apps.list_daemon_set_for_all_namespaces,
                              label_selector=f"{MANAGED_LABEL}={MANAGED_VALUE}").items
    users = {u for d in managed for u in users_of(d)} - keep
    alive = live_runs(api, set(by_run) | users)
    dead = (set(by_run) | users) - alive
    result = SweepResult(sorted(dead), [], [])
    for run_id in sorted(dead & set(by_run)):
        for name in by_run[run_id]:
            try:
                call(core.delete_namespace, name, body={"propagationPolicy": "Background"})
                result.namespaces.append(name)
                log(f"removed namespace {name}, left by run {run_id}, which is gone")
            except Exception as exc:
                if not is_not_found(exc):
                    log(f"could not remove namespace {name} of dead run {run_id}: {one_line(exc)}")
    for ds in managed:
        if set(users_of(ds)) & dead or (not users_of(ds) and not keep_plugins):
            plugin = SharedPlugin(ds.metadata.namespace, ds.metadata.name)
            leave(api, plugin, "", log, dead=dead, keep=keep_plugins)
            result.plugins.append(f"{plugin.namespace}/{plugin.name}")
    return result
