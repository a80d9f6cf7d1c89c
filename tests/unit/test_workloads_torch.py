"""torch: the project's GPU probe, parsed from its run on an H200, and its no-GPU paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_conformance import gpus
from gpu_conformance.workloads.torch_probe import (
    CONFIGMAP,
    PROFILE,
    SCRIPT,
    extra_objects,
    parse,
    probe_script,
)
from tests.captures import read_capture

H200 = read_capture("h200-torch.txt")
H200_NO_GPU = read_capture("h200-torch-no-gpu.txt")
PROBE = Path(__file__).parents[2] / "gpu_conformance" / "data" / SCRIPT


def test_h200_capture() -> None:
    report = parse(H200)
    assert report.devices == ["NVIDIA H200"]
    assert report.device_lines == ["name: NVIDIA H200 major: 9"]
    assert len(report.accuracy) == 51
    assert report.accuracy[0] == (0, 0.099)
    assert report.accuracy[-1] == (500, 0.98)
    assert PROFILE.min_accuracy is not None and report.final_accuracy is not None
    assert report.final_accuracy >= PROFILE.min_accuracy
    assert report.properties == {
        "torch_version": "2.11.0+cu130",
        "torch_cuda_version": "13.0",
        "train_seconds": "1.20",
        "probe_seconds": "10.59",
    }
    assert report.success is True
    assert report.problems == []


@pytest.mark.parametrize(
    "labels",
    [{gpus.PRODUCT_LABEL: "NVIDIA-H200"}, {gpus.INSTANCE_TYPE_LABEL: "Standard_ND96isr_H200_v5"}],
)
def test_h200_device_matches_the_gpu_table(labels: dict[str, str]) -> None:
    assert gpus.expected_gpu(labels).matches(parse(H200).devices[0])


def test_h200_without_a_gpu() -> None:
    """Captured on the same machine with CUDA_VISIBLE_DEVICES empty (exit status 2)."""
    report = parse(H200_NO_GPU)
    assert report.devices == []
    assert report.success is False
    assert report.problems == [
        "the GPU probe failed: no usable CUDA GPU: torch.cuda.is_available() is False "
        "(no GPU given to the container, or no NVIDIA driver on the node)"
    ]


def test_low_accuracy() -> None:
    line = ("gpu-probe: FAILED: accuracy 0.6360 after 500 steps is below 0.9 on NVIDIA H200\n")
    head = H200.split("gpu-probe: PASSED")[0]
    report = parse(head + line)
    assert report.success is False
    assert report.problems == [f"the GPU probe failed: {line[len('gpu-probe: FAILED: '):-1]}"]


def test_crash_after_passing_lines() -> None:
    report = parse(H200 + "Traceback (most recent call last):\n  File \"x\"\nRuntimeError: CUDA\n")
    assert report.success is False
    assert "the script raised a Python exception" in report.problems


def test_configmap_carries_the_probe() -> None:
    [configmap] = extra_objects("gc-ns")
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == CONFIGMAP
    assert configmap["data"] == {SCRIPT: PROBE.read_text()}
    assert probe_script() == PROBE.read_text()
    compile(probe_script(), SCRIPT, "exec")


def test_job_runs_the_mounted_script() -> None:
    job = PROFILE.job_manifest("gc-torch", "gc-ns")
    pod = job["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    [mount] = pod["containers"][0]["volumeMounts"]
    assert volume == {"name": mount["name"], "configMap": {"name": CONFIGMAP}}
    assert pod["containers"][0]["command"] == ["python", f"{mount['mountPath']}/{SCRIPT}"]
    assert PROFILE.image.startswith("pytorch/pytorch:2.")


STUBS = {
    "missing": "raise ImportError('No module named torch (stub)')\n",
    "no-gpu": (
        "__version__ = '2.5.1-stub'\n"
        "class version:\n    cuda = '12.4'\n"
        "class cuda:\n"
        "    @staticmethod\n    def is_available():\n        return False\n"
        "    @staticmethod\n    def device_count():\n        return 0\n"
    ),
    "cpu-build": "__version__ = '2.5.1+cpu'\nclass version:\n    cuda = None\n",
    "init-error": (
        "__version__ = '2.5.1-stub'\n"
        "class version:\n    cuda = '12.4'\n"
        "class cuda:\n"
        "    @staticmethod\n    def is_available():\n"
        "        raise RuntimeError('CUDA driver initialization failed')\n"
    ),
}


def run_probe(tmp_path: Path, stub: str) -> subprocess.CompletedProcess[str]:
    package = tmp_path / "torch"
    package.mkdir()
    (package / "__init__.py").write_text(STUBS[stub])
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(
    ("stub", "code", "reason"),
    [
        ("missing", 3, "PyTorch is not installed in this image"),
        ("no-gpu", 2, "no usable CUDA GPU"),
        ("cpu-build", 2, "has no CUDA support"),
        ("init-error", 2, "CUDA initialisation failed: CUDA driver initialization failed"),
    ],
)
def test_probe_without_a_gpu_exits_non_zero(
    tmp_path: Path, stub: str, code: int, reason: str
) -> None:
    done = run_probe(tmp_path, stub)
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stderr == ""
    last = done.stdout.splitlines()[-1]
    assert last.startswith("gpu-probe: FAILED: ") and reason in last
    report = parse(done.stdout)
    assert report.success is False and report.devices == []
    assert report.problems and reason in report.problems[0]


def test_stubbed_no_gpu_output_matches_the_real_one(tmp_path: Path) -> None:
    assert run_probe(tmp_path, "no-gpu").stdout.splitlines()[-1] == H200_NO_GPU.splitlines()[-1]


def test_probe_help_needs_no_torch() -> None:
    done = subprocess.run([sys.executable, str(PROBE), "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "--min-accuracy" in done.stdout
