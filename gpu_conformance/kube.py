"""Kubernetes API access: client construction and retries of transient errors only."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from gpu_conformance.errors import ClusterError, UsageError

log = logging.getLogger("gpu_conformance")

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_ATTEMPTS = 5


def is_transient(exc: BaseException) -> bool:
    """Connection problems, 429 and 5xx are worth another try; everything else is final."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS or exc.status == 0
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    reason = f"{type(exc).__name__}: {getattr(exc, 'status', '') or exc}" if exc else "?"
    log.warning("attempt %d/%d failed (%s); will retry", state.attempt_number, RETRY_ATTEMPTS,
                str(reason).splitlines()[0][:200])


transient_retry = retry(
    retry=retry_if_exception(is_transient),
    stop=stop_after_attempt(RETRY_ATTEMPTS),
    wait=wait_exponential(multiplier=0.5, max=8),
    before_sleep=_log_retry,
    reraise=True,
)


# (connect, read) seconds for one API request: a hung API server must not hang the run
REQUEST_TIMEOUT = (10, 60)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call one API method, bounded in time, retrying transient failures (bounded)."""
    if getattr(fn, "__module__", "").startswith("kubernetes.client.api"):
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    result: T = transient_retry(fn)(*args, **kwargs)
    return result


def new_api_client(kubeconfig: Path | None, context: str | None) -> client.ApiClient:
    """An ApiClient for the kubeconfig/context; a bad file or context is one clear line."""
    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise UsageError(f"kubeconfig {kubeconfig} does not exist")
    try:
        api: client.ApiClient = config.new_client_from_config(
            config_file=str(kubeconfig) if kubeconfig else None, context=context
        )
    except config.ConfigException as exc:
        where = str(kubeconfig) if kubeconfig else "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
        raise UsageError(f"cannot use {where}: {str(exc).splitlines()[0]}") from None
    return api


def server_version(api: client.ApiClient) -> str:
    try:
        info = call(client.VersionApi(api).get_code)
    except (ApiException, urllib3.exceptions.HTTPError) as exc:
        host = api.configuration.host
        raise ClusterError(f"cannot reach the API server at {host}: {short(exc)}") from None
    return str(info.git_version)


def short(exc: BaseException) -> str:
    """One line describing an API error (reason and message, never a body dump)."""
    if isinstance(exc, ApiException):
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = ""
        return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 404


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409
