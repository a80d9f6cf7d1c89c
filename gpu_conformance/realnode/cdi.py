"""CDI (Container Device Interface) specs: a fake one for hosts without a GPU, so the NVIDIA
runtime path (plugin -> NVIDIA_VISIBLE_DEVICES -> nvidia-container-runtime in CDI mode ->
CDI edits -> runc) runs end to end here; on a GPU host ``nvidia-ctk cdi generate`` writes
the real one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KIND = "nvidia.com/gpu"
FAKE_SPEC = "gpu-conformance-fake-gpus.json"
#: inside the container: one file per injected device, like /dev/nvidiaN
FAKE_DEVICE_DIR = "/run/fake-gpus"


def fake_spec(count: int, id_prefix: str, device_dir: Path, hook: Path | None) -> dict[str, Any]:
    """Devices ``<prefix>0..`` and ``all``: each adds an env var and bind-mounts a marker file
    (what nvidia-ctk's spec does with /dev/nvidiaN and the driver libraries); a
    createContainer hook, when given, runs nvidia-cdi-hook as the real spec does."""
    device_dir.mkdir(parents=True, exist_ok=True)
    devices: list[dict[str, Any]] = []
    for index in range(count):
        name = f"{id_prefix}{index}"
        marker = device_dir / name
        marker.write_text(f"{name}\n")
        devices.append({"name": name, "containerEdits": {
            "env": [f"FAKE_CDI_DEVICE_{index}={name}"],
            "mounts": [{"hostPath": str(marker), "containerPath": f"{FAKE_DEVICE_DIR}/{name}",
                        "options": ["ro", "nosuid", "nodev", "bind"]}],
        }})
    all_edits: dict[str, Any] = {"env": [], "mounts": []}
    for device in devices:
        all_edits["env"] += device["containerEdits"]["env"]
        all_edits["mounts"] += device["containerEdits"]["mounts"]
    devices.append({"name": "all", "containerEdits": all_edits})
    common: dict[str, Any] = {"env": ["FAKE_CDI_SPEC=gpu-conformance"]}
    if hook is not None:
        common["hooks"] = [{"hookName": "createContainer", "path": str(hook),
                            "args": ["nvidia-cdi-hook", "create-symlinks",
                                     "--link", f"{FAKE_DEVICE_DIR}::/run/fake-gpus-link"]}]
    return {"cdiVersion": "0.6.0", "kind": KIND, "devices": devices, "containerEdits": common}


def write_fake_spec(spec_dir: Path, count: int, id_prefix: str, hook: Path | None) -> Path:
    spec_dir.mkdir(parents=True, exist_ok=True)
    target = spec_dir / FAKE_SPEC
    target.write_text(json.dumps(fake_spec(count, id_prefix, spec_dir / "fake-devices", hook), indent=2))
    return target
