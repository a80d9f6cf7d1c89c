"""``gpu-health``: ``nvidia-smi -q -x`` in a CUDA base image, judged GPU by GPU.

The container prints nvidia-smi's XML report (nvsmi_device_v11/v12/v13 DTD) and then
``gpu-health: nvidia-smi -q -x exit status N``. The parser reads it with xml.etree and never
raises: a log with no XML, a truncated document or a missing field gives problems or
"not measured" results, not exceptions.

Judged per GPU (limits and sources in gpu_conformance.gates):

- ECC mode (disabled: warning), ECC counters volatile and aggregate in both layouts (SRAM/DRAM
  correctable/uncorrectable since Turing; single_bit/double_bit before), against the VM size's
  aznhc limits ("not gated" for sizes without them);
- retired pages (pre-Ampere) and the row remapper (Ampere+): pending or failed remap fails on
  every size, the counts against the size's limits;
- the recovery action / reset status the driver asks for, pending repairs, the SRAM threshold;
- clock event reasons (``clocks_event_reasons``, or ``clocks_throttle_reasons`` before driver
  535): HW slowdown, HW thermal, HW power brake and SW thermal slowdown are faults; idle,
  applications clocks, SW power cap, sync boost and display clocks are settings or normal load;
- PCIe generation and width against their maximum, judged only when the report shows the GPU
  busy: NVIDIA documents that both "may be reduced when the GPU is not in use", and this
  snapshot is taken at idle; the bandwidth profile samples the link under load instead;
- persistence mode (disabled: warning); the NVLink fabric state where one exists (warning).

XID events are not in nvidia-smi's report and the kernel log is closed to an unprivileged pod:
every run says so as "not measured" (see gates.RULES["xid"]).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from gpu_conformance import gates
from gpu_conformance.gates import GateResult, Judgement, SizeGates, Status
from gpu_conformance.workloads._common import (
    CUDA_FAILURES,
    Failure,
    empty_log_problem,
    find_problems,
    reference_text,
)
from gpu_conformance.workloads.base import LogReport, WorkloadProfile

NAME = "gpu-health"
IMAGE = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
EXIT_LINE = "gpu-health: nvidia-smi -q -x exit status"
SHELL = f'nvidia-smi -q -x; rc=$?; echo "{EXIT_LINE} $rc"; exit $rc'
DERIVED_XML = "derived-h200-nvidia-smi-q-x.txt"
DERIVED_DEVICE = "NVIDIA H200"

_EXIT = re.compile(rf"^{re.escape(EXIT_LINE)} (?P<rc>-?\d+)\s*$", re.MULTILINE)
_XML_START = re.compile(r"<\?xml[^>]*\?>|<nvidia_smi_log[\s>]")
_XML_END = "</nvidia_smi_log>"
_INT = re.compile(r"^\s*(-?\d+)")
_FAILURES: tuple[Failure, ...] = (
    *CUDA_FAILURES,
    (re.compile(r"No devices were found"),
     "nvidia-smi found no GPU: the container was given none, or the driver sees none"),
    (re.compile(r"nvidia-smi: (?:command )?not found|executable file not found", re.IGNORECASE),
     "nvidia-smi is not in the container: the NVIDIA container runtime did not inject it"),
    (re.compile(r"Unable to determine the device handle for GPU.*", re.IGNORECASE),
     "nvidia-smi cannot reach a GPU (device handle error): the GPU may have fallen off the bus"),
)
_YES = "yes"


@dataclass
class GpuSnapshot:
    """One ``<gpu>`` element, flattened: ``{"ecc_errors/volatile/sram_correctable": "0", ...}``."""

    index: int
    bus_id: str
    fields: dict[str, str] = field(default_factory=dict)

    def get(self, path: str) -> str | None:
        value = self.fields.get(path)
        return value if value not in (None, "", "N/A", "[N/A]") else None

    def number(self, path: str) -> int | None:
        value = self.get(path)
        match = _INT.match(value) if value else None
        return int(match.group(1)) if match else None

    def flag(self, path: str) -> bool | None:
        value = self.get(path)
        return None if value is None else value.strip().lower() == _YES

    def has(self, prefix: str) -> bool:
        return any(k == prefix or k.startswith(prefix + "/") for k in self.fields)

    @property
    def name(self) -> str:
        return self.get("product_name") or "unknown GPU"

    @property
    def uuid(self) -> str:
        return self.get("uuid") or "no UUID"

    @property
    def subject(self) -> str:
        return f"GPU {self.index} ({self.name}, {self.bus_id})"


@dataclass
class Snapshot:
    gpus: list[GpuSnapshot] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    attached_gpus: int | None = None
    exit_status: int | None = None
    problems: list[str] = field(default_factory=list)


def _flatten(element: ET.Element, prefix: str, out: dict[str, str]) -> None:
    for child in element:
        path = f"{prefix}{child.tag}"
        if len(child):
            _flatten(child, path + "/", out)
        elif path not in out:
            out[path] = (child.text or "").strip()


def parse_snapshot(log: str) -> Snapshot:
    """The report's GPUs and whatever made it unreadable; never raises."""
    snap = Snapshot(problems=empty_log_problem(log))
    exit_line = _EXIT.search(log)
    if exit_line:
        snap.exit_status = int(exit_line.group("rc"))
    start = _XML_START.search(log)
    if start is None:
        if log.strip():
            snap.problems.append("no nvidia-smi XML report in the log")
        snap.problems += find_problems(log, _FAILURES)
        _exit_problem(snap)
        return snap
    end = log.find(_XML_END, start.start())
    if end < 0:
        snap.problems.append("the nvidia-smi XML report ends before </nvidia_smi_log>: the log is "
                             "truncated or nvidia-smi was killed")
        snap.problems += find_problems(log, _FAILURES)
        return snap
    try:
        root = ET.fromstring(log[start.start():end + len(_XML_END)])
    except (ET.ParseError, ValueError) as exc:
        snap.problems.append(f"the nvidia-smi XML report does not parse: {exc}")
        return snap
    snap.driver_version = (root.findtext("driver_version") or "").strip() or None
    snap.cuda_version = (root.findtext("cuda_version") or "").strip() or None
    attached = _INT.match(root.findtext("attached_gpus") or "")
    snap.attached_gpus = int(attached.group(1)) if attached else None
    for index, element in enumerate(root.findall("gpu")):
        gpu = GpuSnapshot(index, element.get("id") or "no bus id")
        _flatten(element, "", gpu.fields)
        snap.gpus.append(gpu)
    if not snap.gpus:
        snap.problems.append("the nvidia-smi XML report lists no GPU")
    elif snap.attached_gpus is not None and snap.attached_gpus != len(snap.gpus):
        snap.problems.append(f"nvidia-smi reports attached_gpus {snap.attached_gpus} but "
                             f"describes {len(snap.gpus)} GPU(s)")
    _exit_problem(snap)
    return snap


def _exit_problem(snap: Snapshot) -> None:
    if snap.exit_status not in (None, 0):
        snap.problems.append(f"nvidia-smi -q -x exited with status {snap.exit_status}")


# --- judging ------------------------------------------------------------------------------

def _result(key: str, title: str, gpu: GpuSnapshot | str, status: Status, measured: str,
            limit: str = "", source: str = "", detail: str = "") -> GateResult:
    subject = gpu if isinstance(gpu, str) else gpu.subject
    return GateResult(key, title, subject, status, measured, limit, source, detail)


def _rule(key: str) -> gates.Rule:
    return gates.RULES[key]


def _counts(values: dict[str, int | None]) -> str:
    return ", ".join(f"{k} {'N/A' if v is None else v}" for k, v in values.items())


def _limit_check(key: str, title: str, gpu: GpuSnapshot, values: dict[str, int | None],
                 maximum: int | None, limits: gates.EccLimits | None,
                 size: SizeGates) -> GateResult:
    measured = _counts(values)
    known = [v for v in values.values() if v is not None]
    if not known:
        return _result(key, title, gpu, Status.NOT_MEASURED, measured, detail="reported as N/A")
    if maximum is None or limits is None:
        return _result(key, title, gpu, Status.NOT_GATED, measured,
                       detail=gates.not_gated_reason(size, title))
    status = Status.FAIL if max(known) > maximum else Status.PASS
    return _result(key, title, gpu, status, measured, f"<= {maximum}", limits.source)


def _ecc(gpu: GpuSnapshot, size: SizeGates) -> list[GateResult]:
    results: list[GateResult] = []
    mode, pending = gpu.get("ecc_mode/current_ecc"), gpu.get("ecc_mode/pending_ecc")
    if mode is None:
        results.append(_result("ecc-mode", "ECC mode", gpu, Status.NOT_MEASURED, "N/A"))
    elif mode.lower() != "enabled":
        results.append(_result("ecc-mode", "ECC mode", gpu, Status.WARN, mode,
                               source=_rule("ecc-mode").source, detail=_rule("ecc-mode").what))
    else:
        detail = f"becomes {pending} at the next reboot" if pending and pending != mode else ""
        status = Status.WARN if detail else Status.PASS
        results.append(_result("ecc-mode", "ECC mode", gpu, status, mode, detail=detail))
    limits = size.ecc
    if gpu.has("ecc_errors/volatile/single_bit") or gpu.has("ecc_errors/volatile/double_bit"):
        # before Turing: counts by location; aznhc judges V100 by retired pages only
        values = {f"{scope} {kind}": gpu.number(f"ecc_errors/{scope}/{kind}/total")
                  for scope in ("volatile", "aggregate") for kind in ("single_bit", "double_bit")}
        results.append(_limit_check("ecc-single-double-bit", "ECC errors (single/double bit)",
                                    gpu, values, None, None, size))
        return results
    sram_unc: dict[str, int | None] = {}
    for scope in ("volatile", "aggregate"):
        parts = [gpu.number(f"ecc_errors/{scope}/sram_uncorrectable_parity"),
                 gpu.number(f"ecc_errors/{scope}/sram_uncorrectable_secded")]
        known = [p for p in parts if p is not None]
        sram_unc[scope] = sum(known) if known else gpu.number(
            f"ecc_errors/{scope}/sram_uncorrectable")
    results.append(_limit_check(
        "ecc-sram-uncorrectable", "SRAM uncorrectable ECC errors", gpu, sram_unc,
        limits.sram_uncorrectable_max if limits else None, limits, size))
    results.append(_limit_check(
        "ecc-sram-correctable", "SRAM correctable ECC errors", gpu,
        {s: gpu.number(f"ecc_errors/{s}/sram_correctable") for s in ("volatile", "aggregate")},
        limits.sram_correctable_max if limits else None, limits, size))
    results.append(_limit_check(
        "ecc-dram", "DRAM ECC errors", gpu,
        {f"{s} {k}": gpu.number(f"ecc_errors/{s}/dram_{k}")
         for s in ("volatile", "aggregate") for k in ("correctable", "uncorrectable")},
        limits.dram_max if limits else None, limits, size))
    if gpu.flag("ecc_errors/aggregate/sram_threshold_exceeded"):
        rule = _rule("sram-threshold")
        results.append(_result("sram-threshold", "SRAM error threshold exceeded", gpu,
                               Status.FAIL, "Yes", "No", rule.source, rule.what))
    repairs = {name: gpu.flag(f"ecc_errors/{name}") for name in
               ("channel_repair_pending", "tpc_repair_pending", "unrepairable_memory")}
    if any(repairs.values()):
        rule = _rule("repair-pending")
        flagged = ", ".join(k for k, v in repairs.items() if v)
        results.append(_result("repair-pending", "memory repair flags", gpu, Status.FAIL,
                               f"{flagged} = Yes", "No", rule.source, rule.what))
    return results


def _retired_pages(gpu: GpuSnapshot, size: SizeGates) -> list[GateResult]:
    single = gpu.number("retired_pages/multiple_single_bit_retirement/retired_count")
    double = gpu.number("retired_pages/double_bit_retirement/retired_count")
    pending = gpu.flag("retired_pages/pending_retirement") or gpu.flag(
        "retired_pages/pending_blacklist")
    if single is None and double is None and pending is None:
        return []
    total = (single or 0) + (double or 0)
    measured = (f"{total} (single bit {single}, double bit {double}), retirement pending "
                f"{'Yes' if pending else 'No'}")
    limits = size.ecc
    if limits is not None and limits.retired_pages_max is not None:
        failed = total >= limits.retired_pages_max and bool(pending)
        return [_result("retired-pages", "retired pages", gpu,
                        Status.FAIL if failed else Status.PASS, measured,
                        f"< {limits.retired_pages_max} while a retirement is pending",
                        limits.source)]
    if pending:
        rule = _rule("retired-pages-pending")
        return [_result("retired-pages", "retired pages", gpu, Status.WARN, measured,
                        source=rule.source, detail=rule.what)]
    return [_result("retired-pages", "retired pages", gpu, Status.NOT_GATED, measured,
                    detail=gates.not_gated_reason(size, "retired pages"))]


def _remapped_rows(gpu: GpuSnapshot, size: SizeGates) -> list[GateResult]:
    if not gpu.has("remapped_rows/remapped_row_pending"):
        if gpu.has("retired_pages/multiple_single_bit_retirement/retired_count") and (
                gpu.number("retired_pages/multiple_single_bit_retirement/retired_count")
                is not None):
            return []  # a pre-Ampere GPU: page retirement instead of row remapping
        mig = (gpu.get("mig_mode/current_mig") or "").lower() == "enabled"
        return [_result("remapped-rows", "row remapping", gpu, Status.NOT_MEASURED,
                        gpu.get("remapped_rows") or "N/A",
                        detail="not reported in MIG mode" if mig else "not reported")]
    results = []
    for key, path in (("remapped-rows-pending", "remapped_rows/remapped_row_pending"),
                      ("remapped-rows-failure", "remapped_rows/remapped_row_failure")):
        rule = _rule(key)
        flag = gpu.flag(path)
        title = "row remapping pending" if key.endswith("pending") else "row remapping failure"
        if flag is None:
            results.append(_result(key, title, gpu, Status.NOT_MEASURED, "N/A"))
        else:
            results.append(_result(key, title, gpu, Status.FAIL if flag else Status.PASS,
                                   "Yes" if flag else "No", "No", rule.source,
                                   rule.what if flag else ""))
    limits = size.ecc
    results.append(_limit_check(
        "remapped-rows-uncorrectable", "rows remapped for uncorrectable errors", gpu,
        {"uncorrectable": gpu.number("remapped_rows/remapped_row_unc"),
         "correctable": gpu.number("remapped_rows/remapped_row_corr")}
        if limits is None or limits.remapped_uncorrectable_max is None else
        {"uncorrectable": gpu.number("remapped_rows/remapped_row_unc")},
        limits.remapped_uncorrectable_max if limits else None, limits, size))
    return results


def _recovery(gpu: GpuSnapshot) -> list[GateResult]:
    results = []
    action = gpu.get("gpu_recovery_action")
    if action is not None:
        rule = _rule("recovery-action")
        bad = action.lower() != "none"
        results.append(_result("recovery-action", "GPU recovery action", gpu,
                               Status.FAIL if bad else Status.PASS, action, "None", rule.source,
                               rule.what if bad else ""))
    for path, title in (("gpu_reset_status/reset_required", "reset required"),
                        ("gpu_reset_status/drain_and_reset_recommended",
                         "drain and reset recommended")):
        flag = gpu.flag(path)
        if flag:
            rule = _rule("reset-status")
            results.append(_result("reset-status", title, gpu, Status.FAIL, "Yes", "No",
                                   rule.source, rule.what))
    return results


def clock_reasons(gpu: GpuSnapshot) -> dict[str, bool] | None:
    """Reason -> active, from ``clocks_event_reasons`` (driver >= 535) or
    ``clocks_throttle_reasons`` (older); None when the report has neither."""
    for section, prefix in (("clocks_event_reasons", "clocks_event_reason_"),
                            ("clocks_throttle_reasons", "clocks_throttle_reason_")):
        found = {path.split("/", 1)[1].removeprefix(prefix): value.strip().lower() == "active"
                 for path, value in gpu.fields.items() if path.startswith(section + "/")}
        if found:
            return found
    return None


def _clocks(gpu: GpuSnapshot) -> GateResult:
    reasons = clock_reasons(gpu)
    if reasons is None:
        return _result("clock-events", "clock event reasons", gpu, Status.NOT_MEASURED,
                       "not in the report")
    active = [r for r, on in reasons.items() if on]
    faults = [r for r in active if r in gates.FAULT_CLOCK_REASONS]
    measured = "active: " + (", ".join(active) if active else "none")
    rule = _rule("clock-events")
    if faults:
        return _result("clock-events", "clock event reasons", gpu, Status.FAIL, measured,
                       "none of " + ", ".join(gates.FAULT_CLOCK_REASONS), rule.source,
                       f"{', '.join(faults)}: {rule.what}; HW Slowdown can also show during a "
                       "P-state change, so a fault seen once is worth a second run")
    unknown = [r for r in active if r not in gates.BENIGN_CLOCK_REASONS]
    if unknown:
        return _result("clock-events", "clock event reasons", gpu, Status.WARN, measured,
                       detail=f"reasons this project does not classify: {', '.join(unknown)}")
    return _result("clock-events", "clock event reasons", gpu, Status.PASS, measured,
                   detail="idle, application clocks, SW power cap, sync boost and display clocks "
                          "are settings or normal operation")


def gpu_busy(gpu: GpuSnapshot) -> bool | None:
    """True when the report shows work on the GPU (not idle, utilisation above 0)."""
    reasons = clock_reasons(gpu)
    util = gpu.number("utilization/gpu_util")
    if reasons is not None and "gpu_idle" in reasons:
        return not reasons["gpu_idle"] and (util is None or util > 0)
    return None if util is None else util > 0


def _pcie(gpu: GpuSnapshot) -> list[GateResult]:
    base = "pci/pci_gpu_link_info/"
    gen, gen_max = gpu.number(base + "pcie_gen/current_link_gen"), gpu.number(
        base + "pcie_gen/max_link_gen")
    width, width_max = gpu.number(base + "link_widths/current_link_width"), gpu.number(
        base + "link_widths/max_link_width")
    rule = _rule("pcie-link")
    busy = gpu_busy(gpu)
    results = []
    for key, title, now, top, unit in (("pcie-gen", "PCIe link generation", gen, gen_max, "Gen "),
                                       ("pcie-width", "PCIe link width", width, width_max, "x")):
        if now is None or top is None:
            results.append(_result(key, title, gpu, Status.NOT_MEASURED,
                                   f"{unit}{now} of max {unit}{top}"))
            continue
        measured = f"{unit}{now} of max {unit}{top}"
        if now >= top:
            results.append(_result(key, title, gpu, Status.PASS, measured, f"{unit}{top}"))
        elif busy:
            results.append(_result(key, title, gpu, Status.FAIL, measured, f"{unit}{top}",
                                   rule.source, rule.what))
        else:
            results.append(_result(
                key, title, gpu, Status.NOT_JUDGED, measured, source=rule.source,
                detail="the GPU is idle and NVIDIA documents that the link may be reduced when "
                       "the GPU is not in use; the bandwidth profile samples it under load"))
    return results


def _settings(gpu: GpuSnapshot) -> list[GateResult]:
    results = []
    persistence = gpu.get("persistence_mode")
    if persistence is not None:
        rule = _rule("persistence-mode")
        off = persistence.lower() != "enabled"
        results.append(_result("persistence-mode", "persistence mode", gpu,
                               Status.WARN if off else Status.PASS, persistence,
                               source=rule.source if off else "", detail=rule.what if off else ""))
    state, status = gpu.get("fabric/state"), gpu.get("fabric/status")
    if state is not None:
        ok = state.lower() == "completed" and (status or "").lower() == "success"
        results.append(_result("fabric", "NVLink fabric", gpu, Status.PASS if ok else Status.WARN,
                               f"state {state}, status {status}",
                               detail="" if ok else "the NVLink fabric (fabric manager) has not "
                                                    "completed: peer traffic may fail"))
    return results


def evaluate(snapshot: Snapshot, size: SizeGates | None) -> list[GateResult]:
    """Every check of every GPU; ``size`` None judges only the rules that hold for every size."""
    size = size or gates.SizeGates(gates.NO_VM_SIZE)
    results: list[GateResult] = []
    for gpu in snapshot.gpus:
        results += _recovery(gpu)
        results += _ecc(gpu, size)
        results += _retired_pages(gpu, size)
        results += _remapped_rows(gpu, size)
        results.append(_clocks(gpu))
        results += _pcie(gpu)
        results += _settings(gpu)
    if snapshot.gpus:
        rule = _rule("xid")
        results.append(GateResult("xid", "XID events", f"{len(snapshot.gpus)} GPU(s)",
                                  Status.NOT_MEASURED, "", source=rule.source,
                                  detail=rule.what))
    return results


def parse(log: str) -> LogReport:
    """Devices, driver facts, and every fault that needs no VM size (gates.RULES)."""
    snap = parse_snapshot(log)
    report = LogReport(problems=list(snap.problems))
    for gpu in snap.gpus:
        report.devices.append(gpu.name)
        report.device_lines.append(f"GPU {gpu.index}: {gpu.name} (UUID: {gpu.uuid}, "
                                   f"{gpu.bus_id})")
    if snap.driver_version:
        report.properties["driver_version"] = snap.driver_version
    if snap.cuda_version:
        report.properties["cuda_version"] = snap.cuda_version
    if snap.gpus:
        report.properties["gpu_count"] = str(len(snap.gpus))
        for key, path in (("ecc_mode", "ecc_mode/current_ecc"),
                          ("persistence_mode", "persistence_mode"),
                          ("mig_mode", "mig_mode/current_mig"),
                          ("pcie_replays", "pci/replay_counter")):
            report.properties[key] = ",".join(g.get(path) or "N/A" for g in snap.gpus)
        report.properties["pcie_link"] = ",".join(
            f"gen{g.get('pci/pci_gpu_link_info/pcie_gen/current_link_gen') or '?'}/"
            f"{g.get('pci/pci_gpu_link_info/pcie_gen/max_link_gen') or '?'}"
            f"x{g.number('pci/pci_gpu_link_info/link_widths/current_link_width') or '?'}/"
            f"{g.number('pci/pci_gpu_link_info/link_widths/max_link_width') or '?'}"
            for g in snap.gpus)
    for result in evaluate(snap, None):
        if result.status is Status.FAIL and result.message not in report.problems:
            report.problems.append(result.message)
    report.success = bool(snap.gpus) and not report.problems
    return report


def judge_log(log: str, vm_size: str | None, overrides: Sequence[str] = ()) -> Judgement:
    """Every result against the gates of ``vm_size`` (with ``overrides``)."""
    snap = parse_snapshot(log)
    size = gates.resolve(vm_size, overrides)
    return gates.judgement(vm_size, snap.problems, evaluate(snap, size))


# --- reference logs -----------------------------------------------------------------------

def _with_exit(xml: str, rc: int = 0) -> str:
    return xml + f"{EXIT_LINE} {rc}\n"


def reference_log(device_name: str) -> str:
    """The H200 report derived from public captures (see tests/data/captures/README-health.md),
    naming ``device_name``."""
    xml = reference_text(DERIVED_XML)
    return _with_exit(xml.replace(f"<product_name>{DERIVED_DEVICE}</product_name>",
                                  f"<product_name>{device_name}</product_name>"))


#: what each broken variant changes in the healthy report (element text replacements)
BROKEN: dict[str, list[tuple[str, str]]] = {
    "ecc-errors": [
        ("<sram_uncorrectable_secded>0</sram_uncorrectable_secded>",
         "<sram_uncorrectable_secded>2</sram_uncorrectable_secded>"),
        ("<dram_uncorrectable>0</dram_uncorrectable>",
         "<dram_uncorrectable>25000000</dram_uncorrectable>"),
        ("<remapped_row_unc>0</remapped_row_unc>", "<remapped_row_unc>513</remapped_row_unc>"),
        ("<remapped_row_pending>No</remapped_row_pending>",
         "<remapped_row_pending>Yes</remapped_row_pending>"),
    ],
    "hw-slowdown": [
        ("<clocks_event_reason_gpu_idle>Active</clocks_event_reason_gpu_idle>",
         "<clocks_event_reason_gpu_idle>Not Active</clocks_event_reason_gpu_idle>"),
        ("<clocks_event_reason_hw_slowdown>Not Active</clocks_event_reason_hw_slowdown>",
         "<clocks_event_reason_hw_slowdown>Active</clocks_event_reason_hw_slowdown>"),
        ("<clocks_event_reason_hw_thermal_slowdown>Not Active</clocks_event_reason_hw_thermal_"
         "slowdown>",
         "<clocks_event_reason_hw_thermal_slowdown>Active</clocks_event_reason_hw_thermal_"
         "slowdown>"),
        ("<gpu_util>0 %</gpu_util>", "<gpu_util>100 %</gpu_util>"),
        ("<gpu_temp>28 C</gpu_temp>", "<gpu_temp>92 C</gpu_temp>"),
    ],
}


def broken_reference_log(kind: str, device_name: str) -> str:
    """A reference report with one fault: ``ecc-errors`` (SRAM/DRAM uncorrectable counts, 513
    remapped rows, a pending remap) or ``hw-slowdown`` (HW and thermal slowdown under load)."""
    log = reference_log(device_name)
    for old, new in BROKEN[kind]:
        log = log.replace(old, new)
    return log


PROFILE = WorkloadProfile(
    name=NAME,
    description="nvidia-smi -q -x judged per GPU: ECC, row remapping, recovery action, clock "
                "events, PCIe link, persistence",
    image=IMAGE,
    command=["/bin/sh", "-c", SHELL],
    parse=parse,
    reference_log=reference_log,
    # nvidia-smi needs only the driver (as in the nvidia-smi profile)
    env=[{"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"}],
    judge=judge_log,
)
