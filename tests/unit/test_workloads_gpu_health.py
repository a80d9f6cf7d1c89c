"""gpu-health: nvidia-smi -q -x judged per GPU, on reports derived from public captures.

The inputs are not captures of ours: tests/data/captures/README-health.md says where each
comes from. Every gate is shown failing with the figure, the limit and the source in its
message; garbage and truncation never raise.
"""

from __future__ import annotations

import random
import re

import pytest

from gpu_conformance import gpus
from gpu_conformance.gates import Status
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.workloads import gpu_health
from gpu_conformance.workloads.gpu_health import (
    PROFILE,
    broken_reference_log,
    judge_log,
    parse,
    parse_snapshot,
    reference_log,
)
from tests.captures import read_capture

H200 = "Standard_ND96isr_H200_v5"
A100 = "Standard_ND96amsr_A100_v4"
V100 = "Standard_NC6s_v3"
T4 = "Standard_NC4as_T4_v3"
REFERENCE = reference_log("NVIDIA H200")
A100_MIG = read_capture("derived-a100-sxm4-mig-v12.txt")
V100_PCIE = read_capture("derived-v100s-pcie-v11.txt")
DEVICE_NAMES = sorted({sku.device_name for sku in gpus.VM_SIZES.values()})


def edit(log: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in log, old
        log = log.replace(old, new)
    return log


def results(log: str, vm_size: str | None, key: str) -> list[tuple[Status, str]]:
    return [(r.status, r.message) for r in judge_log(log, vm_size).results if r.key == key]


def failed(log: str, vm_size: str | None) -> list[str]:
    return judge_log(log, vm_size).problems


def test_reference_report() -> None:
    report = parse(REFERENCE)
    assert report.devices == ["NVIDIA H200"]
    assert report.device_lines == ["GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-"
                                   "000000000000, 00000000:83:00.0)"]
    assert report.problems == [] and report.success is True
    assert report.properties == {
        "driver_version": "590.48.01", "cuda_version": "13.1", "gpu_count": "1",
        "ecc_mode": "Enabled", "persistence_mode": "Enabled", "mig_mode": "Disabled",
        "pcie_replays": "0", "pcie_link": "gen5/5x16/16"}
    assert REFERENCE.endswith("gpu-health: nvidia-smi -q -x exit status 0\n")


def test_reference_report_passes_the_h200_gates() -> None:
    judged = judge_log(REFERENCE, H200)
    assert judged.passed, judged.problems
    statuses = {r.key: r.status for r in judged.results}
    assert statuses["ecc-dram"] is Status.PASS
    assert statuses["remapped-rows-uncorrectable"] is Status.PASS
    assert statuses["recovery-action"] is Status.PASS
    assert statuses["pcie-gen"] is Status.PASS and statuses["pcie-width"] is Status.PASS
    assert statuses["xid"] is Status.NOT_MEASURED
    assert not judged.by_status(Status.FAIL) and not judged.by_status(Status.WARN)


@pytest.mark.parametrize("device", DEVICE_NAMES)
def test_reference_log_names_any_device(device: str) -> None:
    report = parse(reference_log(device))
    assert report.devices == [device] and report.success is True


def test_size_without_gates_reports_not_gated_never_pass() -> None:
    judged = judge_log(REFERENCE, T4)
    assert judged.passed
    for key in ("ecc-dram", "ecc-sram-correctable", "ecc-sram-uncorrectable",
                "remapped-rows-uncorrectable"):
        [(status, message)] = results(REFERENCE, T4, key)
        assert status is Status.NOT_GATED
        assert "not gated" in message and "has no conf" in message


def test_ecc_errors_fail_each_gate_with_figure_limit_and_source() -> None:
    log = broken_reference_log("ecc-errors", "NVIDIA H200")
    problems = failed(log, H200)
    conf = "conf/nd96isr_h200_v5.conf: 'check_gpu_ecc 20000000 10000'"
    expected = [
        ("SRAM uncorrectable ECC errors: volatile 2, aggregate 2; expected <= 0", conf),
        ("DRAM ECC errors: volatile correctable 0, volatile uncorrectable 25000000, aggregate "
         "correctable 0, aggregate uncorrectable 25000000; expected <= 20000000", conf),
        ("row remapping pending: Yes; expected No", "GPU reset is required to complete row "
                                                    "remapping"),
        ("rows remapped for uncorrectable errors: uncorrectable 513; expected <= 512", conf),
    ]
    assert len(problems) == len(expected)
    for (figure, source), problem in zip(expected, problems, strict=True):
        assert problem.startswith("GPU 0 (NVIDIA H200, 00000000:83:00.0): " + figure)
        assert source in problem and "[source: " in problem


def test_ecc_errors_fail_on_every_size_through_the_pending_remap() -> None:
    report = parse(broken_reference_log("ecc-errors", "Tesla T4"))
    assert report.success is False
    assert len(report.problems) == 1 and "row remapping pending: Yes" in report.problems[0]
    assert len(failed(broken_reference_log("ecc-errors", "Tesla T4"), T4)) == 1


def test_sram_correctable_and_override() -> None:
    log = edit(REFERENCE, ("<sram_correctable>0</sram_correctable>",
                           "<sram_correctable>10001</sram_correctable>"))
    [(status, message)] = results(log, H200, "ecc-sram-correctable")
    assert status is Status.FAIL and "volatile 10001, aggregate 10001; expected <= 10000" in message
    assert judge_log(log, H200, ["sram-correctable=20000"]).passed
    [result] = [r for r in judge_log(log, H200, ["sram-correctable=off"]).results
                if r.key == "ecc-sram-correctable"]
    assert result.status is Status.NOT_GATED


def test_hw_slowdown_fails_naming_the_reasons() -> None:
    log = broken_reference_log("hw-slowdown", "NVIDIA H200")
    report = parse(log)
    assert report.success is False
    [problem] = report.problems
    assert "clock event reasons: active: hw_slowdown, hw_thermal_slowdown; expected none of " \
           "hw_slowdown, hw_thermal_slowdown, hw_power_brake_slowdown, sw_thermal_slowdown" in problem
    assert "HW Slowdown (reducing the core clocks by a factor of 2 or more)" in problem


@pytest.mark.parametrize("reason", ["hw_power_brake_slowdown", "sw_thermal_slowdown"])
def test_other_fault_reasons_fail(reason: str) -> None:
    tag = f"clocks_event_reason_{reason}"
    log = edit(REFERENCE, (f"<{tag}>Not Active</{tag}>", f"<{tag}>Active</{tag}>"))
    [(status, message)] = results(log, None, "clock-events")
    assert status is Status.FAIL and reason in message


@pytest.mark.parametrize("reason", ["sw_power_cap", "applications_clocks_setting", "sync_boost",
                                    "display_clocks_setting"])
def test_benign_reasons_pass(reason: str) -> None:
    tag = f"clocks_event_reason_{reason}"
    log = edit(REFERENCE, (f"<{tag}>Not Active</{tag}>", f"<{tag}>Active</{tag}>"))
    [(status, message)] = results(log, H200, "clock-events")
    assert status is Status.PASS and reason in message


def test_old_throttle_reason_layout() -> None:
    tag = "clocks_throttle_reason_sw_thermal_slowdown"
    log = edit(V100_PCIE, (f"<{tag}>Not Active</{tag}>", f"<{tag}>Active</{tag}>"))
    [(status, message)] = results(log, V100, "clock-events")
    assert status is Status.FAIL and "active: sw_thermal_slowdown" in message
    unknown = edit(REFERENCE, ("</clocks_event_reasons>",
                               "<clocks_event_reason_new_thing>Active</clocks_event_reason_new_"
                               "thing></clocks_event_reasons>"))
    [(status, message)] = results(unknown, H200, "clock-events")
    assert status is Status.WARN and "new_thing" in message


IDLE_GEN1 = ("<current_link_gen>5</current_link_gen>", "<current_link_gen>1</current_link_gen>")
X8 = ("<current_link_width>16x</current_link_width>", "<current_link_width>8x</current_link_width>")
BUSY = [("<clocks_event_reason_gpu_idle>Active</clocks_event_reason_gpu_idle>",
         "<clocks_event_reason_gpu_idle>Not Active</clocks_event_reason_gpu_idle>"),
        ("<gpu_util>0 %</gpu_util>", "<gpu_util>87 %</gpu_util>")]


@pytest.mark.parametrize(("change", "key"), [(IDLE_GEN1, "pcie-gen"), (X8, "pcie-width")])
def test_pcie_below_max_at_idle_is_not_judged(change: tuple[str, str], key: str) -> None:
    log = edit(REFERENCE, change)
    [(status, message)] = results(log, H200, key)
    assert status is Status.NOT_JUDGED
    assert "may be reduced when the GPU is not in use" in message
    assert parse(log).success is True


@pytest.mark.parametrize(("change", "key", "figure"),
                         [(IDLE_GEN1, "pcie-gen", "PCIe link generation: Gen 1 of max Gen 5; "
                                                  "expected Gen 5"),
                          (X8, "pcie-width", "PCIe link width: x8 of max x16; expected x16")])
def test_pcie_below_max_while_busy_fails(change: tuple[str, str], key: str, figure: str) -> None:
    log = edit(REFERENCE, change, *BUSY)
    [(status, message)] = results(log, H200, key)
    assert status is Status.FAIL and figure in message
    assert any(figure in p for p in parse(log).problems)


@pytest.mark.parametrize(("pair", "key", "figure"), [
    (("<gpu_recovery_action>None</gpu_recovery_action>",
      "<gpu_recovery_action>Reset</gpu_recovery_action>"), "recovery-action",
     "GPU recovery action: Reset; expected None"),
    (("<remapped_row_failure>No</remapped_row_failure>",
      "<remapped_row_failure>Yes</remapped_row_failure>"), "remapped-rows-failure",
     "row remapping failure: Yes; expected No"),
    (("<channel_repair_pending>No</channel_repair_pending>",
      "<channel_repair_pending>Yes</channel_repair_pending>"), "repair-pending",
     "memory repair flags: channel_repair_pending = Yes; expected No"),
    (("<unrepairable_memory>No</unrepairable_memory>",
      "<unrepairable_memory>Yes</unrepairable_memory>"), "repair-pending",
     "unrepairable_memory = Yes"),
    (("<sram_threshold_exceeded>No</sram_threshold_exceeded>",
      "<sram_threshold_exceeded>Yes</sram_threshold_exceeded>"), "sram-threshold",
     "SRAM error threshold exceeded: Yes; expected No"),
])
def test_rules_for_every_gpu_fail_without_a_vm_size(pair: tuple[str, str], key: str,
                                                    figure: str) -> None:
    log = edit(REFERENCE, pair)
    report = parse(log)
    assert report.success is False
    assert any(figure in p and "[source: " in p for p in report.problems), report.problems
    assert any(r.key == key and r.status is Status.FAIL for r in judge_log(log, T4).results)


def test_reset_status_of_driver_535() -> None:
    assert parse(A100_MIG).success is True
    for tag in ("reset_required", "drain_and_reset_recommended"):
        log = edit(A100_MIG, (f"<{tag}>No</{tag}>", f"<{tag}>Yes</{tag}>"))
        [(status, message)] = results(log, A100, "reset-status")
        assert status is Status.FAIL and "GPU Reset Status" in message


def test_a100_combined_sram_counter_and_mig_hides_row_remapping() -> None:
    [(status, message)] = results(A100_MIG, A100, "remapped-rows")
    assert status is Status.NOT_MEASURED and "MIG mode" in message
    log = edit(A100_MIG, ("<sram_uncorrectable>0</sram_uncorrectable>\n                "
                          "<dram_correctable>",
                          "<sram_uncorrectable>3</sram_uncorrectable>\n                "
                          "<dram_correctable>"))
    [(status, message)] = results(log, A100, "ecc-sram-uncorrectable")
    assert status is Status.FAIL and "volatile 3, aggregate 3; expected <= 0" in message
    assert "conf/nd96amsr_a100_v4.conf" in message


def test_v100_retired_pages_gate() -> None:
    assert judge_log(V100_PCIE, V100).passed
    table_full = edit(V100_PCIE,
                      ("<retired_count>0</retired_count>", "<retired_count>40</retired_count>"),
                      ("<pending_retirement>No</pending_retirement>",
                       "<pending_retirement>Yes</pending_retirement>"))
    [(status, message)] = results(table_full, V100, "retired-pages")
    assert status is Status.FAIL
    assert "80 (single bit 40, double bit 40), retirement pending Yes; expected < 62 while a " \
           "retirement is pending" in message and "check_SDBE_ecc" in message
    [(status, message)] = results(table_full, T4, "retired-pages")
    assert status is Status.WARN and "pending retirement" in message
    [(status, _)] = results(V100_PCIE, V100, "ecc-single-double-bit")
    assert status is Status.NOT_GATED


def test_ecc_disabled_and_persistence_off_are_warnings() -> None:
    log = edit(REFERENCE, ("<current_ecc>Enabled</current_ecc>", "<current_ecc>Disabled</current_ecc>"),
               ("<persistence_mode>Enabled</persistence_mode>",
                "<persistence_mode>Disabled</persistence_mode>"))
    judged = judge_log(log, H200)
    assert judged.passed
    assert {r.key for r in judged.by_status(Status.WARN)} == {"ecc-mode", "persistence-mode"}


def _eight_gpus() -> str:
    start = REFERENCE.index('\t<gpu id="00000000:83:00.0">')
    end = REFERENCE.index("\t</gpu>") + len("\t</gpu>\n")
    gpu = REFERENCE[start:end]
    gpus_xml = "".join(gpu.replace("83:00.0", f"{0x83 + i:02x}:00.0").replace(
        "0000-000000000000</uuid>", f"0000-{i:012d}</uuid>") for i in range(8))
    return (REFERENCE[:start] + gpus_xml + REFERENCE[end:]).replace(
        "<attached_gpus>1</attached_gpus>", "<attached_gpus>8</attached_gpus>")


def test_eight_gpus_one_broken() -> None:
    log = _eight_gpus()
    report = parse(log)
    assert report.devices == ["NVIDIA H200"] * 8 and report.success is True
    broken = log.replace("<gpu id=\"00000000:86:00.0\">\n\t\t<product_name>NVIDIA H200",
                         "<gpu id=\"00000000:86:00.0\">\n\t\t<product_name>NVIDIA H200\n", 1)
    broken = re.sub(r'(<gpu id="00000000:86:00.0">.*?)<remapped_row_pending>No',
                    r"\1<remapped_row_pending>Yes", broken, count=1, flags=re.DOTALL)
    [problem] = parse(broken).problems
    assert problem.startswith("GPU 3 (NVIDIA H200") and "00000000:86:00.0" in problem
    missing = log.replace("<attached_gpus>8</attached_gpus>", "<attached_gpus>9</attached_gpus>")
    assert parse(missing).problems == ["nvidia-smi reports attached_gpus 9 but describes 8 GPU(s)"]


def test_every_truncation_fails_and_never_raises() -> None:
    lines = REFERENCE.splitlines(keepends=True)
    closing = next(i for i, line in enumerate(lines) if line.startswith("</nvidia_smi_log>"))
    for cut in range(closing + 1):
        report = parse("".join(lines[:cut]))
        assert report.success is False and report.problems, cut
        judge_log("".join(lines[:cut]), H200)
    assert parse("".join(lines[: closing + 1])).success is True


@pytest.mark.parametrize("junk", [
    "", "\n", "\x00\xff garbage \ufffd", "<nvidia_smi_log>", "<?xml version='1.0'?><a>",
    "<nvidia_smi_log></nvidia_smi_log>", "<nvidia_smi_log><gpu><<</gpu></nvidia_smi_log>",
    "<?xml version=\"1.0\" ?><!DOCTYPE x [<!ENTITY a \"b\">]><nvidia_smi_log>&a;</nvidia_smi_log>",
    "a" * 100_000, "No devices were found\n" + gpu_health.EXIT_LINE + " 6\n",
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
])
def test_garbage_never_raises_and_never_passes(junk: str) -> None:
    report = parse(junk)
    assert report.success is not True and report.problems
    judged = judge_log(junk, H200)
    assert not judged.passed


def test_known_failures_are_named() -> None:
    report = parse("No devices were found\n" + gpu_health.EXIT_LINE + " 6\n")
    assert "nvidia-smi found no GPU: the container was given none, or the driver sees none" in (
        report.problems)
    assert "nvidia-smi -q -x exited with status 6" in report.problems
    nonzero = REFERENCE.replace("exit status 0", "exit status 15")
    assert parse(nonzero).problems == ["nvidia-smi -q -x exited with status 15"]


def test_random_damage_never_raises() -> None:
    rng = random.Random(7)
    for _ in range(300):
        chars = list(REFERENCE)
        for _ in range(rng.randint(1, 20)):
            chars[rng.randrange(len(chars))] = rng.choice("<>/&x\x00 9")
        parse("".join(chars))
        judge_log("".join(chars), H200)


def test_missing_fields_are_not_measured() -> None:
    snap = parse_snapshot("<nvidia_smi_log><attached_gpus>1</attached_gpus><gpu id='x'>"
                          "<product_name>NVIDIA H200</product_name></gpu></nvidia_smi_log>")
    assert snap.problems == [] and len(snap.gpus) == 1
    judged = judge_log("<nvidia_smi_log><gpu id='x'><product_name>NVIDIA H200</product_name>"
                       "</gpu></nvidia_smi_log>", H200)
    assert judged.passed
    assert {r.key for r in judged.by_status(Status.NOT_MEASURED)} >= {
        "ecc-mode", "clock-events", "pcie-gen", "pcie-width", "remapped-rows", "xid"}


def test_profile_runs_the_xml_report() -> None:
    assert PROFILE.name == "gpu-health"
    assert PROFILE.command == ["/bin/sh", "-c", gpu_health.SHELL]
    assert "nvidia-smi -q -x" in gpu_health.SHELL
    job = PROFILE.job_manifest("gc-health", "gc-ns", gpus=8)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    host_script = (REPO_ROOT / "scripts" / "gpu_host_profiles.sh").read_text()
    assert gpu_health.SHELL in host_script
