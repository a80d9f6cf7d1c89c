"""gpu_conformance.kapi against the official typed APIs: the same request for every route, the
same answer (models, errors, watch events) from the same HTTP response."""

from __future__ import annotations

import inspect
import io
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException

from gpu_conformance import kapi

PAIRS = [(kapi.CoreV1Api, client.CoreV1Api), (kapi.AppsV1Api, client.AppsV1Api),
         (kapi.BatchV1Api, client.BatchV1Api), (kapi.CoordinationV1Api, client.CoordinationV1Api),
         (kapi.AuthorizationV1Api, client.AuthorizationV1Api), (kapi.VersionApi, client.VersionApi)]
ROUTES = [(ours, theirs, name) for ours, theirs in PAIRS for name in ours.routes]

#: a value for every parameter a route may take
SAMPLES: dict[str, Any] = {
    "name": "gpu node/1", "namespace": "gpu-resources", "pretty": "true",
    "allow_watch_bookmarks": True, "_continue": "tok", "field_selector": "metadata.name=x",
    "label_selector": "a=b,c in (d)", "limit": 500, "resource_version": "42",
    "resource_version_match": "NotOlderThan", "send_initial_events": False,
    "timeout_seconds": 30, "watch": True, "container": "probe", "follow": False,
    "limit_bytes": 1024, "previous": True,
    "since_seconds": 60, "stream": "All", "tail_lines": 100, "timestamps": True,
    "dry_run": "All", "field_manager": "gpu-conformance", "field_validation": "Strict",
    "force": False, "grace_period_seconds": 0, "orphan_dependents": False,
    "ignore_store_read_error_with_cluster_breaking_potential": False,
    "propagation_policy": "Background",
}


def _api_client() -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = {"BearerToken": "token"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)


def _body(verb: str) -> Any:
    if verb == "PATCH":
        return {"metadata": {"labels": {"a": "b"}}}
    if verb == "DELETE":
        return {"propagationPolicy": "Background"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}


def _official_request(api: Any, name: str, values: dict[str, Any]) -> tuple[Any, ...]:
    serialize: Any = getattr(api, f"_{name}_serialize")
    params: dict[str, Any] = {p: None for p in inspect.signature(serialize).parameters}
    params.update({k: v for k, v in values.items() if k in params})
    params["_host_index"] = 0
    return tuple(serialize(**params))


def _normal(request: tuple[Any, ...]) -> tuple[Any, ...]:
    method, url, headers, body, post = request
    parts = urlsplit(url)
    return (method, parts.path, sorted(parse_qsl(parts.query)), dict(headers), body, post)


@pytest.mark.parametrize(("ours", "theirs", "name"), ROUTES,
                         ids=[f"{o.__name__}.{n}" for o, _t, n in ROUTES])
def test_every_route_sends_the_official_request(ours: type[kapi._Api], theirs: Any,
                                                name: str) -> None:
    official = theirs(_api_client())
    route = ours.routes[name]
    signature = inspect.signature(getattr(official, name))
    assert signature.return_annotation.__name__ == route.returns or (
        route.returns in ("object", "str") and signature.return_annotation in (object, str))
    accepted = set(signature.parameters) - {"name", "namespace", "body"}
    assert route.query <= accepted, route.query - accepted
    values = {k: v for k, v in SAMPLES.items() if k in route.query}
    values.update({p: SAMPLES[p] for p in route.path_params})
    if route.body:
        values["body"] = _body(route.verb)
    args = [values[p] for p in route.path_params] + ([values["body"]] if route.body else [])
    kwargs = {k: values[k] for k in route.query if k in values}
    mine = ours(_api_client()).serialize(name, route, tuple(args), dict(kwargs))
    assert _normal(mine) == _normal(_official_request(official, name, values))


def test_positional_order_is_the_officials() -> None:
    for ours, theirs, name in ROUTES:
        route = ours.routes[name]
        official = list(inspect.signature(getattr(theirs(_api_client()), name)).parameters)
        required = [p for p in official if p in ("name", "namespace", "body")]
        expected = list(route.path_params) + (["body"] if route.body else [])
        assert required == expected, name


class _Body(io.BytesIO):
    """A response body that, like a socket's, reports itself closed once read to the end."""

    def isclosed(self) -> bool:
        return self.tell() >= len(self.getvalue())


def _answer(status: int, payload: Any) -> rest.RESTResponse:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    raw = urllib3.HTTPResponse(body=_Body(data), status=status, preload_content=False,
                               headers={"content-type": "application/json"}, reason="x")
    return rest.RESTResponse(raw)


NODES = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
         "items": [{"metadata": {"name": "aks-gpu-0", "uid": "u1", "resourceVersion": "7",
                                 "labels": {"accelerator": "nvidia"}},
                    "status": {"capacity": {"nvidia.com/gpu": "2", "cpu": "4"},
                               "allocatable": {"nvidia.com/gpu": "2"}}}]}


def _replay(monkeypatch: pytest.MonkeyPatch, api_client: client.ApiClient, status: int,
            payload: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def request(method: str, url: str, **kwargs: Any) -> rest.RESTResponse:
        sent.append({"method": method, "url": url, **kwargs})
        return _answer(status, payload)

    monkeypatch.setattr(api_client.rest_client, "request", request)
    return sent


def test_the_answer_is_the_officials_model(monkeypatch: pytest.MonkeyPatch) -> None:
    api_client = _api_client()
    sent = _replay(monkeypatch, api_client, 200, NODES)
    mine: Any = kapi.CoreV1Api(api_client).list_node(label_selector="a=b",
                                                     _request_timeout=(3, 10))
    theirs: Any = client.CoreV1Api(api_client).list_node(label_selector="a=b",
                                                    _request_timeout=(3, 10))
    assert type(mine) is client.V1NodeList
    assert mine == theirs
    first: Any = mine.items[0]
    assert first.status.capacity["nvidia.com/gpu"] == "2"
    assert sent[0]["url"] == sent[1]["url"]
    assert sent[0]["_request_timeout"] == (3, 10)


@pytest.mark.parametrize("status", [403, 404, 409, 500])
def test_an_error_is_the_officials_api_exception(monkeypatch: pytest.MonkeyPatch,
                                                 status: int) -> None:
    api_client = _api_client()
    answer = {"kind": "Status", "status": "Failure", "message": "nodes is forbidden",
              "reason": "Forbidden", "code": status}
    _replay(monkeypatch, api_client, status, answer)
    with pytest.raises(ApiException) as mine:
        kapi.CoreV1Api(api_client).read_node("n")
    with pytest.raises(ApiException) as theirs:
        client.CoreV1Api(api_client).read_node("n")
    assert (mine.value.status, mine.value.body) == (theirs.value.status, theirs.value.body)
    assert mine.value.status == status and "forbidden" in str(mine.value.body)


def test_a_watch_streams_models(monkeypatch: pytest.MonkeyPatch) -> None:
    api_client = _api_client()
    node: Any = NODES["items"]
    node = node[0]
    lines = b"".join(json.dumps(e).encode() + b"\n" for e in [
        {"type": "ADDED", "object": node},
        {"type": "BOOKMARK", "object": {"kind": "Node", "metadata": {"resourceVersion": "9"}}},
        {"type": "DELETED", "object": node}])
    sent = _replay(monkeypatch, api_client, 200, lines)
    stream = watch.Watch()
    events: list[Any] = list(stream.stream(kapi.CoreV1Api(api_client).list_node,
                                           timeout_seconds=5, resource_version="7",
                                           allow_watch_bookmarks=True))
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK", "DELETED"]
    added: Any = events[0]["object"]
    assert type(added) is client.V1Node
    assert added.metadata.name == "aks-gpu-0"  # type: ignore[union-attr]
    query = dict(parse_qsl(urlsplit(sent[0]["url"]).query))
    assert query == {"watch": "true", "timeoutSeconds": "5", "resourceVersion": "7",
                     "allowWatchBookmarks": "true"}


def test_a_watch_that_is_refused_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    api_client = _api_client()
    _replay(monkeypatch, api_client, 410, {"kind": "Status", "code": 410, "reason": "Expired"})
    with pytest.raises(ApiException) as raised:
        kapi.CoreV1Api(api_client).list_node(watch=True, _preload_content=False)
    assert raised.value.status == 410


@pytest.mark.parametrize(("call", "words"), [
    (lambda core: core.list_nodes(), "no method 'list_nodes'"),
    (lambda core: core.list_node(labelSelector="a"), "unexpected keyword argument(s): labelSelector"),
    (lambda core: core.read_node(), "missing required argument(s): name"),
    (lambda core: core.create_namespace(), "missing required argument(s): body"),
    (lambda core: core.read_node("a", "b"), "takes 1 positional argument(s): name"),
    (lambda core: core.read_node("a", name="b"), "multiple values for argument 'name'"),
])
def test_a_wrong_call_is_a_type_error_naming_it(call: Any, words: str) -> None:
    core = kapi.CoreV1Api(_api_client())
    with pytest.raises((TypeError, AttributeError)) as raised:
        call(core)
    assert words in str(raised.value)


def test_importing_it_leaves_the_typed_apis_unloaded() -> None:
    import subprocess
    import sys
    code = ("import sys, gpu_conformance.kapi, gpu_conformance.kube, gpu_conformance.waits; "
            "print(sorted(m for m in sys.modules if m.startswith('kubernetes.client.api.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
