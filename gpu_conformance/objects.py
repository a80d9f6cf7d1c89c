"""Create and delete arbitrary manifest objects through the API's discovery (any kind)."""

from __future__ import annotations

from typing import Any

from kubernetes import client, dynamic

from gpu_conformance.kube import call


class Objects:
    def __init__(self, api: client.ApiClient) -> None:
        self._dynamic = dynamic.DynamicClient(api)

    def _resource(self, obj: dict[str, Any]) -> Any:
        return self._dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])

    def create(self, obj: dict[str, Any]) -> Any:
        resource = self._resource(obj)
        namespace = obj.get("metadata", {}).get("namespace") if resource.namespaced else None
        return call(resource.create, body=obj, namespace=namespace)

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
