"""One conformance run: the cluster it uses, the device plugin it relies on, and cleanup.

The process that owns the run (the only one, or the xdist controller) provisions the
cluster and installs the plugin once, before tests are collected, and undoes both at
session end, also after failures, Ctrl-C and SIGTERM. xdist workers receive the result
and only attach.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from gpu_conformance import backends, device_plugin, gpus
from gpu_conformance.backends.base import ClusterBackend, ClusterHandle, Traits
from gpu_conformance.cleanup import CleanupStack
from gpu_conformance.errors import UsageError, is_not_found
from gpu_conformance.gpu_nodes import find_gpu_nodes
from gpu_conformance.kube import call, is_conflict, new_api_client, server_version
from gpu_conformance.log import Log
from gpu_conformance.objects import RUN_LABEL, Objects, describe, kubectl_delete
from gpu_conformance.settings import Settings, new_run_id


@dataclass
class RunInfo:
    """What workers need to know about the run: JSON-serializable."""

    run_id: str
    backend: str
    kubeconfig: str | None
    context: str | None
    cluster_name: str
    expected_gpu: str | None
    plugin: dict[str, Any] | None
    traits: dict[str, bool] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def cluster_outlives_run(self) -> bool:
        """Leave the cluster exactly as found: wait for what the run deletes to be gone."""
        return bool(self.traits.get("kept", True)) or not self.traits.get("owns_cluster", False)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        return cls(**json.loads(text))

    def api_client(self) -> client.ApiClient:
        return new_api_client(Path(self.kubeconfig) if self.kubeconfig else None, self.context)


class RunContext:
    def __init__(self, settings: Settings, backend: ClusterBackend, run_id: str, log: Log) -> None:
        self.settings, self.backend, self.run_id, self.log = settings, backend, run_id, log
        self.cleanups = CleanupStack()
        self.info: RunInfo | None = None

    @classmethod
    def create(cls, settings: Settings, log: Log) -> RunContext:
        """The run's id and backend, from its settings; no cluster touched."""
        run_id = settings.run_id or new_run_id()
        return cls(settings, backends.create(settings, run_id), run_id, log)

    def start(self) -> RunInfo:
        """Provision (or attach), then make sure a device plugin is there. Cleanup first."""
        keep = self.settings.keep_cluster
        self.cleanups.push(f"{self.backend.name} cluster",
                           lambda: self.backend.down(self.log, keep=keep))
        handle = self.backend.up(self.log)
        api = new_api_client(handle.kubeconfig, handle.context)
        try:
            version = server_version(api, budget=self.settings.timeouts["api-ready"])
            plugin = self._plugin(api)
            self.info = RunInfo(
                run_id=self.run_id, backend=self.backend.name,
                kubeconfig=str(handle.kubeconfig) if handle.kubeconfig else None,
                context=handle.context, cluster_name=handle.name,
                expected_gpu=handle.expected_gpu,
                plugin=plugin.to_dict() if plugin else None,
                traits=handle.traits.to_dict(),
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
        self.backend.adapt_plugin(objects)
        return self._install(api, objects)

    def _install(self, api: client.ApiClient, objects: list[dict[str, Any]]) -> device_plugin.PluginRef:
        store = Objects(api)
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            if obj["kind"] == "Namespace":
                try:
                    store.get(obj)
                    continue  # a namespace the cluster already had is never deleted
                except Exception as exc:
                    if not is_not_found(exc):
                        raise
            meta.setdefault("labels", {})[RUN_LABEL] = self.run_id
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
        gpu_nodes = find_gpu_nodes(nodes)
        models = sorted({n.labels.get(gpus.PRODUCT_LABEL) or n.labels.get(
            gpus.INSTANCE_TYPE_LABEL, "unknown") for n in gpu_nodes})
        props = {
            "backend": self.backend.name,
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
            "cluster_kept": str(handle.traits.kept).lower(),
        }
        props.update(handle.properties)
        return props


def _deleter(store: Objects, obj: dict[str, Any]) -> Callable[[], None]:
    return lambda: store.delete(obj)


__all__ = ["RunContext", "RunInfo", "Traits", "new_run_id"]
