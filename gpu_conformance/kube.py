"""Kubernetes API access: clients, the one call helper (bounded, transient errors retried by
name), and errors turned into lines that say what is wrong and what the suite needs."""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from gpu_conformance import kapi
from gpu_conformance.errors import AccessError, ClusterError, UsageError, is_not_found, one_line
from gpu_conformance.log import Log
from gpu_conformance.retry import exponential, retrying
from gpu_conformance.timeouts import DEFAULTS

T = TypeVar("T")
__all__ = ["call", "is_conflict", "is_not_found", "new_api_client", "server_version"]

TRANSIENT_STATUS = frozenset({0, 429, 500, 502, 503, 504})
RETRY_ATTEMPTS = 5
RBAC_HINT = "the suite's least-privilege rights are in manifests/incluster/rbac.yaml"

#: (connect, read) seconds of one API request; set from the run's timeouts at its start
_request_timeout: tuple[float, float] = (DEFAULTS["api-connect"].seconds,
                                         DEFAULTS["api-read"].seconds)


def set_request_timeout(connect: float, read: float) -> None:
    """Bound every later API request (from the ``api-connect``/``api-read`` timeouts)."""
    global _request_timeout
    _request_timeout = (connect, read)


def request_timeout() -> tuple[float, float]:
    return _request_timeout


def _reason_of(exc: BaseException) -> BaseException:
    """The innermost cause of a urllib3 error (MaxRetryError wraps the real one)."""
    seen = exc
    for _ in range(5):
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException):
            break
        seen = inner
    return seen


def tls_problem(exc: BaseException) -> str | None:
    """TLS failures in words (they are configuration errors, never worth a retry)."""
    inner = _reason_of(exc)
    if not isinstance(inner, ssl.SSLError | urllib3.exceptions.SSLError):
        text = str(exc)
        if "SSL" not in text and "certificate" not in text:
            return None
    text = str(inner)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        if "Hostname mismatch" in text or "IP address mismatch" in text:
            return "TLS: the server's certificate is not valid for the address in the kubeconfig"
        return ("TLS: the server's certificate is not signed by the kubeconfig's "
                "certificate-authority (certificate verify failed)")
    if "PEM lib" in text or "KEY_VALUES_MISMATCH" in text or "key values mismatch" in text:
        return ("TLS: the kubeconfig's client certificate or key is not usable (not PEM, or the "
                "key does not match the certificate)")
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "TLS: the server does not speak TLS at that address (is it http://?)"
    if "SSL" in text or "TLS" in text:
        return f"TLS handshake failed: {one_line(inner)}"
    return None


def is_transient(exc: BaseException) -> bool:
    """Connection problems, 429 and 5xx are worth another try; everything else is final."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS
    if tls_problem(exc) is not None:
        return False
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def _transient_reason(exc: BaseException, _attempt: int) -> str | None:
    if not is_transient(exc):
        return None
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return type(_reason_of(exc)).__name__


_VERB = re.compile(r"^(list|read|create|delete|patch|replace|watch|get)_(?:namespaced_)?"
                   r"(?P<what>.+?)(?:_for_all_namespaces)?(?:_status)?$")


def _operation(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "")
    match = _VERB.match(name)
    if not match:
        return name.replace("_", " ") or "call the API"
    verb = match.group(1)
    what = match.group("what").replace("_", "")
    return f"{verb} {what}s" if not what.endswith("s") else f"{verb} {what}"


def access_error(exc: ApiException, operation: str, host: str | None = None) -> AccessError:
    """A 401 or 403 in words: who refused what, and what the suite needs."""
    where = f" by {host}" if host else ""
    if exc.status == 401:
        return AccessError(f"401 Unauthorized{where}: the kubeconfig's credentials were rejected "
                           f"(expired token, revoked or wrong client certificate) while trying "
                           f"to {operation}",
                           hint="refresh the credentials (e.g. az aks get-credentials) and retry")
    return AccessError(f"forbidden: cannot {operation}: {one_line(exc)}",
                       hint=f"the suite needs to {operation}; {RBAC_HINT}")


def call(fn: Callable[..., T], *args: Any, deadline: float | None = None,
         log: Log | None = None, **kwargs: Any) -> T:
    """Call one API method, bounded in time, retrying transient failures (bounded).

    401 and 403 become an ``AccessError`` naming the operation; TLS failures are never
    retried. ``deadline`` (a ``time.monotonic()`` value) stops the retries of a wait that has
    its own bound.
    """
    if getattr(fn, "__module__", "").startswith(("kubernetes.client.api", "gpu_conformance.kapi")):
        kwargs.setdefault("_request_timeout", _request_timeout)
    try:
        return retrying(lambda: fn(*args, **kwargs), transient=_transient_reason,
                        attempts=RETRY_ATTEMPTS, wait=exponential(0.5, 4), action=_operation(fn),
                        log=log, deadline=deadline)
    except ApiException as exc:
        # a namespace being deleted also answers 403: that is no missing right
        if exc.status == 401 or (exc.status == 403 and "being terminated" not in (exc.body or "")):
            raise access_error(exc, _operation(fn)) from None
        raise


# --- kubeconfig -----------------------------------------------------------------------------

def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"it is a YAML {type(data).__name__}, not a mapping with clusters, contexts, users"
    for key in ("clusters", "contexts", "users"):
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return f"'{key}' must be a list of named entries, got {type(items).__name__}"
        for item in items:
            if not isinstance(item.get("name"), str):
                return f"an entry of '{key}' has no name"
            body = item.get(key.rstrip("s") if key != "users" else "user")
            if body is not None and not isinstance(body, dict):
                return f"'{key}' entry {item['name']!r} is a {type(body).__name__}, not a mapping"
    current = data.get("current-context")
    if current is not None and not isinstance(current, str):
        return "'current-context' must be a string"
    return None


def kubeconfig_paths(kubeconfig: Path | None) -> tuple[list[Path], str]:
    """The files a client would read, and how to name them in an error."""
    if kubeconfig is not None:
        return [Path(kubeconfig)], f"kubeconfig {kubeconfig}"
    env = os.environ.get("KUBECONFIG", "")
    if env.strip():
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p], f"KUBECONFIG={env}"
    return [Path.home() / ".kube" / "config"], f"the default kubeconfig {Path.home()}/.kube/config"


def in_cluster(kubeconfig: Path | None) -> bool:
    """Inside a pod with no kubeconfig at all: use the pod's ServiceAccount."""
    return (kubeconfig is None and not os.environ.get("KUBECONFIG", "").strip()
            and not (Path.home() / ".kube" / "config").exists()
            and bool(os.environ.get("KUBERNETES_SERVICE_HOST")))


def check_kubeconfig(kubeconfig: Path | None) -> None:
    """One clear line for a kubeconfig that is missing, a directory, not YAML or mis-shaped."""
    if in_cluster(kubeconfig):
        return
    paths, named = kubeconfig_paths(kubeconfig)
    for path in paths:
        if path.is_dir():
            raise UsageError(f"{named}: {path} is a directory, not a kubeconfig file")
        if not path.exists():
            raise UsageError(f"{named}: {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(errors="replace"))
        except OSError as exc:
            raise UsageError(f"{named}: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise UsageError(f"{named}: {path} is not valid YAML{where}") from None
        problem = _shape_problem(data)
        if problem:
            raise UsageError(f"{named}: {path} is not a kubeconfig: {problem}")


def new_api_client(kubeconfig: Path | None, context: str | None) -> client.ApiClient:
    """An ApiClient for the kubeconfig/context; any bad file or context is one clear line.

    urllib3's own retries are off: ``call`` retries, by name and bounded, so a dead server is
    reported in seconds instead of after retries stacked on retries.
    """
    check_kubeconfig(kubeconfig)
    _paths, named = kubeconfig_paths(kubeconfig)
    configuration = client.Configuration()
    try:
        if in_cluster(kubeconfig):
            named = "the pod's ServiceAccount (in-cluster)"
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None,
                                    context=context, client_configuration=configuration,
                                    persist_config=False)
    except config.ConfigException as exc:
        text = str(exc).splitlines()[0] if str(exc) else "invalid"
        if context and "context" in text.lower():
            raise UsageError(f"{named}: no context named {context!r}") from None
        raise UsageError(f"cannot use {named}: {text}") from None
    except (yaml.YAMLError, TypeError, AttributeError, KeyError, ValueError, OSError) as exc:
        raise UsageError(f"cannot use {named}: {type(exc).__name__}: {one_line(exc)}") from None
    configuration.retries = 0
    try:
        return client.ApiClient(configuration)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"cannot use {named}: {tls_problem(exc) or one_line(exc)}") from None


def describe_unreachable(exc: BaseException, host: str) -> str:
    """Why the API server at ``host`` could not be used, in words."""
    tls = tls_problem(exc)
    if tls:
        return f"{host}: {tls}"
    inner = _reason_of(exc)
    if isinstance(inner, urllib3.exceptions.ReadTimeoutError | TimeoutError) or (
            "Read timed out" in str(exc)):
        return f"the API server at {host} accepted the connection but did not answer"
    if isinstance(inner, urllib3.exceptions.NewConnectionError | ConnectionRefusedError) or (
            "Connection refused" in str(exc)):
        return f"cannot reach the API server at {host}: connection refused"
    if isinstance(inner, urllib3.exceptions.NameResolutionError) or "resolve" in str(exc):
        return f"cannot reach the API server at {host}: its name does not resolve"
    if isinstance(inner, urllib3.exceptions.ConnectTimeoutError):
        return f"cannot reach the API server at {host}: connecting timed out"
    return f"cannot reach the API server at {host}: {one_line(inner)}"


def server_version(api: client.ApiClient, budget: float | None = None) -> str:
    """The server's version; an unreachable, silent or refusing server is one clear line
    within ``budget`` seconds (default: the api-probe timeout)."""
    host = api.configuration.host
    seconds = budget if budget is not None else DEFAULTS["api-probe"].seconds
    deadline = time.monotonic() + seconds
    # each request gets what is left of the budget: a silent server costs the budget once
    per_request = (min(3.0, seconds), max(1.0, seconds))
    version_api = kapi.VersionApi(api)
    try:
        info = call(version_api.get_code, deadline=deadline, _request_timeout=per_request)
    except AccessError:
        raise
    except ApiException as exc:
        raise ClusterError(f"the API server at {host} answered {one_line(exc)}") from None
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, ssl.SSLError,
            OSError) as exc:
        tls = tls_problem(exc)
        if tls and "client certificate" in tls:
            raise UsageError(f"{host}: {tls}") from None
        raise ClusterError(describe_unreachable(exc, host)) from None
    return str(info.git_version)


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409
