"""Create and delete arbitrary manifest objects through the API's discovery (any kind)."""

from __future__ import annotations

from typing import Any

from kubernetes import client, dynamic

from gpu_conformance.kube import call, is_conflict

RUN_LABEL = "gpu-conformance.io/run"


class Objects:
    def __init__(self, api: client.ApiClient) -> None:
        self._dynamic = call(dynamic.DynamicClient, api)

    def _resource(self, obj: dict[str, Any]) -> Any:
        return self._dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])

    def create(self, obj: dict[str, Any]) -> Any:
        """Create ``obj``. A 409 on an object carrying this run's label is our own create whose
        answer was lost and retried: it counts as created."""
        resource = self._resource(obj)
        namespace = obj.get("metadata", {}).get("namespace") if resource.namespaced else None
        try:
            return call(resource.create, body=obj, namespace=namespace)
        except Exception as exc:
            if not is_conflict(exc):
                raise
            mine = (obj.get("metadata", {}).get("labels") or {}).get(RUN_LABEL)
            existing = self.get(obj)
            theirs = ((existing.metadata.labels or {}) if existing.metadata else {}).get(RUN_LABEL)
            if mine and theirs == mine:
                return existing
            raise

    def get(self, obj: dict[str, Any]) -> Any:
        resource = self._resource(obj)
        meta = obj.get("metadata", {})
        return call(resource.get, name=meta["name"],
                    namespace=meta.get("namespace") if resource.namespaced else None)

    def delete(self, obj: dict[str, Any]) -> None:
        resource = self._resource(obj)
        meta = obj.get("metadata", {})
        call(resource.delete, name=meta["name"],
             namespace=meta.get("namespace") if resource.namespaced else None,
             body={"propagationPolicy": "Background"})


def describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta.get('name')}"


def kubectl_delete(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = f" -n {meta['namespace']}" if meta.get("namespace") else ""
    return f"kubectl delete {obj['kind'].lower()} {meta.get('name')}{ns}"
