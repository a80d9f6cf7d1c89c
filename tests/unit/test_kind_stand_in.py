"""kind's stand-in images: the workload prints each profile's reference log, judged as real."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from gpu_conformance import backends, device_plugin, gpus
from gpu_conformance.backends.kind import standins as kind
from gpu_conformance.settings import Settings
from gpu_conformance.workloads import PROFILES, WorkloadProfile

DEVICE = gpus.VM_SIZES[gpus.DEFAULT_VM_SIZE.lower()].device_name


def _kubelet_env(env: list[dict[str, str]]) -> dict[str, str]:
    # What the kubelet does to env values without $(NAME) references: $$ becomes $.
    return {e["name"]: e["value"].replace("$$", "$") for e in env}


def _container(profile: WorkloadProfile, **options: Any) -> dict[str, Any]:
    """The Job's container as the kind backend's adapt_job hook leaves it."""
    backend = backends.create(Settings.from_mapping({"backend": "kind", **options}), "r1")
    job = profile.job_manifest("w", "ns", gpus=1)
    backend.adapt_job(profile, job)
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def _plugin_images(**options: Any) -> list[str]:
    backend = backends.create(Settings.from_mapping({"backend": "kind", **options}), "r1")
    objects = device_plugin.load_manifest("current")
    backend.adapt_plugin(objects)
    return [c["image"] for c in device_plugin.daemonset_of(objects)["spec"]["template"]["spec"]
            ["containers"]]


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_stand_in_prints_the_reference_log(profile: WorkloadProfile) -> None:
    container = _container(profile)
    assert container["image"] == kind.STAND_IN_IMAGES.workload
    assert container["args"] == []
    assert container["resources"] == {"limits": {gpus.GPU_RESOURCE: "1"}}
    sh = shutil.which("sh")
    assert sh
    run = subprocess.run([sh, *container["command"][1:]], env=_kubelet_env(container["env"]),
                         capture_output=True, text=True, timeout=10, check=True)
    assert run.stdout == profile.reference_log(DEVICE)
    report = profile.parse(run.stdout)
    assert report.devices and set(report.devices) == {DEVICE}
    assert report.problems == []
    if report.success is not None:
        assert report.success
    if profile.min_accuracy is not None:
        assert report.final_accuracy is not None
        assert report.final_accuracy >= profile.min_accuracy


def test_profile_env_is_kept() -> None:
    profile = PROFILES["nvidia-smi"]
    env = kind.workload_overrides(profile, DEVICE)["env"]
    assert env[:-1] == profile.env
    assert env[-1]["name"] == kind.REFERENCE_LOG_ENV


def test_dollar_signs_survive_the_kubelet_expansion() -> None:
    profile = PROFILES["tf-mnist"]
    tricky = "name: $(HOME) costs $5 major: 7"
    odd = WorkloadProfile(name="odd", description="", image="x", parse=profile.parse,
                          reference_log=lambda device: tricky)
    (value,) = (e["value"] for e in kind.workload_overrides(odd, DEVICE)["env"])
    assert value == "name: $$(HOME) costs $$5 major: 7"
    assert _kubelet_env([{"name": "v", "value": value}])["v"] == tricky


def test_images_come_from_the_options() -> None:
    assert _container(PROFILES["tf-mnist"], kind_gpu_workload_image="local/echo:1")[
        "image"] == "local/echo:1"
    assert _plugin_images(kind_gpu_plugin_image="local/idle:1") == ["local/idle:1"]


def test_default_images() -> None:
    assert _plugin_images() == [kind.STAND_IN_IMAGES.plugin]
