"""A small in-memory Azure Resource Manager behind a requests adapter.

The real ContainerServiceClient and ResourceManagementClient talk to it through
``RequestsTransport(session=arm.session())``; nothing in the SDK is patched. It keeps resource
groups, clusters and agent pools, answers long-running operations the way ARM does
(201 + Azure-AsyncOperation polled InProgress -> Succeeded; DELETE 202 + Location polled 202 ->
204), and lets a test queue faults (429, 409, quota) in front of any request.
Paths match case-insensitively; the api-version is ignored. Only https is served.
"""

from __future__ import annotations

import base64
import http
import io
import itertools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

HOST = "https://management.azure.com"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
TOKEN = "fake-bearer-token-do-not-log"
KUBECONFIG = b"""apiVersion: v1
kind: Config
clusters:
- cluster: {server: 'https://fake-aks.hcp.eastus.azmk8s.io:443'}
  name: fake
contexts:
- context: {cluster: fake, user: fake}
  name: fake
current-context: fake
users:
- name: fake
  user: {token: secret-kubeconfig-token}
"""

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_MC = _RG + r"/providers/microsoft\.containerservice/managedclusters/(?P<mc>[^/]+)"
ROUTES: list[tuple[str, str]] = [
    ("groups", _SUB + r"/resourcegroups"),
    ("group", _RG),
    ("clusters", _SUB + r"/providers/microsoft\.containerservice/managedclusters"),
    ("cluster", _MC),
    ("pool", _MC + r"/agentpools/(?P<pool>[^/]+)"),
    ("credentials", _MC + r"/listclusterusercredential"),
    ("operation", _SUB + r"/providers/microsoft\.containerservice/locations/[^/]+/operations/"
                         r"(?P<op>[^/]+)"),
    ("result", _SUB + r"/operationresults/(?P<op>[^/]+)"),
]


class FakeCredential:
    """Token credential that never leaves the process."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(TOKEN, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.calls += 1
        return AccessTokenInfo(TOKEN, int(time.time()) + 3600)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]
    times: int


@dataclass
class Operation:
    statuses: list[dict[str, Any]]
    kind: str = "async"


def arm_error(code: str, message: str, details: list[dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


class _Raw(io.BytesIO):
    """Stands in for urllib3's response; azure-core sets an attribute on it."""


class FakeArm(BaseAdapter):
    def __init__(self, in_progress_polls: int = 1) -> None:
        super().__init__()
        self.in_progress_polls = in_progress_polls
        self.groups: dict[str, dict[str, Any]] = {}
        self.clusters: dict[tuple[str, str], dict[str, Any]] = {}
        self.pools: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.lro_failures: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        self.interrupts: list[tuple[str, re.Pattern[str]]] = []
        self.kubeconfig = KUBECONFIG
        self._ids = itertools.count(1)

    # -- test helpers ---------------------------------------------------------------------

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.mount("https://", self)
        return s

    def transport_kwargs(self) -> dict[str, Any]:
        from azure.core.pipeline.transport import RequestsTransport

        return {"transport": RequestsTransport(session=self.session()), "polling_interval": 0}

    def fail(self, method: str, path_regex: str, status: int, body: dict[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, times: int = 1) -> None:
        """The next ``times`` matching requests get this answer instead of the real one."""
        self.faults.append(Fault(method.upper(), re.compile(path_regex, re.IGNORECASE), status,
                                 body, dict(headers or {}), times))

    def fail_lro(self, method: str, path_regex: str, error: dict[str, Any]) -> None:
        """The next matching request is accepted, and its operation then ends Failed."""
        self.lro_failures.append((method.upper(), re.compile(path_regex, re.IGNORECASE), error))

    def interrupt(self, method: str, path_regex: str) -> None:
        """The next matching request raises KeyboardInterrupt, as Ctrl-C during the call would."""
        self.interrupts.append((method.upper(), re.compile(path_regex, re.IGNORECASE)))

    def add_group(self, name: str, tags: dict[str, str] | None = None,
                  location: str = "eastus") -> None:
        self.groups[name.lower()] = {
            "id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}", "name": name,
            "type": "Microsoft.Resources/resourceGroups", "location": location,
            "tags": tags or {}, "properties": {"provisioningState": "Succeeded"}}

    def add_cluster(self, group: str, name: str, body: dict[str, Any]) -> None:
        self.clusters[(group.lower(), name.lower())] = self._cluster_json(group, name, body)

    def calls(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method.upper())
                and contains.lower() in r.path.lower()]

    # -- adapter --------------------------------------------------------------------------

    def close(self) -> None:
        pass

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        url = urlsplit(str(request.url))
        assert url.scheme == "https", f"plain http request to {request.url}"
        assert url.netloc == "management.azure.com", f"unexpected host {url.netloc}"
        assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
        method = str(request.method).upper()
        path = url.path.rstrip("/")
        query = parse_qs(url.query)
        for i, (m, pattern) in enumerate(self.interrupts):
            if m == method and pattern.search(path):
                del self.interrupts[i]
                self.requests.append(Recorded(method, path, {}, None, 0))
                raise KeyboardInterrupt
        raw = request.body
        body = json.loads(raw) if isinstance(raw, (bytes, str)) and raw else None
        status, payload, headers = self._answer(method, path, query, body)
        self.requests.append(Recorded(method, path, query, body, status))
        return self._response(request, status, payload, headers)

    def _response(self, request: requests.PreparedRequest, status: int, payload: Any,
                  headers: dict[str, str]) -> requests.Response:
        content = b"" if payload is None else json.dumps(payload).encode()
        response = requests.Response()
        response.status_code = status
        response.reason = http.HTTPStatus(status).phrase
        response.headers = CaseInsensitiveDict(
            {"x-ms-request-id": f"req-{next(self._ids)}", **headers,
             **({"Content-Type": "application/json"} if content else {})})
        response._content = content
        response.raw = _Raw(content)
        response.url = str(request.url)
        response.request = request
        response.encoding = "utf-8"
        return response

    def _answer(self, method: str, path: str, query: dict[str, list[str]], body: Any
                ) -> tuple[int, Any, dict[str, str]]:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                fault.times -= 1
                return fault.status, fault.body, fault.headers
        for name, pattern in ROUTES:
            match = re.fullmatch(pattern, path, re.IGNORECASE)
            if match:
                handler = getattr(self, f"_{name}")
                result: tuple[int, Any, dict[str, str]] = handler(method, match.groupdict(),
                                                                  query, body)
                return result
        return 404, arm_error("InvalidResourceType", f"no route for {path}"), {}

    # -- ARM behaviour --------------------------------------------------------------------

    def _start(self, method: str, path: str, final: dict[str, Any] | None = None
               ) -> dict[str, str]:
        op = f"op{next(self._ids)}"
        done: dict[str, Any] = {"status": "Succeeded"}
        for i, (m, pattern, error) in enumerate(self.lro_failures):
            if m == method and pattern.search(path):
                del self.lro_failures[i]
                done = {"status": "Failed", "error": error.get("error", error)}
                break
        self.operations[op] = Operation(
            [{"status": "InProgress"}] * self.in_progress_polls + [done])
        return {"Azure-AsyncOperation": f"{HOST}/subscriptions/{SUBSCRIPTION}/providers/"
                f"Microsoft.ContainerService/locations/eastus/operations/{op}"
                "?api-version=2026-08-01"}

    def _start_delete(self) -> dict[str, str]:
        op = f"op{next(self._ids)}"
        statuses: list[dict[str, Any]] = [{} for _ in range(self.in_progress_polls + 1)]
        self.operations[op] = Operation(statuses, kind="location")
        return {"Location": f"{HOST}/subscriptions/{SUBSCRIPTION}/operationresults/{op}"
                "?api-version=2024-11-01", "Retry-After": "0"}

    def _operation(self, method: str, m: dict[str, str], query: Any, body: Any
                   ) -> tuple[int, Any, dict[str, str]]:
        op = self.operations[m["op"]]
        status = op.statuses.pop(0) if len(op.statuses) > 1 else op.statuses[0]
        return 200, {"name": m["op"], **status}, {}

    def _result(self, method: str, m: dict[str, str], query: Any, body: Any
                ) -> tuple[int, Any, dict[str, str]]:
        op = self.operations[m["op"]]
        if len(op.statuses) > 1:
            op.statuses.pop(0)
            return 202, None, {"Location": f"{HOST}/subscriptions/{SUBSCRIPTION}/operationresults/"
                                           f"{m['op']}", "Retry-After": "0"}
        return 204, None, {}

    def _groups(self, method: str, m: dict[str, str], query: dict[str, list[str]], body: Any
                ) -> tuple[int, Any, dict[str, str]]:
        values = list(self.groups.values())
        wanted = re.search(r"tagName eq '([^']+)'", " ".join(query.get("$filter", [])))
        if wanted:
            values = [g for g in values if wanted.group(1) in g["tags"]]
        return 200, {"value": values}, {}

    def _group(self, method: str, m: dict[str, str], query: Any, body: Any
               ) -> tuple[int, Any, dict[str, str]]:
        key = m["rg"].lower()
        found = self.groups.get(key)
        if method == "HEAD":
            return (204 if found else 404), None, {}
        if method == "PUT":
            created = found is None
            self.add_group(m["rg"], body.get("tags"), body["location"])
            return (201 if created else 200), self.groups[key], {}
        if found is None:
            return 404, arm_error("ResourceGroupNotFound",
                                  f"Resource group '{m['rg']}' could not be found."), {}
        if method == "GET":
            return 200, found, {}
        if method == "DELETE":
            del self.groups[key]
            for ck in [k for k in self.clusters if k[0] == key]:
                del self.clusters[ck]
            return 202, None, self._start_delete()
        return 405, None, {}

    def _cluster_json(self, group: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        properties = dict(body.get("properties", {}))
        properties.update({"provisioningState": "Succeeded",
                           "currentKubernetesVersion": properties.get("kubernetesVersion",
                                                                      "1.33.2"),
                           "fqdn": f"{name}.hcp.eastus.azmk8s.io"})
        return {"id": f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{group}/providers/"
                      f"Microsoft.ContainerService/managedClusters/{name}",
                "name": name, "type": "Microsoft.ContainerService/ManagedClusters",
                "location": body.get("location", "eastus"), "tags": body.get("tags", {}),
                "identity": body.get("identity"), "properties": properties}

    def _clusters(self, method: str, m: dict[str, str], query: Any, body: Any
                  ) -> tuple[int, Any, dict[str, str]]:
        return 200, {"value": list(self.clusters.values())}, {}

    def _cluster(self, method: str, m: dict[str, str], query: Any, body: Any
                 ) -> tuple[int, Any, dict[str, str]]:
        path = f"/managedclusters/{m['mc']}"
        key = (m["rg"].lower(), m["mc"].lower())
        found = self.clusters.get(key)
        if method == "PUT":
            if m["rg"].lower() not in self.groups:
                return 404, arm_error("ResourceGroupNotFound",
                                      f"Resource group '{m['rg']}' could not be found."), {}
            self.clusters[key] = self._cluster_json(m["rg"], m["mc"], body)
            creating = json.loads(json.dumps(self.clusters[key]))
            creating["properties"]["provisioningState"] = "Creating"
            return (201 if found is None else 200), creating, self._start("PUT", path)
        if method == "DELETE":
            if found is None:
                return 204, None, {}
            del self.clusters[key]
            for pk in [k for k in self.pools if k[:2] == key]:
                del self.pools[pk]
            return 202, None, self._start_delete()
        if found is None:
            return 404, arm_error("ResourceNotFound", f"managed cluster {m['mc']} not found"), {}
        return 200, found, {}

    def _pool(self, method: str, m: dict[str, str], query: Any, body: Any
              ) -> tuple[int, Any, dict[str, str]]:
        key = (m["rg"].lower(), m["mc"].lower(), m["pool"].lower())
        cluster = self.clusters.get(key[:2])
        if cluster is None:
            return 404, arm_error("ResourceNotFound", f"managed cluster {m['mc']} not found"), {}
        if method == "PUT":
            pool = {"id": f"{cluster['id']}/agentPools/{m['pool']}", "name": m["pool"],
                    "type": "Microsoft.ContainerService/managedClusters/agentPools",
                    "properties": {**body["properties"], "provisioningState": "Succeeded"}}
            self.pools[key] = pool
            cluster["properties"].setdefault("agentPoolProfiles", []).append(
                {"name": m["pool"], **body["properties"]})
            creating = json.loads(json.dumps(pool))
            creating["properties"]["provisioningState"] = "Creating"
            return 201, creating, self._start("PUT", f"/agentpools/{m['pool']}")
        if key not in self.pools:
            return 404, arm_error("ResourceNotFound", f"agent pool {m['pool']} not found"), {}
        return 200, self.pools[key], {}

    def _credentials(self, method: str, m: dict[str, str], query: Any, body: Any
                     ) -> tuple[int, Any, dict[str, str]]:
        if (m["rg"].lower(), m["mc"].lower()) not in self.clusters:
            return 404, arm_error("ResourceNotFound", f"managed cluster {m['mc']} not found"), {}
        value = base64.b64encode(self.kubeconfig).decode()
        return 200, {"kubeconfigs": [{"name": "clusterUser", "value": value}]}, {}



def backend_for(arm: FakeArm, **options: Any) -> tuple[Any, list[str]]:
    """A real AksProvisioner wired to ``arm``; returns it with the list its log lines go to."""
    from gpu_conformance.aks.provision import AksProvisioner
    from gpu_conformance.aks.settings import resolve_mapping

    values: dict[str, Any] = {"subscription": SUBSCRIPTION, "run-id": "t1", "creator": "ci-bot",
                              "no-sweep": True}
    values.update({k.replace("_", "-"): v for k, v in options.items()})
    credential = FakeCredential()
    backend = AksProvisioner(resolve_mapping(values), credential_factory=lambda: credential,
                         client_kwargs=arm.transport_kwargs(), retry_wait=0)
    return backend, []
