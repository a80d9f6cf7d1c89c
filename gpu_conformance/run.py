"""One conformance run: the cluster it uses, the device plugin it relies on, and cleanup.

The process that owns the run (the only one, or the xdist controller) provisions the
cluster, sweeps what dead runs left, takes its Lease and makes sure a device plugin is there,
once, before tests are collected; it undoes all of it at session end, also after failures,
Ctrl-C and SIGTERM. Every cleanup is registered before the thing it cleans is created.
xdist workers receive the result and only attach.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from gpu_conformance import backends, coordination, device_plugin, gpus, kapi, permissions
from gpu_conformance.backends.base import ClusterBackend, ClusterHandle, Traits
from gpu_conformance.cleanup import CleanupStack
from gpu_conformance.coordination import MANAGED_LABEL, MANAGED_VALUE, SharedPlugin
from gpu_conformance.errors import UsageError, is_not_found
from gpu_conformance.gpu_nodes import find_gpu_nodes
from gpu_conformance.kube import call, is_conflict, new_api_client, server_version
from gpu_conformance.log import Log
from gpu_conformance.objects import RUN_LABEL, Objects, describe
from gpu_conformance.settings import Settings, new_run_id
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for


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
    #: the GPU nodes found when the run started, sorted
    gpu_nodes: list[str] = field(default_factory=list)
    #: names per-node tests were given before the nodes existed -> the nodes they stand for
    aliases: dict[str, list[str]] = field(default_factory=dict)

    def resolve(self, name: str) -> list[str]:
        """The GPU node(s) a per-node test's name stands for."""
        return self.aliases.get(name, [name])

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
        self._api: client.ApiClient | None = None
        self._lease: coordination.RunLease | None = None
        #: namespaces the run deleted and waits for (together) before it ends
        self._deleted: list[str] = []
        self._outlives = True
        self._traits: Traits | None = None
        #: namespaces this run created for a device plugin
        self._plugin_namespaces: set[str] = set()

    @classmethod
    def create(cls, settings: Settings, log: Log) -> RunContext:
        """The run's id and backend, from its settings; no cluster touched."""
        run_id = settings.run_id or new_run_id()
        return cls(settings, backends.create(settings, run_id), run_id, log)

    def start(self, named: list[str] | None = None) -> RunInfo:
        """Provision (or attach), sweep, take the Lease, make sure a plugin is there.

        ``named``: the GPU node names per-node tests were given at collection; those that
        turn out not to be node names become aliases of the nodes found.
        """
        keep = self.settings.keep_cluster
        self.cleanups.push(f"{self.backend.name} cluster",
                           lambda: self.backend.down(self.log, keep=keep))
        handle = self.backend.up(self.log)
        self._outlives = handle.traits.kept or not handle.traits.owns_cluster
        self._traits = handle.traits
        self.cleanups.push("wait for the run's deletions", self._await_deletions)
        api = self._api = new_api_client(handle.kubeconfig, handle.context)
        self.cleanups.push("close the API client", api.close)
        version = server_version(api, budget=self.settings.timeouts["api-ready"])
        permissions.require(api)
        if self._outlives:
            coordination.sweep(api, self.log, keep={self.run_id},
                               keep_plugins=handle.traits.keeps_plugin)
        self.cleanups.push("delete the run's namespaces", self._delete_run_namespaces,
                           f"kubectl delete namespace -l {RUN_LABEL}={self.run_id}")
        self._lease = coordination.RunLease(api, self.run_id, self.log)
        self._lease.create()
        self._lease.start()
        plugin = self._plugin(api)
        found = [n.name for n in find_gpu_nodes(call(kapi.CoreV1Api(api).list_node).items)]
        self.info = RunInfo(
            run_id=self.run_id, backend=self.backend.name,
            kubeconfig=str(handle.kubeconfig) if handle.kubeconfig else None,
            context=handle.context, cluster_name=handle.name,
            expected_gpu=handle.expected_gpu,
            plugin=plugin.to_dict() if plugin else None,
            traits=handle.traits.to_dict(),
            properties=self._properties(api, handle, version, plugin),
            gpu_nodes=found, aliases=aliases(named or [], found),
        )
        return self.info

    def finish(self) -> list[str]:
        return self.cleanups.run(self.log)

    # --- cleanup ---------------------------------------------------------------------------
    def _delete_run_namespaces(self) -> None:
        if self._lease is not None:
            self._lease.stop()
        assert self._api is not None
        core = kapi.CoreV1Api(self._api)
        listed: list[Any] = call(core.list_namespace,
                                 label_selector=f"{RUN_LABEL}={self.run_id}").items
        names: list[str] = [ns.metadata.name for ns in listed]
        for name in names:
            try:
                call(core.delete_namespace, name, body={"propagationPolicy": "Background"})
            except Exception as exc:
                if not is_not_found(exc):
                    raise
            self._deleted.append(name)
        if names:
            self.log(f"deleting namespace(s) {', '.join(names)}")

    def _await_deletions(self) -> None:
        """One wait for every namespace the run deleted, where the cluster outlives the run."""
        if not self._deleted or not self._outlives or self._api is None:
            return
        if self._traits is not None and not self._traits.await_deletions:
            self.log(f"namespace(s) {', '.join(sorted(self._deleted))} are being deleted")
            return
        core, wanted = kapi.CoreV1Api(self._api), set(self._deleted)

        def gone(items: list[Any]) -> Verdict:
            left = sorted({n.metadata.name for n in items} & wanted)
            return Verdict(not left, f"waiting for {', '.join(left)}" if left else "all gone")

        wait_for(f"namespace(s) {', '.join(sorted(wanted))} deleted", core.list_namespace, gone,
                 timeout=self.settings.timeouts["namespace-delete"],
                 timeout_name="namespace-delete", progress=self.log)
        self.log(f"removed namespace(s) {', '.join(sorted(wanted))}")

    # --- device plugin --------------------------------------------------------------------
    def _plugin(self, api: client.ApiClient) -> device_plugin.PluginRef | None:
        mode = self.settings.plugin_mode
        apps = kapi.AppsV1Api(api)
        objects = device_plugin.load_manifest(self.settings.plugin_manifest) \
            if mode != "existing" else []
        self.backend.adapt_plugin(objects)
        digest = coordination.manifest_digest(objects)
        found = device_plugin.find_existing(apps)
        if mode != "existing" and self._traits is not None and self._traits.keeps_plugin:
            # a kept cluster's plugin from another manifest, no run using it: replace it
            stale = [d for d in found if coordination.is_managed(d) and not coordination.users_of(d)
                     and _annotation(d, coordination.MANIFEST_ANNOTATION) != digest]
            for ds in stale:
                coordination.leave(api, SharedPlugin(ds.metadata.namespace, ds.metadata.name),
                                   self.run_id, self.log)
            if stale:
                found = device_plugin.find_existing(apps)
        theirs = [d for d in found if not coordination.is_managed(d)]
        if mode in ("auto", "existing") and theirs:
            ref = device_plugin.ref_for(theirs[0], installed_by_run=False)
            self.log(f"using the existing device plugin DaemonSet {ref.namespace}/{ref.name} "
                     f"({ref.image}); it will not be removed")
            return ref
        shared = [d for d in found if coordination.is_managed(d)
                  and (mode == "existing" or _annotation(d, coordination.MANIFEST_ANNOTATION)
                       == digest)]
        for ds in shared:
            joined = self._join(api, SharedPlugin(ds.metadata.namespace, ds.metadata.name), ds)
            if joined is not None:
                return joined
        if mode == "existing":
            self.log("no NVIDIA device plugin DaemonSet found (--plugin existing)")
            return None
        return self._install(api, objects, digest)

    def _join(self, api: client.ApiClient, plugin: SharedPlugin, ds: Any
              ) -> device_plugin.PluginRef | None:
        self.cleanups.push(f"leave the shared device plugin {plugin.namespace}/{plugin.name}",
                           lambda: self._leave_and_track(api, plugin))
        if not coordination.join(api, plugin, self.run_id):
            self.cleanups.entries.pop()
            return None
        self.log(f"sharing the device plugin DaemonSet {plugin.namespace}/{plugin.name} that "
                 "another gpu-conformance run installed; the last run to finish removes it")
        return device_plugin.ref_for(ds, installed_by_run=True)

    def _install(self, api: client.ApiClient, objects: list[dict[str, Any]], digest: str
                 ) -> device_plugin.PluginRef:
        store = Objects(api)
        ds = device_plugin.daemonset_of(objects)
        plugin = SharedPlugin(ds["metadata"].get("namespace", "default"), ds["metadata"]["name"])
        # armed before the first create: leaving as the last user deletes what is created here
        self.cleanups.push(f"remove the device plugin {plugin.namespace}/{plugin.name}",
                           lambda: self._leave_and_track(api, plugin),
                           f"kubectl delete daemonset {plugin.name} -n {plugin.namespace}")
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("labels", {})[MANAGED_LABEL] = MANAGED_VALUE
            if obj is ds:
                meta.setdefault("annotations", {}).update({
                    coordination.USERS_ANNOTATION: self.run_id,
                    coordination.MANIFEST_ANNOTATION: digest})
            if obj["kind"] == "Namespace":
                # noted before the request: an interrupt while it is in flight may still see
                # the namespace created (removed at cleanup only while it is managed and empty)
                self._plugin_namespaces.add(obj["metadata"]["name"])
            try:
                store.create(obj)
            except Exception as exc:
                if not is_conflict(exc):
                    raise
                existing: Any = store.get(obj)
                if obj["kind"] == "Namespace":
                    # the dynamic client's objects keep the API's camelCase names
                    if existing.metadata.deletionTimestamp is None:
                        # ours (shared) or the cluster's: not this run's to remove
                        self._plugin_namespaces.discard(obj["metadata"]["name"])
                        continue
                    self._await_gone(api, obj["metadata"]["name"])  # a run before us removed it
                    store.create(obj)
                    self.log(f"created {describe(obj)}")
                    continue
                # another run installed it a moment ago: share it
                if obj is ds and coordination.is_managed(existing) and coordination.join(
                        api, plugin, self.run_id):
                    self.log(f"sharing the device plugin DaemonSet {describe(obj)} another "
                             "gpu-conformance run installed a moment ago")
                    continue
                raise UsageError(
                    f"{describe(obj)} already exists and was not created by gpu-conformance",
                    hint="use --plugin existing, or remove it first") from None
            self.log(f"created {describe(obj)}")
        image = ds["spec"]["template"]["spec"]["containers"][0].get("image", "")
        return device_plugin.PluginRef(plugin.namespace, plugin.name, image, True)

    def _await_gone(self, api: client.ApiClient, name: str) -> None:
        def gone(items: list[Any]) -> Verdict:
            return Verdict(not items, f"namespace {name} still terminating")

        wait_for(f"namespace {name} (being deleted) gone", kapi.CoreV1Api(api).list_namespace,
                 gone, timeout=self.settings.timeouts["namespace-delete"],
                 timeout_name="namespace-delete", progress=self.log,
                 field_selector=f"metadata.name={name}")

    def _leave_and_track(self, api: client.ApiClient, plugin: SharedPlugin) -> None:
        keep = self._traits is not None and self._traits.keeps_plugin
        coordination.leave(api, plugin, self.run_id, self.log, keep=keep)
        try:
            ns = call(kapi.CoreV1Api(api).read_namespace, plugin.namespace)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            return
        terminating = bool(ns.metadata and ns.metadata.deletion_timestamp is not None)
        if not terminating and plugin.namespace in self._plugin_namespaces:
            # interrupted between creating the plugin's namespace and its DaemonSet (leave
            # found no DaemonSet): removed unless a DaemonSet is in it now (another run's)
            terminating = coordination.delete_managed_namespace(api, plugin.namespace, self.log)
        if terminating:
            self._deleted.append(plugin.namespace)

    def _properties(self, api: client.ApiClient, handle: ClusterHandle, version: str,
                    plugin: device_plugin.PluginRef | None) -> dict[str, str]:
        nodes = call(kapi.CoreV1Api(api).list_node).items
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


def aliases(named: list[str], found: list[str]) -> dict[str, list[str]]:
    """Names given before the nodes existed, mapped in order onto the nodes found that no
    name matched; the last alias also takes any nodes left over, so none goes unchecked."""
    placeholders = [n for n in named if n not in found]
    unmatched = [n for n in found if n not in named]
    mapping: dict[str, list[str]] = {}
    for i, alias in enumerate(placeholders):
        last = i == len(placeholders) - 1
        mapping[alias] = unmatched[i:] if last else unmatched[i:i + 1]
    return mapping


def _annotation(obj: Any, key: str) -> str | None:
    return ((getattr(obj.metadata, "annotations", None) or {}).get(key))


__all__ = ["RunContext", "RunInfo", "Traits", "new_run_id"]
