"""The two ARM clients, built lazily; transport and polling interval are injectable for tests."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.resource.resources import ResourceManagementClient

#: seconds between LRO polls when ARM sends no Retry-After; creating a cluster takes minutes
POLLING_INTERVAL = 15
#: the SDK's HTTP logging prints every request URL and header name at INFO, which would flood
#: the report; bodies (tokens, kubeconfig) are only logged with logging_enable, never set here
_NOISY_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


@dataclass
class Clients:
    resources: ResourceManagementClient
    aks: ContainerServiceClient

    def close(self) -> None:
        self.aks.close()
        self.resources.close()


def make_clients(credential: TokenCredential, subscription: str,
                 client_kwargs: Mapping[str, Any] | None = None) -> Clients:
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    noisy = logging.getLogger(_NOISY_LOGGER)
    if noisy.level == logging.NOTSET:
        noisy.setLevel(logging.WARNING)
    kwargs: dict[str, Any] = {"polling_interval": POLLING_INTERVAL, **(client_kwargs or {})}
    kwargs.pop("logging_enable", None)
    return Clients(resources=ResourceManagementClient(credential, subscription, **kwargs),
                   aks=ContainerServiceClient(credential, subscription, **kwargs))
