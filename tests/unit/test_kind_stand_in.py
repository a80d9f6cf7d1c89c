"""kind's stand-in images: the workload prints each profile's reference log, judged as real."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from gpu_conformance import gpus
from gpu_conformance.backends import kind
from gpu_conformance.workloads import PROFILES, WorkloadProfile

DEVICE = gpus.VM_SIZES[gpus.DEFAULT_VM_SIZE.lower()].device_name


class Options:
    """Just enough of pytest.Config for option lookups."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def _kubelet_env(env: list[dict[str, str]]) -> dict[str, str]:
    # What the kubelet does to env values without $(NAME) references: $$ becomes $.
    return {e["name"]: e["value"].replace("$$", "$") for e in env}


def _container(profile: WorkloadProfile, config: Any = None) -> dict[str, Any]:
    """The Job's container as fixtures/workload.py builds it for kind."""
    job = profile.job_manifest("w", "ns", gpus=1)
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    container.update(kind.workload_overrides(profile, DEVICE, config))
    return container


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
    config = Options(kind_gpu_workload_image="local/echo:1", kind_gpu_plugin_image="local/idle:1")
    assert _container(PROFILES["tf-mnist"], config)["image"] == "local/echo:1"
    assert kind.plugin_image_override(config) == "local/idle:1"  # type: ignore[arg-type]


def test_default_images() -> None:
    assert kind.plugin_image_override() == kind.STAND_IN_IMAGES.plugin
    assert kind.stand_in_images(Options()) == kind.STAND_IN_IMAGES  # type: ignore[arg-type]
