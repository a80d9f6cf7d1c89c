"""The images a real node with fake GPUs needs, built from our static programs.

- the pod sandbox image (our ``pause``), under a name of our own that containerd's
  ``pinned_images.sandbox`` points at;
- the device plugin image, tagged as the manifest's ``nvcr.io/nvidia/k8s-device-plugin:v0.18.0``
  so manifests/current/nvidia-device-plugin.yaml applies unchanged, holding our fake plugin;
- one stand-in per workload profile, tagged with the profile's image: a static program
  installed as the entrypoint and as every program the profiles run (``/bin/sh``,
  ``python``, ``nvidia-smi``, the CUDA sample), that prints the profile's reference log.
"""

from __future__ import annotations

from pathlib import Path

from gpu_conformance.realnode import config as cfg
from gpu_conformance.realnode import images
from gpu_conformance.workloads import PROFILES, WorkloadProfile

DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"
STANDIN = "/gpu-conformance/standin"
REFERENCE_LOG = "/gpu-conformance/reference.log"
REFERENCE_DIR = "/gpu-conformance/reference"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: every program a profile's command may name; each is the stand-in
STANDIN_NAMES = ("/bin/sh", "/bin/bash", "/usr/bin/python", "/usr/bin/python3", "/usr/bin/nvidia-smi",
                 "/cuda-samples/vectorAdd")
LABEL = "io.gpu-conformance.stand-in"


def pause_image(pause: Path) -> images.ImageSpec:
    return images.ImageSpec(cfg.PAUSE_IMAGE, [[images.host_file("/pause", pause, 0o755)]],
                            entrypoint=["/pause"], labels={LABEL: "pause"})


def fake_plugin_image(plugin: Path, count: int, device_name: str,
                      reference: str = DEVICE_PLUGIN_IMAGE) -> images.ImageSpec:
    return images.ImageSpec(
        reference,
        [[images.host_file("/usr/bin/nvidia-device-plugin", plugin, 0o755),
          images.directory("/tmp", 0o1777)]],
        entrypoint=["/usr/bin/nvidia-device-plugin"],
        env={"PATH": PATH, "FAKE_GPU_COUNT": str(count), "FAKE_GPU_NAME": device_name,
             "FAKE_GPU_ID_PREFIX": "fake-gpu-"},
        labels={LABEL: "fake device plugin"},
    )


def standin_image(profiles: list[WorkloadProfile], standin: Path, device_name: str,
                  gpus: int = 1) -> images.ImageSpec:
    """One image for the profiles that name it: the first one's log is the default, each has
    its own under REFERENCE_DIR (the stand-in picks by the pod's name, ``gpu-<profile>-...``)."""

    def log(profile: WorkloadProfile) -> str:
        return profile.reference_log(device_name, gpus) if profile.all_gpus else \
            profile.reference_log(device_name)

    entries = [
        images.host_file(STANDIN, standin, 0o755),
        images.file(REFERENCE_LOG, log(profiles[0])),
        images.directory(REFERENCE_DIR, 0o755),
        *[images.file(f"{REFERENCE_DIR}/{p.name}.log", log(p)) for p in profiles],
        images.directory("/tmp", 0o1777),
        *[images.symlink(name, STANDIN) for name in STANDIN_NAMES],
    ]
    return images.ImageSpec(profiles[0].image, [entries], entrypoint=[STANDIN], env={"PATH": PATH},
                            labels={LABEL: ",".join(p.name for p in profiles)})


def fake_gpu_images(programs: dict[str, Path], count: int, device_name: str) -> list[images.ImageSpec]:
    """Everything a fake-GPU node imports: pause, the plugin, one stand-in per profile."""
    specs = [pause_image(programs["pause"]),
             fake_plugin_image(programs["fakegpu-device-plugin"], count, device_name)]
    by_image: dict[str, list[WorkloadProfile]] = {}
    for profile in PROFILES.values():
        by_image.setdefault(profile.image, []).append(profile)
    specs += [standin_image(group, programs["standin"], device_name, count)
              for group in by_image.values()]
    return specs
