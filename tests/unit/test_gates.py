"""The gates table: every figure from aznhc's confs with its source quoted, and overrides."""

from __future__ import annotations

import pytest

from gpu_conformance import gates, gpus
from gpu_conformance.errors import UsageError
from gpu_conformance.gates import GateResult, Status
from gpu_conformance.paths import REPO_ROOT

GIB = 1024**3

#: (VM size, h2d/d2h, p2p, NCCL busbw, ranks, message GiB) as the aznhc confs say
#: (Azure/azurehpc-health-checks@0e0a1ac conf/<size>.conf)
EXPECTED = [
    ("Standard_NC6s_v3", 10, None, None, None, None),
    ("Standard_NC12s_v3", 10, None, None, None, None),
    ("Standard_NC24s_v3", 10, None, None, None, None),
    ("Standard_NC24rs_v3", 10, None, None, None, None),
    ("Standard_NC24ads_A100_v4", 21, 238, None, None, None),
    ("Standard_NC48ads_A100_v4", 21, 238, 193.0, 2, 16),
    ("Standard_NC96ads_A100_v4", 21, 238, 25.0, 4, 8),
    ("Standard_ND96asr_v4", 21, 235, 228.0, 8, 8),
    ("Standard_ND96amsr_A100_v4", 21, 238, 228.0, 8, 16),
    ("Standard_NC40ads_H100_v5", 48, 335, None, None, None),
    ("Standard_NC80adis_H100_v5", 48, 335, 208.0, 2, 16),
    ("Standard_ND96isr_H100_v5", 48, 335, 460.0, 8, 16),
    ("Standard_ND96isr_H200_v5", 48, 335, 431.0, 8, 16),
]


def test_every_gated_size_is_a_known_vm_size() -> None:
    assert set(gates.GATES) <= set(gpus.VM_SIZES)
    assert sorted(gates.gated_sizes()) == sorted(e[0] for e in EXPECTED)


@pytest.mark.parametrize(("size", "h2d", "p2p", "busbw", "ranks", "gib"), EXPECTED)
def test_figures_match_the_aznhc_confs(size: str, h2d: float, p2p: float | None,
                                       busbw: float | None, ranks: int | None,
                                       gib: int | None) -> None:
    gate = gates.GATES[size.lower()]
    assert gate.h2d is not None and gate.d2h is not None
    assert gate.h2d.value == gate.d2h.value == h2d
    assert f"check_gpu_bw {h2d:g}" in gate.h2d.source
    assert (gate.p2p.value if gate.p2p else None) == p2p
    if busbw is None:
        assert gate.nccl is None
    else:
        assert gate.nccl is not None
        assert (gate.nccl.busbw_gbps, gate.nccl.ranks, gate.nccl.message_bytes) == (
            busbw, ranks, (gib or 0) * GIB)
        assert f"check_nccl_allreduce {gate.nccl.source.split('check_nccl_allreduce ')[1]}" \
            in gate.nccl.source
        assert f"conf/{gate.conf}" in gate.nccl.source
    assert gate.ecc is not None and gate.conf is not None
    assert gate.conf.startswith(size.lower().removeprefix("standard_"))


def test_h200_quotes_its_conf_line() -> None:
    gate = gates.GATES["standard_nd96isr_h200_v5"]
    assert gate.nccl is not None and gate.ecc is not None and gate.h2d is not None
    assert ("conf/nd96isr_h200_v5.conf: 'check_nccl_allreduce 431.0 1 16G "
            "$AZ_NHC_ROOT/topofiles/ndv5-topo.xml'") in gate.nccl.source
    assert "conf/nd96isr_h200_v5.conf: 'check_gpu_bw 48 335'" in gate.h2d.source
    assert "conf/nd96isr_h200_v5.conf: 'check_gpu_ecc 20000000 10000'" in gate.ecc.source
    assert (gate.ecc.dram_max, gate.ecc.sram_correctable_max, gate.ecc.sram_uncorrectable_max,
            gate.ecc.remapped_uncorrectable_max) == (20_000_000, 10_000, 0, 512)


def test_v100_sizes_gate_retired_pages() -> None:
    ecc = gates.GATES["standard_nc6s_v3"].ecc
    assert ecc is not None and ecc.retired_pages_max == 62 and ecc.dram_max is None
    assert "check_SDBE_ecc" in ecc.source


@pytest.mark.parametrize("size", ["Standard_NC4as_T4_v3", "Standard_NV36ads_A10_v5", "Standard_NC6",
                                  "Standard_Unknown", None])
def test_sizes_without_a_conf_have_no_gates(size: str | None) -> None:
    gate = gates.resolve(size)
    assert not gate.gated
    reason = gates.not_gated_reason(gate, "h2d")
    if size in (None,):
        assert "no VM size" in reason
    elif size and size.lower() in gpus.VM_SIZES:
        assert "has no conf" in reason
    else:
        assert "not a VM size with known gates" in reason


def test_overrides_replace_add_and_remove_gates() -> None:
    gate = gates.resolve("Standard_ND96isr_H200_v5",
                         ["nccl-busbw=400", "h2d=40", "p2p=off", "dram-ecc=5", "nccl-bytes=1G"])
    assert gate.h2d is not None and gate.h2d.value == 40 and gate.h2d.source == "override 'h2d=40'"
    assert gate.d2h is not None and gate.d2h.value == 48
    assert gate.p2p is None
    assert gate.nccl is not None
    assert (gate.nccl.busbw_gbps, gate.nccl.ranks, gate.nccl.message_bytes) == (400, 8, GIB)
    assert "override 'nccl-busbw=400' (in place of 431 GB/s)" in gate.nccl.source
    assert gate.ecc is not None and gate.ecc.dram_max == 5 and gate.ecc.sram_correctable_max == 10000
    t4 = gates.resolve("Standard_NC4as_T4_v3", ["h2d=10", "nccl-busbw=50"])
    assert t4.h2d is not None and t4.h2d.value == 10
    assert t4.nccl is not None and (t4.nccl.ranks, t4.nccl.message_bytes) == (0, 0)
    assert gates.resolve("Standard_NC4as_T4_v3", ["nccl-ranks=2"]).nccl is None


@pytest.mark.parametrize("bad", ["h2d", "h2d=", "h2d=fast", "speed=4", "h2d=-1", "h2d=nan",
                                 "nccl-bytes=lots"])
def test_bad_overrides_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match=r"gate override|not a size"):
        gates.resolve("Standard_ND96isr_H200_v5", [bad])


def test_every_override_and_gate_is_documented() -> None:
    text = (REPO_ROOT / "docs" / "health.md").read_text()
    for name, override in gates.OVERRIDES.items():
        assert override.help and override.unit
        assert f"| `{name}` | {override.unit} |" in text, name
    for size, _h2d, _p2p, busbw, ranks, gib in EXPECTED:
        assert size.removeprefix("Standard_") in text
        if busbw is not None:
            assert f"{busbw:g} GB/s, {ranks} ranks, {gib} GiB" in text
    assert gates.parse_size("16G") == 16 * GIB and gates.parse_size("512MiB") == 512 * 1024**2


def test_result_messages_name_figure_limit_and_source() -> None:
    result = GateResult("h2d", "host->device copy bandwidth", "GPU 0 (NVIDIA H200)", Status.FAIL,
                        "21.30 GB/s", ">= 48 GB/s", "conf/nd96isr_h200_v5.conf")
    assert result.message == ("GPU 0 (NVIDIA H200): host->device copy bandwidth: 21.30 GB/s; "
                              "expected >= 48 GB/s [source: conf/nd96isr_h200_v5.conf]")
    assert result.line().startswith("[fail] ")
    not_gated = GateResult("h2d", "host->device copy bandwidth", "GPU 0", Status.NOT_GATED,
                           "21.30 GB/s", detail="no source")
    assert not_gated.message == "GPU 0: host->device copy bandwidth: 21.30 GB/s; not gated (no source)"
    judged = gates.judgement("x", ["truncated"], [result, result, not_gated])
    assert judged.problems == ["truncated", result.message] and not judged.passed
    assert judged.by_status(Status.NOT_GATED) == [not_gated]


def test_rules_and_clock_reasons_are_sourced() -> None:
    for key, rule in gates.RULES.items():
        assert rule.source and rule.what, key
    assert set(gates.FAULT_CLOCK_REASONS).isdisjoint(gates.BENIGN_CLOCK_REASONS)
    assert "sw_power_cap" in gates.BENIGN_CLOCK_REASONS
    assert "may be reduced when the GPU is not in use" in gates.RULES["pcie-link"].source


def test_docs_table_rows_cover_every_gated_size() -> None:
    rows = gates.table_rows()
    assert [r[0] for r in rows] == [e[0] for e in EXPECTED]
    assert rows[-1] == ("Standard_ND96isr_H200_v5", "48", "335", "431 GB/s, 8 ranks, 16 GiB",
                        "DRAM > 20000000, SRAM corr. > 10000, SRAM uncorr. > 0, remapped uncorr. "
                        "> 512")
