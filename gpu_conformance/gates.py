"""Health and performance limits per Azure VM size, each with its source, and user overrides.

One table, ``GATES``, keyed by the lower-cased VM size of ``gpu_conformance.gpus.VM_SIZES``.
Every figure comes from Azure's own node health checks, Azure/azurehpc-health-checks
("aznhc", commit 0e0a1ac, 2026-05-01): the per-size ``conf/<size>.conf`` line that sets it is
quoted as its source. A size aznhc has no conf for (T4, A10 vGPU, K80) has no gates: its
figures are reported as "not gated", never passed silently.

The rules that hold for every GPU whatever its size (a pending row remap, a recovery action,
HW slowdown, a PCIe link below its maximum under load) are in ``RULES``, each with the NVIDIA
or aznhc text that makes it a fault.

``resolve(vm_size, overrides)`` gives the gates a run is judged against; overrides are
``name=value`` strings (``h2d=40``, ``nccl-busbw=400``, ``p2p=off``), see ``OVERRIDES``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gpu_conformance import gpus
from gpu_conformance.errors import UsageError

AZNHC = "Azure/azurehpc-health-checks@0e0a1ac"
NO_VM_SIZE = "no VM size"
GIB = 1024**3
#: aznhc warns (does not fail) when a copy bandwidth is under 1.05 x its limit
#: (customTests/azure_gpu_bandwidth.nhc: ``WARN_BW=$(echo "$EXP_BW * 1.05" | bc -l)``)
BANDWIDTH_WARN_FACTOR = 1.05
BANDWIDTH_WARN_SOURCE = (f"{AZNHC} customTests/azure_gpu_bandwidth.nhc: "
                         "'WARN_BW=$(echo \"$EXP_BW * 1.05\" | bc -l)'")


_SIZE = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>[KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``16G`` / ``8G`` / ``1048576`` (binary units, as nccl-tests reads -b/-e)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"not a size: {text!r} (use bytes or K/M/G/T, e.g. 16G)")
    power = "KMGT".find(match.group("unit").upper()) + 1 if match.group("unit") else 0
    return int(float(match.group("num")) * 1024**power)


class Status(enum.StrEnum):
    """The verdict on one figure."""

    PASS = "pass"
    FAIL = "fail"
    #: passed, but worth a look (near a limit, a setting that is not a fault)
    WARN = "warn"
    #: measured, but no source gives a limit for this VM size
    NOT_GATED = "not gated"
    #: the figure could not be measured here (N/A, one GPU for all_reduce, hidden from pods)
    NOT_MEASURED = "not measured"
    #: measured, but not judgeable in this state (a PCIe link at idle)
    NOT_JUDGED = "not judged"


@dataclass(frozen=True)
class GateResult:
    """One judged figure: what was measured, against which limit, from which source."""

    #: a stable name for the check (``h2d``, ``nccl-busbw``, ``remapped-rows-pending``, ...)
    key: str
    #: what was measured, as a phrase ("host->device copy bandwidth")
    title: str
    #: whose figure: "GPU 0 (NVIDIA H200)", "GPU 0 -> GPU 1", "8 ranks"
    subject: str
    status: Status
    measured: str
    limit: str = ""
    source: str = ""
    detail: str = ""

    @property
    def message(self) -> str:
        """One sentence: subject, figure, verdict, limit, why, source."""
        text = f"{self.subject}: {self.title}"
        measured = f": {self.measured}" if self.measured else ""
        if self.status is Status.FAIL:
            text += measured + (f"; expected {self.limit}" if self.limit else "; a fault")
        elif self.status is Status.WARN:
            text += measured + (f"; close to the limit {self.limit}" if self.limit else "")
        elif self.status is Status.PASS:
            text += measured + (f" (expected {self.limit})" if self.limit else "")
        else:
            text += measured + f"; {self.status.value}"
        if self.detail:
            text += f" ({self.detail})"
        if self.source:
            text += f" [source: {self.source}]"
        return text

    def line(self) -> str:
        return f"[{self.status.value}] {self.message}"

    def short(self) -> str:
        """The line without its source, for listings that print each source once."""
        return f"[{self.status.value}] " + self.message.split(" [source: ")[0]


@dataclass
class Judgement:
    """All results of one profile's log against one VM size's gates."""

    vm_size: str | None
    results: list[GateResult] = field(default_factory=list)
    #: problems of the log itself (truncated, script failed) plus every failed result
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [r.line() for r in self.results]

    def by_status(self, status: Status) -> list[GateResult]:
        return [r for r in self.results if r.status is status]


def judgement(vm_size: str | None, parse_problems: Iterable[str],
              results: Sequence[GateResult]) -> Judgement:
    """Problems = the log's own problems, then every failed result's message (no repeats)."""
    problems: list[str] = []
    for text in [*parse_problems, *(r.message for r in results if r.status is Status.FAIL)]:
        if text not in problems:
            problems.append(text)
    return Judgement(vm_size, list(results), problems)


@dataclass(frozen=True)
class Limit:
    value: float
    source: str


@dataclass(frozen=True)
class NcclGate:
    """all_reduce bus bandwidth (nccl-tests' busbw, GB/s) for ``ranks`` ranks at ``message_bytes``.

    ``ranks`` 0 or ``message_bytes`` 0 (from an override) mean any rank count / the largest
    message measured."""

    busbw_gbps: float
    ranks: int
    message_bytes: int
    source: str


@dataclass(frozen=True)
class EccLimits:
    """aznhc's check_gpu_ecc: a counter above its maximum fails (None: that counter is not gated)."""

    source: str
    #: DRAM correctable and uncorrectable, volatile and aggregate
    dram_max: int | None = None
    #: SRAM correctable, volatile and aggregate
    sram_correctable_max: int | None = None
    #: SRAM uncorrectable (parity + SEC-DED), volatile and aggregate
    sram_uncorrectable_max: int | None = None
    #: rows remapped for uncorrectable errors
    remapped_uncorrectable_max: int | None = None
    #: retired pages (single + double bit): fail at or above this while a retirement is pending
    retired_pages_max: int | None = None


@dataclass(frozen=True)
class SizeGates:
    """Everything one VM size is judged against; None = not gated."""

    vm_size: str
    conf: str | None = None
    h2d: Limit | None = None
    d2h: Limit | None = None
    p2p: Limit | None = None
    nccl: NcclGate | None = None
    ecc: EccLimits | None = None
    #: aznhc's check_nvlink_status: every NVLink of every GPU active (its conf line)
    nvlink: str | None = None
    overrides: tuple[str, ...] = ()

    @property
    def gated(self) -> bool:
        return any((self.h2d, self.d2h, self.p2p, self.nccl, self.ecc, self.nvlink))


def _conf_source(conf: str, line: str) -> str:
    return f"{AZNHC} conf/{conf}: '{line}'"


def _size(vm_size: str, conf: str, *, bw: str | None, ecc: str | None,
          nccl: str | None = None, ranks: int = 0, nvlink: bool = False) -> SizeGates:
    """A size's gates from the arguments of its aznhc conf lines, quoted as the source:
    ``check_gpu_bw <bw>``, ``check_gpu_ecc <ecc>``, ``check_nccl_allreduce <nccl>`` (run with
    ``ranks`` ranks, one per GPU of the size) and ``check_nvlink_status``."""
    h2d = d2h = p2p = None
    if bw is not None:
        figures = [float(f) for f in bw.split()]
        source = (_conf_source(conf, f"check_gpu_bw {bw}") + "; nvbandwidth "
                  "host_to_device_memcpy_ce / device_to_host_memcpy_ce"
                  + (" / device_to_device_memcpy_read_ce" if len(figures) > 1 else "")
                  + " -i 10, 512 MiB buffers (customTests/azure_gpu_bandwidth.nhc)")
        h2d = d2h = Limit(figures[0], source)
        if len(figures) > 1:
            p2p = Limit(figures[1], source)
    limits = None
    if ecc == "":
        limits = EccLimits(
            source=(_conf_source(conf, "check_gpu_ecc") + "; customTests/azure_gpu_ecc.nhc "
                    "check_SDBE_ecc (V100): 'if [ \"$total\" -ge 62 ] && [ \"$pending\" == "
                    "\"Yes\" ]' (Retirement Table Full, NHC2018)"),
            retired_pages_max=62)
    elif ecc is not None:
        dram, sram = (int(f) for f in ecc.split())
        limits = EccLimits(
            source=(_conf_source(conf, f"check_gpu_ecc {ecc}") + "; customTests/azure_gpu_ecc.nhc "
                    "check_ecc: DRAM counters above the first figure, SRAM correctable above the "
                    "second, any SRAM uncorrectable (NHC2019), remapped uncorrectable rows above "
                    "512 (NHC2007)"),
            dram_max=dram, sram_correctable_max=sram, sram_uncorrectable_max=0,
            remapped_uncorrectable_max=512)
    nccl_gate = None
    if nccl is not None:
        busbw, _repeats, size, *_topo = nccl.split()
        nccl_gate = NcclGate(
            float(busbw), ranks, parse_size(size),
            _conf_source(conf, f"check_nccl_allreduce {nccl}")
            + f"; customTests/azure_nccl_allreduce.nhc: all_reduce_perf -b {size} -e {size} -f 2 "
              f"-g 1 -c 1 with one rank per GPU ({ranks}); '# Avg bus bandwidth' >= {busbw} GB/s")
    return SizeGates(vm_size, conf, h2d, d2h, p2p, nccl_gate, limits,
                     _conf_source(conf, "check_nvlink_status") if nvlink else None)


_ECC = "20000000 10000"
_NDV4 = "$AZ_NHC_ROOT/topofiles/ndv4-topo.xml"
_NDV5 = "$AZ_NHC_ROOT/topofiles/ndv5-topo.xml"
GATES: dict[str, SizeGates] = {
    g.vm_size.lower(): g
    for g in [
        # V100: 'check_gpu_ecc' without figures runs the retired-pages check
        *(_size(size, conf, bw="10", ecc="")
          for size, conf in (("Standard_NC6s_v3", "nc6s_v3.conf"),
                             ("Standard_NC12s_v3", "nc12s_v3.conf"),
                             ("Standard_NC24s_v3", "nc24s_v3.conf"),
                             ("Standard_NC24rs_v3", "nc24rs_v3.conf"))),
        _size("Standard_NC24ads_A100_v4", "nc24ads_a100_v4.conf", bw="21 238", ecc=_ECC),
        _size("Standard_NC48ads_A100_v4", "nc48ads_a100_v4.conf", bw="21 238", ecc=_ECC,
              nccl="193.0 1 16G", ranks=2, nvlink=True),
        _size("Standard_NC96ads_A100_v4", "nc96ads_a100_v4.conf", bw="21 238", ecc=_ECC,
              nccl="25 1 8G $AZ_NHC_ROOT/topofiles/ncv4-topo.xml", ranks=4, nvlink=True),
        _size("Standard_ND96asr_v4", "nd96asr_v4.conf", bw="21 235", ecc=_ECC,
              nccl=f"228.0 1 8G {_NDV4}", ranks=8, nvlink=True),
        _size("Standard_ND96amsr_A100_v4", "nd96amsr_a100_v4.conf", bw="21 238", ecc=_ECC,
              nccl=f"228.0 1 16G {_NDV4}", ranks=8, nvlink=True),
        _size("Standard_NC40ads_H100_v5", "nc40ads_h100_v5.conf", bw="48 335", ecc=_ECC,
              nvlink=True),
        _size("Standard_NC80adis_H100_v5", "nc80adis_h100_v5.conf", bw="48 335", ecc=_ECC,
              nccl="208.0 1 16G", ranks=2, nvlink=True),
        _size("Standard_ND96isr_H100_v5", "nd96isr_h100_v5.conf", bw="48 335", ecc=_ECC,
              nccl=f"460.0 1 16G {_NDV5}", ranks=8, nvlink=True),
        _size("Standard_ND96isr_H200_v5", "nd96isr_h200_v5.conf", bw="48 335", ecc=_ECC,
              nccl=f"431.0 1 16G {_NDV5}", ranks=8, nvlink=True),
    ]
}


@dataclass(frozen=True)
class Rule:
    """A fault (or warning) that holds for every GPU, and the text that makes it one."""

    what: str
    status: Status
    source: str


_SMI_HELP = "nvidia-smi --help-query-gpu (driver 590.48.01)"
_SMI_MAN = "nvidia-smi(1), GPU ATTRIBUTES"
#: keyed by the check names the profiles report
RULES: dict[str, Rule] = {
    "remapped-rows-pending": Rule(
        "a row remapping is pending: the GPU must be reset to complete it", Status.FAIL,
        f"{_SMI_HELP}: 'When a pending row remapping happens, GPU reset is required to complete "
        f"row remapping.'; {AZNHC} customTests/azure_gpu_ecc.nhc: 'Row remap pending. "
        "FaultCode: NHC2007'"),
    "remapped-rows-failure": Rule(
        "a row remapping failed in the GPU's lifetime", Status.FAIL,
        f"{_SMI_HELP}: 'remapped_rows.failure: Checks if any row remapping failure happens in the "
        f"GPU lifespan.'; {AZNHC} customTests/azure_gpu_ecc.nhc: 'Row remap error. "
        "FaultCode: NHC2007'"),
    "recovery-action": Rule(
        "the driver recommends a recovery action", Status.FAIL,
        f"{_SMI_HELP}: 'gpu_recovery_action: Reports the GPU Recovery action recommended to "
        "recover from a bad state' (None, Reset, Reboot, Drain P2P, Drain and Reset)"),
    "reset-status": Rule(
        "the driver asks for a GPU reset", Status.FAIL,
        f"{_SMI_MAN}: GPU Reset Status (reset_required, drain_and_reset_recommended; nvsmi "
        "DTD v12, drivers 535-555)"),
    "repair-pending": Rule(
        "a memory repair is pending or memory is unrepairable", Status.FAIL,
        f"{_SMI_MAN}: 'If one of the repair flags is pending, check the GPU Recovery action and "
        "take the appropriate steps.' (Channel Repair Pending, TPC Repair Pending, Unrepairable "
        "Memory)"),
    "sram-threshold": Rule(
        "the SRAM uncorrectable error threshold is exceeded", Status.FAIL,
        f"{_SMI_HELP}: 'ecc.errors.uncorrected.aggregate.sram.thresholdExceeded: Unique "
        "aggregate error threshold exceeded flag in SRAM'"),
    "clock-events": Rule(
        "clocks are slowed by a hardware or thermal fault", Status.FAIL,
        f"{_SMI_HELP}: 'HW Slowdown (reducing the core clocks by a factor of 2 or more) is "
        "engaged. This is an indicator of: HW Thermal Slowdown: temperature being too high; HW "
        "Power Brake Slowdown: External Power Brake Assertion ...; Power draw is too high and "
        "Fast Trigger protection is reducing the clocks; May be also reported during PState or "
        "clock change'; 'SW Thermal capping algorithm is reducing clocks below requested clocks "
        "because GPU temperature is higher than Max Operating Temp.'"),
    "pcie-link": Rule(
        "the PCIe link runs below its maximum generation or width under load", Status.FAIL,
        f"{_SMI_HELP}: 'pcie.link.gen.current: The current PCI-E link generation. These may be "
        "reduced when the GPU is not in use.' and the same for pcie.link.width.current; "
        "'pcie.link.gen.max: The maximum PCI-E link generation possible with this GPU and system "
        "configuration'"),
    "retired-pages-pending": Rule(
        "pages are pending retirement", Status.WARN,
        f"{_SMI_HELP}: 'retired_pages.pending: Checks if any GPU device memory pages are pending "
        "retirement on the next reboot. Pages that are pending retirement can still be allocated, "
        "and may cause further reliability issues.'"),
    "ecc-mode": Rule(
        "ECC is disabled: memory errors are neither corrected nor counted", Status.WARN,
        f"{_SMI_MAN}: ECC Mode (no Azure or NVIDIA source fails a GPU for it)"),
    "persistence-mode": Rule(
        "persistence mode is disabled: the driver unloads between clients", Status.WARN,
        f"{_SMI_HELP}: 'persistence_mode: When persistence mode is enabled the NVIDIA driver "
        "remains loaded even when no active clients ... exist. This minimizes the driver load "
        "latency'"),
    "nvlink": Rule(
        "an NVLink is inactive", Status.FAIL,
        f"{AZNHC} customTests/azure_gpu_nvlink.nhc: 'GPU $gpu_id has nvlinks inactive ... "
        "FaultCode: NHC2016'"),
    "xid": Rule(
        "XID events are not visible from a pod", Status.NOT_MEASURED,
        "the kernel log needs CAP_SYSLOG; nvidia-smi keeps no XID history; NVIDIA/k8s-device-"
        "plugin v0.18.0 internal/rm/health.go marks a device unhealthy on every critical XID "
        "except 13, 31, 43, 45, 68, 109 (its allocatable drops below its capacity)"),
}

#: clock event reasons that are faults, and those that are settings or normal operation
FAULT_CLOCK_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown",
                       "sw_thermal_slowdown")
BENIGN_CLOCK_REASONS = ("gpu_idle", "applications_clocks_setting", "sw_power_cap", "sync_boost",
                        "display_clocks_setting")


# --- overrides ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Override:
    name: str
    unit: str
    help: str


#: user overrides: ``name=value`` (a number, a size for nccl-bytes, or ``off`` for not gated)
OVERRIDES: dict[str, Override] = {o.name: o for o in (
    Override("h2d", "GB/s", "host->device copy bandwidth per GPU, minimum"),
    Override("d2h", "GB/s", "device->host copy bandwidth per GPU, minimum"),
    Override("p2p", "GB/s", "GPU->GPU peer copy bandwidth per pair, minimum"),
    Override("nccl-busbw", "GB/s", "all_reduce bus bandwidth at the gate's message size, minimum"),
    Override("nccl-bytes", "bytes", "the message size the NCCL gate applies to (1G, 16G, ...)"),
    Override("nccl-ranks", "ranks", "the rank count the NCCL gate applies to (0: any)"),
    Override("dram-ecc", "errors", "DRAM ECC counters (corr. and uncorr.), maximum"),
    Override("sram-correctable", "errors", "SRAM correctable ECC counters, maximum"),
    Override("sram-uncorrectable", "errors", "SRAM uncorrectable ECC counters, maximum"),
    Override("remapped-uncorrectable", "rows", "rows remapped for uncorrectable errors, maximum"),
    Override("retired-pages", "pages", "retired pages while a retirement is pending, maximum"),
)}

def parse_overrides(items: Iterable[str]) -> dict[str, float | None]:
    """``["h2d=40", "p2p=off"]`` -> ``{"h2d": 40.0, "p2p": None}``; bad input is a UsageError."""
    parsed: dict[str, float | None] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or name not in OVERRIDES or not value:
            raise UsageError(f"bad gate override {item!r}: use NAME=VALUE with NAME one of "
                             f"{', '.join(OVERRIDES)} and VALUE a number or 'off'")
        if value.lower() == "off":
            parsed[name] = None
            continue
        try:
            number = float(parse_size(value)) if name == "nccl-bytes" else float(value)
        except ValueError:
            raise UsageError(f"bad gate override {item!r}: {value!r} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise UsageError(f"bad gate override {item!r}: the value must be a number >= 0")
        parsed[name] = number
    return parsed


def resolve(vm_size: str | None, overrides: Iterable[str] = ()) -> SizeGates:
    """The gates of ``vm_size`` (none for an unknown size) with ``overrides`` applied."""
    items = tuple(overrides)
    base = GATES.get(vm_size.lower()) if vm_size else None
    gates = base or SizeGates(vm_size or NO_VM_SIZE)
    values = parse_overrides(items)
    if not values:
        return gates
    text = {name: next(i for i in reversed(items) if i.strip().lower().startswith(name + "="))
            for name in values}

    def source(name: str) -> str:
        return f"override {text[name].strip()!r}"

    def limit(name: str, current: Limit | None) -> Limit | None:
        if name not in values:
            return current
        value = values[name]
        return None if value is None else Limit(value, source(name))

    nccl = gates.nccl
    if "nccl-busbw" in values:
        busbw = values["nccl-busbw"]
        nccl = None if busbw is None else NcclGate(
            busbw, nccl.ranks if nccl else 0, nccl.message_bytes if nccl else 0,
            source("nccl-busbw") + (f" (in place of {nccl.busbw_gbps:g} GB/s)" if nccl else ""))
    for name, attr in (("nccl-bytes", "message_bytes"), ("nccl-ranks", "ranks")):
        if name in values and nccl is not None:
            update: dict[str, Any] = {attr: int(values[name] or 0),
                                      "source": f"{nccl.source}; {source(name)}"}
            nccl = replace(nccl, **update)
    ecc = gates.ecc
    for name, attr in (("dram-ecc", "dram_max"), ("sram-correctable", "sram_correctable_max"),
                       ("sram-uncorrectable", "sram_uncorrectable_max"),
                       ("remapped-uncorrectable", "remapped_uncorrectable_max"),
                       ("retired-pages", "retired_pages_max")):
        if name in values:
            value = values[name]
            changes: dict[str, Any] = {attr: None if value is None else int(value)}
            ecc = replace(ecc or EccLimits(source=""), **changes)
            ecc = replace(ecc, source=(f"{ecc.source}; " if ecc.source else "") + source(name))
    return replace(gates, h2d=limit("h2d", gates.h2d), d2h=limit("d2h", gates.d2h),
                   p2p=limit("p2p", gates.p2p), nccl=nccl, ecc=ecc, overrides=items)


def not_gated_reason(gates: SizeGates, what: str) -> str:
    """Why ``what`` has no limit here, for the 'not gated' line."""
    if gates.conf is None:
        if gates.vm_size == NO_VM_SIZE:
            return "no VM size known: only the rules that hold for every GPU apply"
        if gates.vm_size.lower() in gpus.VM_SIZES:
            return (f"no source gives a {what} limit for {gates.vm_size}: Azure/azurehpc-health-"
                    "checks has no conf for it")
        return f"{gates.vm_size} is not a VM size with known gates"
    return f"aznhc conf/{gates.conf} sets no {what} limit"


def gated_sizes() -> list[str]:
    """The VM sizes (as gpus.VM_SIZES spells them) that have at least one gate."""
    return [g.vm_size for g in GATES.values() if g.gated]


def table_rows(sizes: Mapping[str, SizeGates] = GATES) -> list[tuple[str, str, str, str, str]]:
    """(size, h2d/d2h, p2p, nccl, ecc) for the docs table."""
    rows = []
    for gates in sizes.values():
        h2d = f"{gates.h2d.value:g}" if gates.h2d else "-"
        p2p = f"{gates.p2p.value:g}" if gates.p2p else "-"
        nccl = (f"{gates.nccl.busbw_gbps:g} GB/s, {gates.nccl.ranks} ranks, "
                f"{gates.nccl.message_bytes // GIB} GiB" if gates.nccl else "-")
        if gates.ecc is None:
            ecc = "-"
        elif gates.ecc.retired_pages_max is not None:
            ecc = f"retired pages >= {gates.ecc.retired_pages_max} with one pending"
        else:
            ecc = (f"DRAM > {gates.ecc.dram_max}, SRAM corr. > {gates.ecc.sram_correctable_max}, "
                   f"SRAM uncorr. > {gates.ecc.sram_uncorrectable_max}, remapped uncorr. > "
                   f"{gates.ecc.remapped_uncorrectable_max}")
        rows.append((gates.vm_size, h2d, p2p, nccl, ecc))
    return rows
