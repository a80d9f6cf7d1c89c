"""GPU sharing as a node shows it: MIG (single and mixed strategies), time-slicing, MPS.

Label and resource names are those of NVIDIA's k8s-device-plugin / gpu-feature-discovery
v0.18.0 (internal/lm/resource.go, internal/lm/mig-strategy.go, api/config/v1, README):

- every offered resource ``nvidia.com/<r>`` gets ``nvidia.com/<r>.count``, ``.replicas``,
  ``.sharing-strategy`` (none | time-slicing | mps), ``.product``, ``.memory`` (MiB);
- MIG ``single``: the MIG devices are offered as ``nvidia.com/gpu``; ``nvidia.com/gpu.count``
  counts MIG devices and ``nvidia.com/gpu.product`` is ``<GPU>-MIG-<profile>`` (e.g.
  ``NVIDIA-A100-SXM4-40GB-MIG-1g.5gb``); an invalid layout gives ``<GPU>-MIG-INVALID`` and count
  0; ``nvidia.com/mig.strategy=single``;
- MIG ``mixed``: each profile is its own resource ``nvidia.com/mig-<profile>`` (``mig-1g.10gb``)
  with ``nvidia.com/mig-<profile>.count`` etc.; the MIG-enabled GPUs keep
  ``nvidia.com/gpu.count`` (physical GPUs) with ``nvidia.com/gpu.replicas=0`` and are not
  offered as ``nvidia.com/gpu``; ``nvidia.com/mig.strategy=mixed``;
- time-slicing / MPS with N replicas: capacity = devices x N, ``.replicas=N``, and the product
  gets ``-SHARED`` (``Tesla-T4-SHARED``) unless ``renameByDefault: true``, which offers
  ``nvidia.com/<r>.shared`` instead and leaves the product name alone.

All functions are pure: labels, capacity and allocatable are the node's dicts of strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpu_conformance.gpus import GPU_RESOURCE, INSTANCE_TYPE_LABEL, PRODUCT_LABEL

MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
MIG_CAPABLE_LABEL = "nvidia.com/mig.capable"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
SHARING_STRATEGY_LABEL = "nvidia.com/gpu.sharing-strategy"
SHARED_PRODUCT_SUFFIX = "-SHARED"
RENAMED_SUFFIX = ".shared"
INVALID_MIG_SUFFIX = "-MIG-INVALID"
DEVICE_PLUGIN_SOURCE = "NVIDIA/k8s-device-plugin v0.18.0"
#: XIDs the device plugin ignores (application errors); any other critical XID marks a device
#: unhealthy (internal/rm/health.go)
IGNORED_XIDS = (13, 31, 43, 45, 68, 109)

_MIG = r"mig-(?P<profile>(?:\d+c\.)?\d+g\.\d+gb(?:\+[a-z]+)*)"
_RESOURCE = re.compile(rf"^nvidia\.com/(?P<base>gpu|{_MIG})(?P<renamed>\.shared)?$")
_COUNT = re.compile(rf"^nvidia\.com/(?P<base>gpu|{_MIG})\.count$")
_PROFILE = re.compile(r"^(?:(?P<c>\d+)c\.)?(?P<g>\d+)g\.(?P<mem>\d+)gb(?P<more>.*)$")


def is_gpu_resource(name: str) -> bool:
    return _RESOURCE.match(name) is not None


def quantity(text: str | None) -> int | None:
    """A device count from the node status (``"8"``); None for absent or not an integer."""
    if text is None:
        return None
    text = str(text).strip()
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class Offer:
    resource: str
    capacity: int | None
    allocatable: int | None


@dataclass(frozen=True)
class Expectation:
    """What the labels say a resource should offer."""

    resource: str
    devices: int
    replicas: int
    expected: int
    because: str


@dataclass
class NodeSharing:
    mode: str
    offers: dict[str, Offer] = field(default_factory=dict)
    expected: dict[str, Expectation] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    workload_resource: str | None = None


def offers(capacity: Mapping[str, str] | None, allocatable: Mapping[str, str] | None
           ) -> dict[str, Offer]:
    """Every GPU resource the node offers: nvidia.com/gpu, nvidia.com/gpu.shared,
    nvidia.com/mig-<profile>[.shared], with capacity and allocatable."""
    capacity, allocatable = capacity or {}, allocatable or {}
    names = sorted({n for n in (*capacity, *allocatable) if is_gpu_resource(n)})
    return {n: Offer(n, quantity(capacity.get(n)), quantity(allocatable.get(n))) for n in names}


def _label(labels: Mapping[str, str], base: str, suffix: str) -> str | None:
    return labels.get(f"nvidia.com/{base}.{suffix}")


def expected_counts(labels: Mapping[str, str] | None) -> dict[str, Expectation]:
    """Resource -> what GFD's ``<r>.count`` x ``<r>.replicas`` labels promise."""
    labels = labels or {}
    found: dict[str, Expectation] = {}
    for key, value in sorted(labels.items()):
        match = _COUNT.match(key)
        count = quantity(value)
        if not match or count is None:
            continue
        base = match.group("base")
        replicas_text = _label(labels, base, "replicas")
        replicas = quantity(replicas_text)
        product = _label(labels, base, "product") or ""
        strategy = _label(labels, base, "sharing-strategy") or "none"
        shared = strategy in ("time-slicing", "mps") and (replicas or 0) > 1
        renamed = shared and not product.endswith(SHARED_PRODUCT_SUFFIX)
        resource = f"nvidia.com/{base}{RENAMED_SUFFIX if renamed else ''}"
        because = f"{key}={value}"
        if replicas_text is not None:
            because += f", nvidia.com/{base}.replicas={replicas_text}"
        if base == "gpu" and (replicas == 0 or product.endswith(INVALID_MIG_SUFFIX)):
            # MIG-enabled GPUs under the mixed strategy (replicas 0) or an invalid single layout:
            # not offered as nvidia.com/gpu
            found[resource] = Expectation(resource, count, 0, 0, because
                                          + (f", {PRODUCT_LABEL}={product}" if product else ""))
            continue
        factor = replicas if replicas and replicas > 1 else 1
        found[resource] = Expectation(resource, count, factor, count * factor, because)
    return found


def mode(labels: Mapping[str, str] | None) -> str:
    """``none``, ``mig-single``, ``mig-mixed``, ``mig-invalid``, ``time-slicing``, ``mps``, or
    a MIG mode plus a sharing mode (``mig-single+time-slicing``)."""
    labels = labels or {}
    strategy = labels.get(MIG_STRATEGY_LABEL, "none")
    product = labels.get(PRODUCT_LABEL, "")
    parts = []
    if product.endswith(INVALID_MIG_SUFFIX):
        parts.append("mig-invalid")
    elif strategy == "single" and "-MIG-" in product:
        parts.append("mig-single")
    elif strategy == "mixed" and any(_COUNT.match(k) and k.startswith("nvidia.com/mig-")
                                     for k in labels):
        parts.append("mig-mixed")
    sharing = sorted({v for k, v in labels.items()
                      if k.endswith(".sharing-strategy") and v in ("time-slicing", "mps")})
    parts += sharing
    return "+".join(parts) or "none"


def _profile_size(resource: str) -> tuple[int, int, int]:
    """(GPU slices, memory GB, compute slices) of ``nvidia.com/mig-3g.40gb`` for ordering."""
    match = _RESOURCE.match(resource)
    profile = match.group("profile") if match else None
    parsed = _PROFILE.match(profile or "")
    if not parsed:
        return (0, 0, 0)
    return (int(parsed.group("g")), int(parsed.group("mem")), int(parsed.group("c") or 0))


def workload_resource(node_offers: Mapping[str, Offer]) -> str | None:
    """What a GPU workload Job should ask for on this node: ``nvidia.com/gpu`` when it has any
    allocatable, else ``nvidia.com/gpu.shared``, else the largest MIG profile with any
    allocatable; None when nothing is allocatable."""
    def free(name: str) -> bool:
        offer = node_offers.get(name)
        return offer is not None and (offer.allocatable or 0) > 0

    for name in (GPU_RESOURCE, GPU_RESOURCE + RENAMED_SUFFIX):
        if free(name):
            return name
    migs = [n for n in node_offers if n.startswith("nvidia.com/mig-") and free(n)]
    return max(migs, key=_profile_size) if migs else None


def analyse(labels: Mapping[str, str] | None, capacity: Mapping[str, str] | None,
            allocatable: Mapping[str, str] | None) -> NodeSharing:
    """The node's GPU offers, what its labels promise, and every disagreement."""
    labels = labels or {}
    node = NodeSharing(mode(labels), offers(capacity, allocatable), expected_counts(labels))
    for name, offer in node.offers.items():
        if offer.capacity is not None and offer.allocatable is not None and (
                offer.allocatable < offer.capacity):
            node.problems.append(
                f"{name}: allocatable {offer.allocatable} < capacity {offer.capacity}: "
                f"{offer.capacity - offer.allocatable} device(s) marked unhealthy by the device "
                f"plugin ({DEVICE_PLUGIN_SOURCE} marks a device unhealthy on any critical XID "
                f"except {', '.join(map(str, IGNORED_XIDS))}; see its log and the node's kernel "
                "log)")
    for name, expectation in node.expected.items():
        found = node.offers.get(name)
        offered = found.capacity if found is not None else None
        if expectation.expected == 0:
            if offered:
                node.problems.append(f"{name}: capacity {offered}, but the labels ("
                                     f"{expectation.because}) say it is not offered")
            continue
        if offered is None:
            node.problems.append(f"{name}: the labels ({expectation.because}) promise "
                                 f"{expectation.expected}, but the node offers no {name}")
        elif offered != expectation.expected:
            node.problems.append(
                f"{name}: capacity {offered}, but the labels promise {expectation.devices} "
                f"device(s) x {expectation.replicas} replica(s) = {expectation.expected} "
                f"({expectation.because})")
    if node.mode.startswith("mig-invalid"):
        node.problems.append(f"gpu-feature-discovery reports an invalid MIG layout for "
                             f"mig.strategy=single ({PRODUCT_LABEL}="
                             f"{labels.get(PRODUCT_LABEL)}): every GPU must be MIG-enabled with "
                             "one profile only")
    node.workload_resource = workload_resource(node.offers)
    return node


def set_job_resource(job: dict[str, Any], resource: str, count: int = 1) -> None:
    """Make a Job built by WorkloadProfile.job_manifest ask for ``count`` of ``resource``
    instead of nvidia.com/gpu (in place)."""
    spec = job.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    for container in containers if isinstance(containers, list) else []:
        limits = container.setdefault("resources", {}).setdefault("limits", {})
        limits.pop(GPU_RESOURCE, None)
        limits[resource] = str(count)


# --- simulated nodes ----------------------------------------------------------------------

#: MIG device memory (MiB) as nvidia-smi reports it (utkuozdemir/nvidia_gpu_exporter
#: internal/captures, driver 590.48.01); GFD puts it in the ``.memory`` label
MIG_MEMORY_MIB: dict[tuple[str, str], int] = {
    ("NVIDIA H100 80GB HBM3", "1g.10gb"): 9984,
    ("NVIDIA H100 80GB HBM3", "2g.20gb"): 20096,
    ("NVIDIA H100 80GB HBM3", "3g.40gb"): 40448,
    ("NVIDIA H200", "1g.18gb"): 16384,
    ("NVIDIA H200", "2g.35gb"): 33280,
    ("NVIDIA H200", "3g.71gb"): 71424,
}


@dataclass(frozen=True)
class SimulatedNode:
    labels: dict[str, str]
    capacity: dict[str, str]
    allocatable: dict[str, str]


def _base_labels(vm_size: str | None) -> dict[str, str]:
    labels = {"nvidia.com/gpu.present": "true", MIG_CAPABLE_LABEL: "true"}
    if vm_size:
        labels[INSTANCE_TYPE_LABEL] = vm_size
    return labels


def _product(device_name: str) -> str:
    return "-".join(device_name.split())


def _resource_labels(base: str, product: str, count: int, replicas: int, strategy: str,
                     memory: int | None) -> dict[str, str]:
    labels = {f"nvidia.com/{base}.product": product, f"nvidia.com/{base}.count": str(count),
              f"nvidia.com/{base}.replicas": str(replicas),
              f"nvidia.com/{base}.sharing-strategy": strategy}
    if memory is not None:
        labels[f"nvidia.com/{base}.memory"] = str(memory)
    return labels


def mig_single_node(device_name: str = "NVIDIA H100 80GB HBM3", profile: str = "1g.10gb", *,
                    gpus: int = 8, per_gpu: int = 7, vm_size: str | None = None,
                    unhealthy: int = 0) -> SimulatedNode:
    """Every GPU split into ``per_gpu`` ``profile`` devices, offered as nvidia.com/gpu."""
    count = gpus * per_gpu
    labels = {**_base_labels(vm_size), MIG_STRATEGY_LABEL: "single",
              **_resource_labels("gpu", f"{_product(device_name)}-MIG-{profile}", count, 1,
                                 "none", MIG_MEMORY_MIB.get((device_name, profile)))}
    return SimulatedNode(labels, {GPU_RESOURCE: str(count)},
                         {GPU_RESOURCE: str(count - unhealthy)})


def mig_mixed_node(device_name: str = "NVIDIA H100 80GB HBM3",
                   layout: Mapping[str, int] | None = None, *, gpus: int = 8,
                   vm_size: str | None = None, unhealthy: Mapping[str, int] | None = None
                   ) -> SimulatedNode:
    """MIG-enabled GPUs split per ``layout`` (profile -> devices on the node), each profile its
    own nvidia.com/mig-<profile> resource."""
    layout = layout or {"1g.10gb": 2 * gpus, "2g.20gb": gpus, "3g.40gb": gpus}
    unhealthy = unhealthy or {}
    labels = {**_base_labels(vm_size), MIG_STRATEGY_LABEL: "mixed",
              **_resource_labels("gpu", _product(device_name), gpus, 0, "none", None)}
    capacity: dict[str, str] = {GPU_RESOURCE: "0"}
    allocatable: dict[str, str] = {GPU_RESOURCE: "0"}
    for profile, count in layout.items():
        base = f"mig-{profile}"
        labels.update(_resource_labels(base, f"{_product(device_name)}-MIG-{profile}", count, 1,
                                       "none", MIG_MEMORY_MIB.get((device_name, profile))))
        capacity[f"nvidia.com/{base}"] = str(count)
        allocatable[f"nvidia.com/{base}"] = str(count - unhealthy.get(profile, 0))
    return SimulatedNode(labels, capacity, allocatable)


def time_sliced_node(device_name: str = "Tesla T4", *, gpus: int = 1, replicas: int = 4,
                     rename: bool = False, vm_size: str | None = None,
                     memory_mib: int | None = 15360, strategy: str = "time-slicing"
                     ) -> SimulatedNode:
    """``gpus`` GPUs each shared ``replicas`` ways (``rename``: as nvidia.com/gpu.shared)."""
    product = _product(device_name) + ("" if rename else SHARED_PRODUCT_SUFFIX)
    labels = {**_base_labels(vm_size), MIG_CAPABLE_LABEL: "false",
              **_resource_labels("gpu", product, gpus, replicas, strategy, memory_mib)}
    resource = GPU_RESOURCE + (RENAMED_SUFFIX if rename else "")
    total = str(gpus * replicas)
    return SimulatedNode(labels, {resource: total}, {resource: total})



#: the offline cluster's GPU node kinds (``--gpu-sharing``)
SIMULATED_MODES = ("none", "mig-single", "mig-mixed", "time-slicing")
TIME_SLICING_REPLICAS = 4
#: the 1g, 2g and 3g MIG profiles of each MIG-capable GPU (NVIDIA MIG User Guide, "Supported
#: MIG Profiles"); a GPU has 7 slices: 7 x 1g, or 3g + 2g + 2 x 1g
MIG_PROFILES: dict[str, tuple[str, str, str]] = {
    "NVIDIA A100-SXM4-40GB": ("1g.5gb", "2g.10gb", "3g.20gb"),
    "NVIDIA A100-SXM4-80GB": ("1g.10gb", "2g.20gb", "3g.40gb"),
    "NVIDIA A100 80GB PCIe": ("1g.10gb", "2g.20gb", "3g.40gb"),
    "NVIDIA H100 80GB HBM3": ("1g.10gb", "2g.20gb", "3g.40gb"),
    "NVIDIA H100 NVL": ("1g.12gb", "2g.24gb", "3g.47gb"),
    "NVIDIA H200": ("1g.18gb", "2g.35gb", "3g.71gb"),
}


def simulated_node(sharing: str, device_name: str, gpus: int, *, vm_size: str | None = None,
                   memory_mib: int | None = None) -> SimulatedNode | None:
    """A GPU node of kind ``sharing`` (SIMULATED_MODES; None for "none"): MIG single (every
    GPU as 7 x 1g), MIG mixed (each GPU as 3g + 2g + 2 x 1g) or time-slicing (4 replicas).

    Raises ValueError (one line) for MIG on a GPU without MIG.
    """
    if sharing == "none":
        return None
    if sharing == "time-slicing":
        return time_sliced_node(device_name, gpus=gpus, replicas=TIME_SLICING_REPLICAS,
                                vm_size=vm_size, memory_mib=memory_mib)
    if sharing not in SIMULATED_MODES:
        raise ValueError(f"GPU sharing must be one of {', '.join(SIMULATED_MODES)}, got "
                         f"{sharing!r}")
    profiles = MIG_PROFILES.get(device_name)
    if profiles is None:
        raise ValueError(f"{device_name} has no MIG; {sharing} needs one of "
                         f"{', '.join(sorted(MIG_PROFILES))} (pick it with --gpu-product)")
    small, medium, large = profiles
    if sharing == "mig-single":
        return mig_single_node(device_name, small, gpus=gpus, per_gpu=7, vm_size=vm_size)
    return mig_mixed_node(device_name, {small: 2 * gpus, medium: gpus, large: gpus}, gpus=gpus,
                          vm_size=vm_size)
