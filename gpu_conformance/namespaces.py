"""The run's namespaces: created labelled with the run id, deleted (and, where the cluster
outlives the run, awaited) at the end."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from gpu_conformance import kapi
from gpu_conformance.errors import is_not_found, one_line
from gpu_conformance.kube import call, is_conflict
from gpu_conformance.log import Log
from gpu_conformance.objects import RUN_LABEL
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for


def namespace_name(run_id: str, worker: str) -> str:
    return f"gpuconf-{run_id}-{worker}".lower()[:63].rstrip("-")


def create_namespace(api: client.ApiClient, name: str, run_id: str,
                     ready_timeout: float | None = None) -> None:
    """Create it labelled with the run id; one the run already made (its Lease namespace, or a
    create whose answer was lost) is fine. With ``ready_timeout``, wait until its default
    ServiceAccount exists: pods cannot be created before (the Job controller would back off)."""
    core = kapi.CoreV1Api(api)
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {RUN_LABEL: run_id}}}
    try:
        call(core.create_namespace, body)
    except Exception as exc:
        if not is_conflict(exc):
            raise
        existing: Any = call(core.read_namespace, name)
        if (existing.metadata.labels or {}).get(RUN_LABEL) != run_id:
            raise
    if ready_timeout is not None:
        wait_for_default_service_account(api, name, ready_timeout)


def wait_for_default_service_account(api: client.ApiClient, namespace: str, timeout: float,
                                     log: Log | None = None) -> None:
    core = kapi.CoreV1Api(api)

    def present(items: list[Any]) -> Verdict:
        return Verdict(bool(items), "default ServiceAccount " + ("present" if items else "missing"))

    wait_for(f"the default ServiceAccount of namespace {namespace}",
             core.list_namespaced_service_account, present, timeout=timeout,
             timeout_name="namespace-ready", progress=log, namespace=namespace,
             field_selector="metadata.name=default")


def delete_namespace(api: client.ApiClient, name: str, timeout: float, log: Log | None = None,
                     wait: bool = True) -> None:
    """Delete; with ``wait``, until it is gone, so a run leaves the cluster as it found it."""
    core = kapi.CoreV1Api(api)
    try:
        call(core.delete_namespace, name, body={"propagationPolicy": "Background"})
    except Exception as exc:
        if is_not_found(exc):
            return
        raise
    if not wait:
        return

    def gone(items: list[Any]) -> Verdict:
        left = [n for n in items if n.metadata.name == name]
        phase = left[0].status.phase if left and left[0].status else None
        return Verdict(not left, f"namespace {name} {phase or 'gone'}")

    wait_for(f"namespace {name} deleted", core.list_namespace, gone, timeout=timeout,
             timeout_name="namespace-delete", progress=log, field_selector=f"metadata.name={name}")


def sweep_namespaces(api: client.ApiClient, run_id: str, timeout: float, log: Log,
                     wait: bool = True) -> list[str]:
    """Delete every namespace this run labelled (workers' leftovers after Ctrl-C)."""
    core = kapi.CoreV1Api(api)
    failures = []
    labelled: list[Any] = call(core.list_namespace,
                               label_selector=f"{RUN_LABEL}={run_id}").items
    for ns in labelled:
        name: str = ns.metadata.name
        try:
            delete_namespace(api, name, timeout, wait=wait)
            log(f"removed namespace {name}")
        except Exception as exc:
            failures.append(f"namespace {name}: {one_line(exc)}; clean up by hand: "
                            f"kubectl delete namespace {name}")
    return failures
