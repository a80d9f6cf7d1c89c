"""Find the NVIDIA device plugin DaemonSet a cluster already runs, or install one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpu_conformance import kapi
from gpu_conformance.errors import UsageError
from gpu_conformance.kube import call
from gpu_conformance.objects import RUN_LABEL
from gpu_conformance.paths import manifests_dir

BUILTIN_MANIFESTS = {
    "current": ["current/nvidia-device-plugin.yaml"],
    "seed": ["seed/namespace.yaml", "seed/nvidia-device-plugin-ds.yaml"],
}


@dataclass(frozen=True)
class PluginRef:
    namespace: str
    name: str
    image: str
    installed_by_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "image": self.image,
                "installed_by_run": self.installed_by_run}


def load_manifest(choice: str) -> list[dict[str, Any]]:
    """The objects of ``current``, ``seed`` or a manifest file; bad input is one clear line."""
    builtin = BUILTIN_MANIFESTS.get(choice)
    files = [manifests_dir() / f for f in builtin] if builtin else [Path(choice).expanduser()]
    objects: list[dict[str, Any]] = []
    for path in files:
        if not path.is_file():
            raise UsageError(f"--plugin-manifest {choice}: {path} does not exist "
                             f"(use current, seed or a path to a YAML file)")
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise UsageError(f"--plugin-manifest {path} is not valid YAML{where}") from None
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                raise UsageError(f"--plugin-manifest {path}: every document needs apiVersion "
                                 "and kind")
            objects.append(doc)
    if not any(o["kind"] == "DaemonSet" for o in objects):
        raise UsageError(f"--plugin-manifest {choice} holds no DaemonSet")
    return objects


def daemonset_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "DaemonSet")


def _images(ds: Any) -> list[str]:
    return [c.image or "" for c in ds.spec.template.spec.containers or []]


def is_nvidia_device_plugin(ds: Any) -> bool:
    """Recognize the plugin however it was installed (seed manifest, Helm, GPU Operator, AKS)."""
    name = ds.metadata.name or ""
    labels = ds.metadata.labels or {}
    return (
        any("k8s-device-plugin" in image for image in _images(ds))
        or "nvidia-device-plugin" in name
        or labels.get("app.kubernetes.io/name") == "nvidia-device-plugin"
    )


def find_existing(apps: kapi.AppsV1Api, exclude_run: str | None = None) -> list[Any]:
    found = []
    items: list[Any] = call(apps.list_daemon_set_for_all_namespaces).items
    for ds in items:
        if exclude_run and (ds.metadata.labels or {}).get(RUN_LABEL) == exclude_run:
            continue
        if is_nvidia_device_plugin(ds):
            found.append(ds)
    return sorted(found, key=lambda d: (d.metadata.namespace != "kube-system", d.metadata.namespace))


def ref_for(ds: Any, installed_by_run: bool) -> PluginRef:
    images = _images(ds)
    return PluginRef(ds.metadata.namespace, ds.metadata.name, images[0] if images else "",
                     installed_by_run)

