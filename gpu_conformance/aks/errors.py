"""Azure errors sorted into: retry by name, or stop with one line that says what to do.

azure-core already retries 408/429/5xx and connection errors (honouring Retry-After) and polls
long-running operations; only the ARM conflicts named in ``transient_reason`` are retried here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gpu_conformance.errors import ClusterError, GpuConformanceError, UsageError, shorten
from gpu_conformance.log import Log
from gpu_conformance.retry import exponential, retrying

if TYPE_CHECKING:
    from gpu_conformance.aks.settings import AksSettings

T = TypeVar("T")

RETRY_ATTEMPTS = 6
#: seconds between attempts grow 5, 10, 20, 40, 80: a conflicting AKS operation
#: (upgrade, scale, another create) usually ends within a few minutes
RETRY_WAIT_MULTIPLIER = 5.0
RETRY_WAIT_MAX = 120.0
MESSAGE_LIMIT = 400


class AksCredentialError(UsageError):
    """No usable Azure credential."""


class AksParameterError(UsageError):
    """Azure rejected a value the user chose (InvalidParameter and kin)."""


class AksConflictError(UsageError):
    """A cluster of the requested name exists and this run did not create it."""


class AksQuotaError(ClusterError):
    """The subscription's quota does not cover the request."""


class AksCapacityError(ClusterError):
    """The VM size cannot be had in this region for this subscription."""


class AksAuthError(ClusterError):
    """Authentication or authorization failed."""


class AksArmError(ClusterError):
    """Any other Azure Resource Manager failure."""


@dataclass(frozen=True)
class ArmFault:
    status: int | None
    codes: tuple[str, ...]
    #: the most specific (deepest) code and message: the one that says what went wrong
    code: str
    message: str
    text: str

    def has(self, *codes: str) -> bool:
        wanted = {c.lower() for c in codes}
        return any(c.lower() in wanted for c in self.codes)


def _field(error: Any, name: str) -> Any:
    return error.get(name) if isinstance(error, dict) else getattr(error, name, None)


def _walk(error: Any, found: list[tuple[str, str]], depth: int = 0) -> None:
    if error is None or depth > 5:
        return
    code, message = _field(error, "code"), _field(error, "message")
    if code or message:
        found.append((str(code or ""), str(message or "")))
    for detail in _field(error, "details") or []:
        _walk(detail, found, depth + 1)
    inner = _field(error, "innererror")
    if isinstance(inner, dict):
        _walk(inner, found, depth + 1)


def fault_of(exc: BaseException) -> ArmFault:
    """Codes and messages of an azure-core error, nested details included.

    A long-running operation that fails raises with status 200 (the poll succeeded); the real
    code is only in ``error.code`` / ``error.details``.
    """
    found: list[tuple[str, str]] = []
    _walk(getattr(exc, "error", None), found)
    status = getattr(exc, "status_code", None)
    if not any(message for _, message in found):
        found.append(("", str(getattr(exc, "message", None) or exc or type(exc).__name__)))
    code, message = next((pair for pair in reversed(found) if pair[1]), found[-1])
    codes = tuple(c for c, _ in found if c)
    text = " ".join(f"{c} {m}" for c, m in found).lower()
    return ArmFault(status if isinstance(status, int) else None, codes,
                    code or (codes[-1] if codes else ""), shorten(message, MESSAGE_LIMIT), text)


def _is_quota(f: ArmFault) -> bool:
    return f.has("QuotaExceeded", "ErrCode_InsufficientVCPUQuota", "InsufficientVCPUQuota") or (
        "quota" in f.text and ("exceeding approved" in f.text or f.has("OperationNotAllowed")))


def transient_reason(exc: BaseException) -> str | None:
    """Why this error is worth another attempt, or None. Quota conflicts are never transient."""
    if isinstance(exc, GpuConformanceError) or not hasattr(exc, "status_code"):
        return None
    f = fault_of(exc)
    if _is_quota(f):
        return None
    if "canceled by a later operation" in f.text or "cancelled by a later operation" in f.text:
        return "canceled by a later operation"
    if f.has("InternalOperationError"):
        return "InternalOperationError"
    in_progress = ("in progress" in f.text or "inprogress" in f.text) and (
        f.status == 409 or f.has("OperationNotAllowed", "Conflict", "AnotherOperationInProgress",
                                 "OperationPreempted"))
    if in_progress or f.has("AnotherOperationInProgress"):
        return "another operation is in progress"
    if f.has("AllocationFailed", "ZonalAllocationFailed"):
        return "AllocationFailed"
    return None


def clean_error(exc: BaseException, action: str, s: AksSettings | None) -> GpuConformanceError:
    """One line naming the cause and what to do, for any Azure SDK or identity error."""
    if isinstance(exc, GpuConformanceError):
        return exc
    f = fault_of(exc)
    where = f"{s.vm_size} in {s.location}" if s else "this size and region"
    code = f.code or (f"HTTP {f.status}" if f.status else type(exc).__name__)
    line = f"{action} failed: {code}: {f.message}"
    name = type(exc).__name__
    if name in ("ServiceRequestError", "ServiceRequestTimeoutError", "ServiceResponseError"):
        return AksArmError(f"{action} failed: cannot reach Azure Resource Manager: {f.message}",
                           hint="check network access and proxy settings for "
                                "management.azure.com")
    if name == "CredentialUnavailableError" or (name == "ClientAuthenticationError"
                                                 and f.status is None):
        first = f.message.split(". ")[0]
        return AksAuthError(f"{action} failed: no Azure token: {first}",
                            hint="check the credential environment variables or `az login`")
    if _is_quota(f):
        return AksQuotaError(line, hint=f"request more vCPU quota for {where} (portal: Quotas > "
                                        "Compute) or pick another --aks-vm-size/--aks-location; "
                                        "not retried")
    if f.has("SkuNotAvailable", "NotAvailableForSubscription", "VMSizeNotSupported",
             "VMSizeNotAllowed"):
        return AksCapacityError(line, hint=f"{where} is not offered to this subscription; pick "
                                           "another --aks-location or --aks-vm-size (`az vm "
                                           "list-skus --size SIZE -l LOCATION` shows restrictions)")
    if f.has("AllocationFailed", "ZonalAllocationFailed"):
        return AksCapacityError(line, hint=f"Azure has no free capacity for {where} right now; "
                                           "try another --aks-location or later")
    if f.status in (401, 403) or f.has("AuthorizationFailed", "LinkedAuthorizationFailed",
                                       "InvalidAuthenticationToken", "AuthenticationFailed"):
        return AksAuthError(line, hint="the identity needs Contributor on the subscription or "
                                       "resource group; check AZURE_CLIENT_ID/AZURE_TENANT_ID or "
                                       "`az login`, and --aks-subscription")
    if f.has("MissingSubscriptionRegistration"):
        return AksParameterError(line, hint="register the provider once: az provider register "
                                            "--namespace Microsoft.ContainerService")
    if f.has("SubscriptionNotFound", "InvalidSubscriptionId"):
        return AksParameterError(line, hint="check --aks-subscription / AZURE_SUBSCRIPTION_ID")
    if f.has("InvalidParameter", "InvalidParameterValue", "BadRequest", "LocationNotAvailable",
             "K8sVersionNotSupported", "AgentPoolK8sVersionNotSupported", "InvalidResourceName",
             "NoRegisteredProviderFound"):
        return AksParameterError(line, hint="fix the --aks-* option the message names (versions: "
                                            "`az aks get-versions -l LOCATION`)")
    group = s.resource_group if s else "the resource group"
    return AksArmError(line, hint=f"see the activity log of {group} in the Azure portal")


def call(fn: Callable[[], T], *, action: str, log: Log, settings: AksSettings | None = None,
         attempts: int = RETRY_ATTEMPTS, wait: float | None = None) -> T:
    """Run ``fn``, retrying only the named transient conflicts; other errors become one line.

    ``wait`` fixes the pause between attempts (tests use 0); by default it grows exponentially.
    """

    def transient(exc: BaseException, attempt: int) -> str | None:
        reason = transient_reason(exc)
        if reason == "AllocationFailed" and attempt >= 2:
            return None  # one more try at most: capacity rarely frees up within minutes
        return reason

    try:
        return retrying(fn, transient=transient, attempts=attempts, action=action, log=log,
                        wait=wait if wait is not None
                        else exponential(RETRY_WAIT_MULTIPLIER, RETRY_WAIT_MAX))
    except GpuConformanceError:
        raise
    except Exception as exc:
        if _is_azure_error(exc):
            raise clean_error(exc, action, settings) from exc
        raise


def _is_azure_error(exc: BaseException) -> bool:
    return any(c.__module__.startswith("azure.") for c in type(exc).__mro__)
