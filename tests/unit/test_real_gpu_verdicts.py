"""The verdicts scripts/real_gpu_check.py gave on a real H200 still follow from the captures.

The JSON files are what the script printed on the GPU host; here the same parsers and
device check re-judge the logs captured there (tests/captures.py finds them), so a change that would
have judged the real hardware differently fails.
"""

from __future__ import annotations

import json

import pytest

from gpu_conformance import gpus
from gpu_conformance.checks import device
from gpu_conformance.workloads import get_profile
from tests.captures import read_capture

LOGS = {"nvidia-smi": ["h200-nvidia-smi-L.txt", "h200-nvidia-smi.txt"], "torch": ["h200-torch.txt"]}


@pytest.mark.parametrize(("verdict_file", "vm_size"), [
    ("h200-real-gpu-check.json", "Standard_ND96isr_H200_v5"),
    ("h200-real-gpu-check-expecting-t4.json", "Standard_NC4as_T4_v3"),
])
def test_captured_logs_are_judged_as_on_the_gpu_host(verdict_file: str, vm_size: str) -> None:
    recorded = json.loads(read_capture(verdict_file))
    expected = gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: vm_size})
    assert expected.display == recorded["expected"]
    for name, files in LOGS.items():
        profile = get_profile(name)
        report = profile.parse("".join(read_capture(f) for f in files))
        problems = device.judge(report, expected, profile.min_accuracy)
        assert report.devices == recorded[name]["devices"]
        assert bool(problems) == bool(recorded[name]["problems"])
        assert [p.split(": ", 1)[0] for p in problems] == [
            p.split(": ", 1)[0] for p in recorded[name]["problems"]]
    assert recorded["passed"] is (vm_size == "Standard_ND96isr_H200_v5")
