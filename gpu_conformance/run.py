"""One conformance run: the cluster it uses, the device plugin it relies on, and cleanup.

The process that owns the run (the only one, or the xdist controller) provisions the
cluster and installs the plugin once, before tests are collected, and undoes both at
session end, also after failures, Ctrl-C and SIGTERM. xdist workers receive the result
and only attach.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from gpu_conformance import checks, device_plugin, gpus
from gpu_conformance.backends import backend_from_config
from gpu_conformance.backends.base import ClusterBackend, ClusterHandle
from gpu_conformance.cleanup import CleanupStack
from gpu_conformance.errors import UsageError
from gpu_conformance.kube import call, is_conflict, new_api_client, server_version, short
from gpu_conformance.objects import Objects, describe, kubectl_delete
from gpu_conformance.settings import Settings
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

Log = Callable[[str], None]


def new_run_id() -> str:
    return time.strftime("%m%d%H%M") + "-" + secrets.token_hex(2)


@dataclass
class RunInfo:
    """What workers need to know about the run: JSON-serializable."""

    #: the cluster outlives the run (attach, or kept): leave it exactly as found
    @property
    def cluster_outlives_run(self) -> bool:
        return self.backend == "attach" or self.properties.get("cluster_kept") == "true"

    run_id: str
    backend: str
    kubeconfig: str | None
    context: str | None
    cluster_name: str
    expected_gpu: str | None
    plugin: dict[str, Any] | None
    properties: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        return cls(**json.loads(text))

    def api_client(self) -> client.ApiClient:
        return new_api_client(Path(self.kubeconfig) if self.kubeconfig else None, self.context)


class RunContext:
    def __init__(self, settings: Settings, backend: ClusterBackend, run_id: str, log: Log,
                 plugin_image: str | None = None) -> None:
        self.settings, self.backend, self.run_id, self.log = settings, backend, run_id, log
        #: replaces the installed plugin's image where no GPU exists (kind's stand-in)
        self.plugin_image = plugin_image
        self.cleanups = CleanupStack()
        self.info: RunInfo | None = None

    @classmethod
    def from_pytest_config(cls, config: Any, settings: Settings, log: Log) -> RunContext:
        plugin_image = None
        if settings.backend == "kind":
            from gpu_conformance.backends import kind

            plugin_image = kind.plugin_image_override(config)
        return cls(settings, backend_from_config(config, settings.backend), new_run_id(), log,
                   plugin_image)

    def start(self) -> RunInfo:
        """Provision (or attach), then make sure a device plugin is there. Cleanup first."""
        if not self.settings.keep_cluster:
            self.cleanups.push(f"{self.backend.name} cluster", lambda: self.backend.down(self.log))
        handle = self.backend.up(self.log)
        api = new_api_client(handle.kubeconfig, handle.context)
        try:
            version = server_version(api)
            plugin = self._plugin(api)
            self.info = RunInfo(
                run_id=self.run_id, backend=handle.backend,
                kubeconfig=str(handle.kubeconfig) if handle.kubeconfig else None,
                context=handle.context, cluster_name=handle.name,
                expected_gpu=handle.expected_gpu,
                plugin=plugin.to_dict() if plugin else None,
                properties=self._properties(api, handle, version, plugin),
            )
        finally:
            api.close()
        return self.info

    def finish(self) -> list[str]:
        return self.cleanups.run(self.log)

    # --- device plugin --------------------------------------------------------------------
    def _plugin(self, api: client.ApiClient) -> device_plugin.PluginRef | None:
        mode = self.settings.plugin_mode
        apps = client.AppsV1Api(api)
        if mode in ("auto", "existing"):
            existing = device_plugin.find_existing(apps)
            if existing:
                ref = device_plugin.ref_for(existing[0], installed_by_run=False)
                self.log(f"using the existing device plugin DaemonSet {ref.namespace}/{ref.name} "
                         f"({ref.image}); it will not be removed")
                return ref
            if mode == "existing":
                self.log("no NVIDIA device plugin DaemonSet found (--plugin existing)")
                return None
        objects = device_plugin.load_manifest(self.settings.plugin_manifest)
        return self._install(api, objects)

    def _install(self, api: client.ApiClient, objects: list[dict[str, Any]]) -> device_plugin.PluginRef:
        store = Objects(api)
        if self.plugin_image:
            for container in device_plugin.daemonset_of(objects)["spec"]["template"]["spec"]["containers"]:
                container["image"] = self.plugin_image
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            if obj["kind"] == "Namespace":
                try:
                    store.get(obj)
                    continue  # a namespace the cluster already had is never deleted
                except Exception as exc:
                    if getattr(exc, "status", None) != 404:
                        raise
            meta.setdefault("labels", {})[device_plugin.RUN_LABEL] = self.run_id
            self.cleanups.push(f"delete {describe(obj)}", _deleter(store, obj), kubectl_delete(obj))
            try:
                store.create(obj)
            except Exception as exc:
                self.cleanups.entries.pop()
                if is_conflict(exc):
                    raise UsageError(
                        f"{describe(obj)} already exists and was not created by this run",
                        hint="use --plugin existing, or remove it first") from None
                raise
            self.log(f"created {describe(obj)}")
        ds = device_plugin.daemonset_of(objects)
        image = ds["spec"]["template"]["spec"]["containers"][0].get("image", "")
        return device_plugin.PluginRef(ds["metadata"].get("namespace", "default"),
                                       ds["metadata"]["name"], image, True)

    def _properties(self, api: client.ApiClient, handle: ClusterHandle, version: str,
                    plugin: device_plugin.PluginRef | None) -> dict[str, str]:
        nodes = call(client.CoreV1Api(api).list_node).items
        gpu_nodes = checks.find_gpu_nodes(nodes)
        models = sorted({n.labels.get(gpus.PRODUCT_LABEL) or n.labels.get(
            gpus.INSTANCE_TYPE_LABEL, "unknown") for n in gpu_nodes})
        props = {
            "backend": handle.backend,
            "cluster": handle.name,
            "kubernetes_version": version,
            "node_count": str(len(nodes)),
            "gpu_node_count": str(len(gpu_nodes)),
            "gpu_models": ", ".join(models) or "none",
            "plugin": f"{plugin.namespace}/{plugin.name}" if plugin else "none",
            "plugin_image": plugin.image if plugin else "none",
            "plugin_installed_by_run": str(bool(plugin and plugin.installed_by_run)).lower(),
            "workloads": ", ".join(self.settings.workloads),
            "run_id": self.run_id,
        }
        props.update(handle.properties)
        kept = (self.settings.keep_cluster or props.get("aks.mode", "created") != "created"
                or props.get("kind_cluster_reused") == "true")
        props["cluster_kept"] = str(kept).lower()
        return props


def _deleter(store: Objects, obj: dict[str, Any]) -> Callable[[], None]:
    return lambda: store.delete(obj)


def create_namespace(api: client.ApiClient, name: str, run_id: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {device_plugin.RUN_LABEL: run_id}}}
    call(client.CoreV1Api(api).create_namespace, body)


def delete_namespace(api: client.ApiClient, name: str, timeout: float, log: Log | None = None,
                     wait: bool = True) -> None:
    """Delete; with ``wait``, until it is gone, so a run leaves the cluster as it found it."""
    core = client.CoreV1Api(api)
    try:
        call(core.delete_namespace, name, body={"propagationPolicy": "Background"})
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
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
    core = client.CoreV1Api(api)
    failures = []
    labelled: list[Any] = call(core.list_namespace,
                               label_selector=f"{device_plugin.RUN_LABEL}={run_id}").items
    for ns in labelled:
        name: str = ns.metadata.name
        try:
            delete_namespace(api, name, timeout, wait=wait)
            log(f"removed namespace {name}")
        except Exception as exc:
            failures.append(f"namespace {name}: {short(exc)}; clean up by hand: "
                            f"kubectl delete namespace {name}")
    return failures
