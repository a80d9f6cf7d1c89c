"""tf-mnist: the seed guide's TensorFlow log (reference_logs/seed-tf-mnist-k80.txt)."""

from __future__ import annotations

from gpu_conformance import gpus
from gpu_conformance.workloads.tf_mnist import PROFILE, parse
from tests.captures import read_capture

SEED = read_capture("seed-tf-mnist-k80.txt")


def test_seed_log() -> None:
    report = parse(SEED)
    assert report.devices == ["Tesla K80"]
    assert report.device_lines == ["name: Tesla K80 major: 3"]
    assert len(report.accuracy) == 50
    assert report.accuracy[0] == (0, 0.1081)
    assert report.accuracy[-1] == (490, 0.9494)
    assert report.final_accuracy == 0.9494
    assert report.success is True
    assert report.problems == []


def test_seed_device_against_the_gpu_table() -> None:
    device = parse(SEED).devices[0]
    assert gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: "Standard_NC6"}).matches(device)
    assert gpus.expected_gpu({gpus.PRODUCT_LABEL: "Tesla-K80"}).matches(device)
    assert not gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: "Standard_NC4as_T4_v3"}).matches(
        device
    )


def test_creating_device_line_is_the_fallback() -> None:
    log = "\n".join(
        line for line in SEED.splitlines() if not line.startswith("name:")
    )
    report = parse(log)
    assert report.devices == ["Tesla K80"]
    assert report.success is True


def test_no_gpu() -> None:
    log = (
        "2019-05-16 16:08:31.258328: E tensorflow/stream_executor/cuda/cuda_driver.cc:406] "
        "failed call to cuInit: CUDA_ERROR_NO_DEVICE\n"
        "2019-05-16 16:08:31.258400: I tensorflow/stream_executor/cuda/cuda_diagnostics.cc:158] "
        "retrieving CUDA diagnostic information for host: samples-tf-mnist-demo-x\n"
    )
    report = parse(log)
    assert report.devices == []
    assert report.success is False
    assert any("cuInit failed" in p for p in report.problems)


def test_driver_too_old() -> None:
    log = SEED.split("Accuracy at step 0")[0] + (
        "InternalError: CUDA runtime implicit initialization on GPU:0 failed. Status: CUDA driver "
        "version is insufficient for CUDA runtime version\n"
    )
    report = parse(log)
    assert report.success is False
    assert any("driver version is insufficient" in p for p in report.problems)


def test_traceback_and_bad_values() -> None:
    log = SEED + "Accuracy at step 500: 1.5\nTraceback (most recent call last):\n  File ...\n"
    report = parse(log)
    assert report.success is False
    assert "the script raised a Python exception" in report.problems
    assert any("not a fraction" in p for p in report.problems)


def test_truncated_curve_is_not_a_pass_even_above_the_threshold() -> None:
    cut = SEED.split("Accuracy at step 100:")[0]
    report = parse(cut)
    assert report.final_accuracy is not None and report.final_accuracy > 0.9
    assert report.success is False
    assert report.problems == [
        "the log ends at step 90, before training's last line 'Adding run metadata for 499' "
        "(truncated, or the container was killed)"
    ]


def test_profile() -> None:
    assert PROFILE.args == ["--max_steps", "500"]
    assert PROFILE.min_accuracy == 0.9
    assert PROFILE.requires_device_line
