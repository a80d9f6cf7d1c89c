"""The Kubernetes API calls the suite makes, sent and answered exactly as the official client's
typed APIs send and answer them, without importing those modules.

kubernetes 37 declares every parameter of every typed API method with pydantic annotations:
importing ``CoreV1Api`` builds about 1,200 of them, 1.3 s of every run on 2 cores (more than
a whole check; ``benchmarks/results.json``, ``startup``). The suite calls 33 of those methods.
Here each is one route (verb, path, the model it returns, the query parameters it takes), and a
call goes through the same ``ApiClient``: ``param_serialize`` (authentication, path quoting,
query encoding), ``call_api`` (the REST client, its timeouts and TLS), ``response_deserialize``
(the same model classes, the same ``ApiException``). ``tests/unit/test_kapi.py`` checks every
route against the official method's own request.

Only the module differs: ``kapi.CoreV1Api(api).list_node(...)`` for
``client.CoreV1Api(api).list_node(...)``; ``kubernetes.watch.Watch`` streams them (the return
type is the method's return annotation, as on the official methods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

__all__ = ["AppsV1Api", "AuthorizationV1Api", "BatchV1Api", "CoordinationV1Api", "CoreV1Api",
           "VersionApi"]

LIST = frozenset({"pretty", "allow_watch_bookmarks", "_continue", "field_selector",
                  "label_selector", "limit", "resource_version", "resource_version_match",
                  "send_initial_events", "timeout_seconds", "watch"})
READ = frozenset({"pretty"})
LOG = frozenset({"container", "follow", "limit_bytes", "pretty",
                 "previous", "since_seconds", "stream", "tail_lines", "timestamps"})
CREATE = frozenset({"pretty", "dry_run", "field_manager", "field_validation"})
PATCH = CREATE | {"force"}
DELETE = frozenset({"pretty", "dry_run", "grace_period_seconds",
                    "ignore_store_read_error_with_cluster_breaking_potential",
                    "orphan_dependents", "propagation_policy"})
#: keyword arguments of every official method that steer the call rather than the request
CALL_OPTIONS = frozenset({"_request_timeout", "_preload_content", "_headers", "_content_type"})
PATCH_CONTENT_TYPE = "application/json-patch+json"  # the REST client switches a mapping body
                                                    # to strategic-merge-patch, as officially


@dataclass(frozen=True)
class Route:
    verb: str
    path: str
    returns: str
    query: frozenset[str]
    accept: str = "application/json"

    @property
    def path_params(self) -> tuple[str, ...]:
        """Positional order of the official methods: name before namespace."""
        return tuple(p for p in ("name", "namespace") if "{" + p + "}" in self.path)

    @property
    def body(self) -> bool:
        return self.verb in ("POST", "PATCH", "PUT", "DELETE")

    @property
    def body_required(self) -> bool:
        return self.verb in ("POST", "PATCH", "PUT")


def _wire_name(python_name: str) -> str:
    """field_selector -> fieldSelector, _continue -> continue (the official serializers')."""
    head, *rest = python_name.lstrip("_").split("_")
    return head + "".join(part.capitalize() for part in rest)


def _response_types(route: Route) -> dict[str, str | None]:
    codes = {"GET": ("200",), "POST": ("200", "201", "202"), "PATCH": ("200", "201"),
             "DELETE": ("200", "202"), "PUT": ("200", "201")}[route.verb]
    return {**{code: route.returns for code in codes}, "401": None}


class _Api:
    """One API group's methods over an ``ApiClient`` (``api_client``, as officially)."""

    routes: dict[str, Route] = {}

    def __init__(self, api_client: ApiClient | None = None) -> None:
        self.api_client = api_client or ApiClient.get_default()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        route = type(self).routes.get(name)
        if route is None:
            raise AttributeError(f"{type(self).__name__} has no method {name!r} (the routes the "
                                 f"suite uses are in gpu_conformance/kapi.py)")
        method = _bound(self, name, route)
        setattr(self, name, method)
        return method

    def serialize(self, name: str, route: Route, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """(method, url, headers, body, post_params) as the official ``_<name>_serialize``."""
        names = route.path_params + (("body",) if route.body else ())
        if len(args) > len(names):
            raise TypeError(f"{name}() takes {len(names)} positional argument(s): "
                            f"{', '.join(names) or 'none'}")
        given = dict(zip(names, args, strict=False))
        for key in names:
            if key in kwargs:
                if key in given:
                    raise TypeError(f"{name}() got multiple values for argument {key!r}")
                given[key] = kwargs.pop(key)
        missing = [p for p in route.path_params if given.get(p) is None]
        if route.body_required and given.get("body") is None:
            missing.append("body")
        if missing:
            raise TypeError(f"{name}() missing required argument(s): {', '.join(missing)}")
        unknown = sorted(set(kwargs) - route.query - CALL_OPTIONS)
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword argument(s): {', '.join(unknown)}")
        query = [(_wire_name(k), v) for k, v in kwargs.items()
                 if k in route.query and v is not None]
        headers: dict[str, Any] = dict(kwargs.get("_headers") or {})
        headers.setdefault("Accept", route.accept)
        if kwargs.get("_content_type"):
            headers["Content-Type"] = kwargs["_content_type"]
        elif route.verb == "PATCH":  # others send none: the REST client says JSON
            headers.setdefault("Content-Type", PATCH_CONTENT_TYPE)
        return self.api_client.param_serialize(
            method=route.verb, resource_path=route.path,
            path_params={p: given[p] for p in route.path_params}, query_params=query,
            header_params=headers, body=given.get("body"), post_params=[], files={},
            auth_settings=["BearerToken"], collection_formats={})

    def send(self, name: str, route: Route, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
        request_timeout = kwargs.pop("_request_timeout", None)
        preload = kwargs.pop("_preload_content", True)
        verb, url, headers, body, post = self.serialize(name, route, args, kwargs)
        response = self.api_client.call_api(verb, url, headers, body, post,
                                            _request_timeout=request_timeout)
        if not preload:
            # as the official methods: a non-2xx answer raises before the stream is handed out
            if not 200 <= response.status <= 299:
                response.read()
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            return response.response
        response.read()
        return self.api_client.response_deserialize(
            response_data=response, response_types_map=_response_types(route)).data


def _bound(api: _Api, name: str, route: Route) -> Callable[..., Any]:
    def method(*args: Any, **kwargs: Any) -> Any:
        return api.send(name, route, args, kwargs)

    method.__name__ = method.__qualname__ = name
    method.__module__ = __name__
    method.__annotations__ = {"return": route.returns}  # kubernetes.watch reads the item type
    method.__doc__ = f"{route.verb} {route.path} -> {route.returns}"
    return method


_NS = "/api/v1/namespaces"


class CoreV1Api(_Api):
    routes = {
        "list_node": Route("GET", "/api/v1/nodes", "V1NodeList", LIST),
        "read_node": Route("GET", "/api/v1/nodes/{name}", "V1Node", READ),
        "read_node_status": Route("GET", "/api/v1/nodes/{name}/status", "V1Node", READ),
        "create_node": Route("POST", "/api/v1/nodes", "V1Node", CREATE),
        "patch_node": Route("PATCH", "/api/v1/nodes/{name}", "V1Node", PATCH),
        "patch_node_status": Route("PATCH", "/api/v1/nodes/{name}/status", "V1Node", PATCH),
        "delete_node": Route("DELETE", "/api/v1/nodes/{name}", "object", DELETE),
        "list_namespace": Route("GET", _NS, "V1NamespaceList", LIST),
        "read_namespace": Route("GET", _NS + "/{name}", "V1Namespace", READ),
        "create_namespace": Route("POST", _NS, "V1Namespace", CREATE),
        "delete_namespace": Route("DELETE", _NS + "/{name}", "object", DELETE),
        "list_pod_for_all_namespaces": Route("GET", "/api/v1/pods", "V1PodList", LIST),
        "list_namespaced_pod": Route("GET", _NS + "/{namespace}/pods", "V1PodList", LIST),
        "create_namespaced_pod": Route("POST", _NS + "/{namespace}/pods", "V1Pod", CREATE),
        "delete_namespaced_pod": Route("DELETE", _NS + "/{namespace}/pods/{name}", "V1Pod",
                                       DELETE),
        "read_namespaced_pod_log": Route("GET", _NS + "/{namespace}/pods/{name}/log", "str",
                                         LOG),
        "list_namespaced_event": Route("GET", _NS + "/{namespace}/events", "CoreV1EventList",
                                       LIST),
        "list_namespaced_service_account": Route("GET", _NS + "/{namespace}/serviceaccounts",
                                                 "V1ServiceAccountList", LIST),
        "list_namespaced_config_map": Route("GET", _NS + "/{namespace}/configmaps",
                                            "V1ConfigMapList", LIST),
        "create_namespaced_config_map": Route("POST", _NS + "/{namespace}/configmaps",
                                              "V1ConfigMap", CREATE),
        "patch_namespaced_config_map": Route("PATCH", _NS + "/{namespace}/configmaps/{name}",
                                             "V1ConfigMap", PATCH),
        "delete_namespaced_config_map": Route("DELETE", _NS + "/{namespace}/configmaps/{name}",
                                              "object", DELETE),
    }


_APPS = "/apis/apps/v1"


class AppsV1Api(_Api):
    routes = {
        "list_daemon_set_for_all_namespaces": Route("GET", _APPS + "/daemonsets",
                                                    "V1DaemonSetList", LIST),
        "list_namespaced_daemon_set": Route("GET", _APPS + "/namespaces/{namespace}/daemonsets",
                                            "V1DaemonSetList", LIST),
        "read_namespaced_daemon_set": Route(
            "GET", _APPS + "/namespaces/{namespace}/daemonsets/{name}", "V1DaemonSet", READ),
        "patch_namespaced_daemon_set": Route(
            "PATCH", _APPS + "/namespaces/{namespace}/daemonsets/{name}", "V1DaemonSet", PATCH),
        "delete_namespaced_daemon_set": Route(
            "DELETE", _APPS + "/namespaces/{namespace}/daemonsets/{name}", "object", DELETE),
    }


class BatchV1Api(_Api):
    routes = {
        "list_namespaced_job": Route("GET", "/apis/batch/v1/namespaces/{namespace}/jobs",
                                     "V1JobList", LIST),
    }


_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


class CoordinationV1Api(_Api):
    routes = {
        "create_namespaced_lease": Route("POST", _LEASES, "V1Lease", CREATE),
        "read_namespaced_lease": Route("GET", _LEASES + "/{name}", "V1Lease", READ),
        "patch_namespaced_lease": Route("PATCH", _LEASES + "/{name}", "V1Lease", PATCH),
    }


class AuthorizationV1Api(_Api):
    routes = {
        "create_self_subject_access_review": Route(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "V1SelfSubjectAccessReview", CREATE),
    }


class VersionApi(_Api):
    routes = {"get_code": Route("GET", "/version/", "VersionInfo", frozenset())}
