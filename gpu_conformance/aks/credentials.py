"""Credential discovery that fails before any network call when nothing could possibly work.

DefaultAzureCredential falls through to the managed-identity probe of 169.254.169.254, which
hangs or times out off Azure; the check below refuses early with one line instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from gpu_conformance.aks.errors import AksCredentialError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

CredentialFactory = Callable[[], "TokenCredential"]

CREDENTIAL_HINT = (
    "set AZURE_TENANT_ID and AZURE_CLIENT_ID plus AZURE_FEDERATED_TOKEN_FILE (workload identity) "
    "or AZURE_CLIENT_SECRET, or run `az login`; on an Azure VM with a managed identity set "
    "AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential"
)


def credential_source(env: Mapping[str, str],
                      which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The credential DefaultAzureCredential is expected to use, or None if none is usable."""
    if env.get("AZURE_TENANT_ID") and env.get("AZURE_CLIENT_ID"):
        if env.get("AZURE_FEDERATED_TOKEN_FILE"):
            return "workload identity (AZURE_FEDERATED_TOKEN_FILE)"
        if env.get("AZURE_CLIENT_SECRET"):
            return "service principal secret (AZURE_CLIENT_SECRET)"
        if env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
            return "service principal certificate (AZURE_CLIENT_CERTIFICATE_PATH)"
    if env.get("AZURE_TOKEN_CREDENTIALS", "").lower() in ("managedidentitycredential", "prod"):
        return f"AZURE_TOKEN_CREDENTIALS={env['AZURE_TOKEN_CREDENTIALS']}"
    if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
        return "managed identity (IDENTITY_ENDPOINT)"
    if which("az"):
        return "Azure CLI login (az)"
    if which("azd"):
        return "Azure Developer CLI login (azd)"
    return None


def default_factory(env: Mapping[str, str],
                    which: Callable[[str], str | None] = shutil.which) -> CredentialFactory:
    """A factory for DefaultAzureCredential that refuses up front when nothing is configured."""
    def make() -> TokenCredential:
        if credential_source(env, which) is None:
            raise AksCredentialError("no Azure credentials found", hint=CREDENTIAL_HINT)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    return make
