"""gpu_conformance.reports: what the Markdown, JSON and HTML reports say, and how they are written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_conformance import gpus, reports
from gpu_conformance.gpu_nodes import GpuNode
from gpu_conformance.reports import (
    ClusterReport,
    NodeRow,
    PluginPod,
    ReportFormatError,
    Summary,
    TestRecord,
    WorkloadRun,
)

T4 = "Standard_NC4as_T4_v3"
NODES = ("aks-gpu-0", "aks-gpu-1", "aks-gpu-2")
UNHEALTHY = (f"node aks-gpu-1: allocatable {gpus.GPU_RESOURCE} 0 < capacity 1: 1 GPU(s) marked "
             "unhealthy by the device plugin (XID errors or a failed health check)")
UNSCHEDULABLE = ("Job gpu-nvidia-smi-aks-gpu-1: pod gpu-nvidia-smi-aks-gpu-1-x7k2p is Unschedulable: "
                 "0/4 nodes are available: 1 Insufficient nvidia.com/gpu")
DEVICE = "GPU 0: Tesla T4 (UUID: GPU-6f2b1c3e-0000-4a5b-9c8d-1234567890ab)"
CAPACITY = "suites/test_capacity.py::test_gpu_capacity_and_allocatable"
WORKLOAD = "suites/test_workload.py::test_gpu_job_completes"


def gpu_node(name: str, capacity: int = 1, allocatable: int = 1) -> GpuNode:
    return GpuNode(name=name, why="label accelerator=nvidia",
                   labels={gpus.INSTANCE_TYPE_LABEL: T4, gpus.PRODUCT_LABEL: "Tesla-T4"},
                   capacity=capacity, allocatable=allocatable, taints=(), unschedulable=False,
                   ready=True)


def record(nodeid: str, outcome: reports.TestOutcome = "passed", cause: str = "", *,
           suite: str = "capacity", node: str | None = None, profile: str | None = None,
           artifact: str | None = None) -> TestRecord:
    return TestRecord(nodeid=nodeid, suite=suite, outcome=outcome, duration_s=1.25, cause=cause,
                      node=node, profile=profile, artifact=artifact)


def three_node_tests() -> list[TestRecord]:
    tests = [record("suites/test_rollout.py::test_plugin_daemonset_counters_agree", suite="rollout"),
             record("suites/test_rollout.py::test_plugin_pod_ready_on_every_gpu_node", suite="rollout")]
    for name in NODES:
        failing = name == "aks-gpu-1"
        tests.append(record(f"{CAPACITY}[{name}]", "failed" if failing else "passed",
                            UNHEALTHY if failing else "", node=name,
                            artifact=reports.artifact_path(f"{CAPACITY}[{name}]") if failing else None))
        tests.append(record(f"{WORKLOAD}[{name}-nvidia-smi]", "failed" if failing else "passed",
                            UNSCHEDULABLE if failing else "", suite="workload", node=name,
                            profile="nvidia-smi"))
    return tests


def three_node_runs() -> list[WorkloadRun]:
    runs = []
    for name in NODES:
        if name == "aks-gpu-1":
            runs.append(WorkloadRun("nvidia-smi", name, completed=False,
                                    failure=UNSCHEDULABLE + "\n(expected ..., got instead: ...)"))
        else:
            runs.append(WorkloadRun("nvidia-smi", name, completed=True, device_lines=(DEVICE,),
                                    properties={"driver_version": "550.54.15", "cuda_version": "12.4"}))
    return runs


def three_node_cluster(name: str = "gpu-conformance") -> ClusterReport:
    tests = three_node_tests()
    rows = reports.node_rows(
        [gpu_node("aks-gpu-0"), gpu_node("aks-gpu-1", allocatable=0), gpu_node("aks-gpu-2")],
        plugin_pods=[PluginPod(n, f"gpu-resources/nvidia-device-plugin-{i}abcd", True)
                     for i, n in enumerate(NODES)],
        workloads=three_node_runs(), tests=tests, profiles=["nvidia-smi"])
    return ClusterReport(name=name, backend="kwok", kubernetes_version="v1.36.3",
                         properties={"gpu_node_count": "3", "plugin": "gpu-resources/nvidia-device-plugin"},
                         nodes=rows, tests=tests)


def summary(*clusters: ClusterReport) -> Summary:
    return Summary(clusters=list(clusters) or [three_node_cluster()],
                   started_at="2025-06-01T10:00:00Z", finished_at="2025-06-01T10:00:42Z",
                   command="pytest --backend kwok", tool_version="0.1.0")


def table_row(markdown: str, node: str) -> str:
    rows = [line for line in markdown.splitlines() if line.startswith("|") and f"| {node} |" in line]
    assert len(rows) == 1, rows
    return rows[0]


# --- node rows -----------------------------------------------------------------------------------

def test_unhealthy_node_row_fails_with_its_causes_and_the_others_pass() -> None:
    rows = {r.node: r for r in three_node_cluster().nodes}
    assert list(rows) == list(NODES)
    bad = rows["aks-gpu-1"]
    assert bad.verdict == "failed"
    assert bad.capacity == 1 and bad.allocatable == 0
    assert bad.workloads == {"nvidia-smi": "failed"}
    assert bad.causes == [UNHEALTHY, f"nvidia-smi: {UNSCHEDULABLE}"]
    assert bad.device_line is None and bad.driver_version is None
    for name in ("aks-gpu-0", "aks-gpu-2"):
        good = rows[name]
        assert good.verdict == "passed" and good.causes == []
        assert good.workloads == {"nvidia-smi": "passed"}
        assert (good.vm_size, good.gpu_model) == (T4, "Tesla-T4")
        assert good.plugin_pod is not None and good.plugin_pod.endswith("(Ready)")
        assert (good.device_line, good.driver_version, good.cuda_version) == (DEVICE, "550.54.15", "12.4")


def test_cluster_wide_failure_goes_to_the_node_it_names_and_only_that_one() -> None:
    names = ["aks-gpu-1", "aks-gpu-10", "aks-gpu-1x"]
    cause = ("1 of 3 GPU node(s) have no ready device plugin pod: aks-gpu-1 (untolerated taint "
             "sku=gpu:NoSchedule)")
    tests = [record("suites/test_rollout.py::test_plugin_pod_ready_on_every_gpu_node", "failed", cause,
                    suite="rollout"),
             *(record(f"{CAPACITY}[{n}]", node=n) for n in names)]
    rows = {r.node: r for r in reports.node_rows([gpu_node(n) for n in names], tests=tests)}
    assert rows["aks-gpu-1"].verdict == "failed" and rows["aks-gpu-1"].causes == [cause]
    assert rows["aks-gpu-10"].verdict == "passed" and rows["aks-gpu-10"].causes == []
    assert rows["aks-gpu-1x"].verdict == "passed"


def test_names_node_needs_the_whole_name() -> None:
    assert reports.names_node("node aks-gpu-1: not Ready", "aks-gpu-1")
    assert reports.names_node("nodes: aks-gpu-0, aks-gpu-1.", "aks-gpu-1")
    assert not reports.names_node("node aks-gpu-10: not Ready", "aks-gpu-1")
    assert not reports.names_node("node aks-gpu-1.cluster.local", "aks-gpu-1")
    assert reports.names_node("node ip-10-0-0-1.ec2.internal is gone", "ip-10-0-0-1.ec2.internal")


def test_busy_node_is_busy_not_failing_and_names_who_holds_its_gpus() -> None:
    run = WorkloadRun("tf-mnist", "aks-gpu-0", completed=False, busy=True,
                      holders=("team-a/trainer-0", "team-b/infer-1"))
    rows = reports.node_rows([gpu_node("aks-gpu-0")], workloads=[run],
                             tests=[record(f"{CAPACITY}[aks-gpu-0]", node="aks-gpu-0")])
    assert rows[0].verdict == "busy"
    assert rows[0].workloads == {"tf-mnist": "busy"}
    assert "team-a/trainer-0, team-b/infer-1" in rows[0].causes[0]
    cluster = ClusterReport("c", "attach", nodes=rows, tests=[record(f"{CAPACITY}[aks-gpu-0]")])
    assert cluster.verdict == "PASSED"
    assert "1 busy" in reports.headline(summary(cluster))


def test_rows_for_nodes_only_tests_name_but_not_for_placeholders() -> None:
    tests = [record(f"{CAPACITY}[gone-node]", "failed", "node gone-node is gone", node="gone-node"),
             record(f"{CAPACITY}[no-gpu-node-found]", "failed", "no GPU node found among 3 node(s)",
                    node="no-gpu-node-found")]
    rows = reports.node_rows([], tests=tests)
    assert [(r.node, r.verdict, r.capacity, r.vm_size) for r in rows] == [
        ("gone-node", "failed", None, None)]


def test_placeholder_ids_are_the_capacity_checks_own() -> None:
    from gpu_conformance.checks import capacity

    assert {capacity.NO_GPU_NODE, capacity.NOT_STARTED} == reports.PLACEHOLDER_NODES


def test_workload_run_from_the_workload_checks_result() -> None:
    from gpu_conformance.checks.workload import WorkloadResult
    from gpu_conformance.workloads import PROFILES
    from gpu_conformance.workloads.base import LogReport

    result = WorkloadResult(PROFILES["nvidia-smi"], "gpu-nvidia-smi", completed=True,
                            node_name="aks-gpu-0",
                            report=LogReport(devices=["Tesla T4"], device_lines=[DEVICE],
                                             properties={"driver_version": "550.54.15"}))
    run = WorkloadRun.from_result(result)
    assert (run.profile, run.node, run.completed, run.device_lines) == (
        "nvidia-smi", "aks-gpu-0", True, (DEVICE,))
    assert run.properties == {"driver_version": "550.54.15"}


# --- verdicts ------------------------------------------------------------------------------------

def test_verdict_and_counts() -> None:
    s = summary()
    assert s.verdict == "FAILED"
    c = s.counts
    assert (c.gpu_nodes, c.gpu_nodes_failing, c.checks, c.passed, c.failed, c.checks_failed) == (
        3, 1, 8, 6, 2, 2)
    assert reports.headline(s) == "FAILED — 1 of 3 GPU nodes failing, 2 of 8 checks failed"


def test_passed_only_when_something_ran_and_nothing_failed() -> None:
    good = ClusterReport("c", "kwok", tests=[record("a::b"), record("a::c", "skipped", "not here")])
    assert summary(good).verdict == "PASSED"
    assert reports.headline(summary(good)) == "PASSED — no GPU node found, 1 of 2 checks passed, 1 skipped"
    assert summary(ClusterReport("c", "kwok")).verdict == "FAILED"
    assert Summary([], "t0", "t1").verdict == "FAILED"
    errored = ClusterReport("c", "kwok", tests=[record("a::b"), record("a::x", "error", "setup failed")])
    assert summary(errored).verdict == "FAILED"
    down = ClusterReport("prod", "attach", error="could not reach https://10.0.0.1:443: connection refused")
    assert summary(down).verdict == "FAILED"
    assert reports.headline(summary(down)) == (
        "FAILED — cluster prod could not be validated: could not reach https://10.0.0.1:443: "
        "connection refused")


# --- Markdown ------------------------------------------------------------------------------------

def test_markdown_three_nodes_one_failing() -> None:
    md = reports.render_markdown(summary())
    lines = md.splitlines()
    assert lines[0] == "## GPU conformance: FAILED — 1 of 3 GPU nodes failing, 2 of 8 checks failed"
    bad = table_row(md, "aks-gpu-1")
    assert bad.startswith("| ❌ failed | aks-gpu-1 | Standard_NC4as_T4_v3 | Tesla-T4 | 1 / 0 |")
    assert "allocatable nvidia.com/gpu 0 < capacity 1" in bad and "Insufficient nvidia.com/gpu" in bad
    for name in ("aks-gpu-0", "aks-gpu-2"):
        good = table_row(md, name)
        assert good.startswith(f"| ✅ passed | {name} |")
        assert "550.54.15 / 12.4" in good and "GPU 0: Tesla T4" in good and "✅ nvidia-smi" in good
        assert good.endswith("| \u2013 |")
    assert "| cluster | backend |" not in md  # one cluster: no merged table
    failure = next(line for line in lines if f"{CAPACITY}[aks-gpu-1]" in line)
    assert UNHEALTHY in failure
    assert reports.artifact_path(f"{CAPACITY}[aks-gpu-1]") in failure
    # every table row has as many cells as its header
    for table in re.findall(r"((?:^\|.*\n)+)", md, re.MULTILINE):
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1, table


def test_markdown_cells_escape_pipes_newlines_and_markup() -> None:
    nasty = "bad | cell\nsecond line with <b>tag</b> and `tick` *star* ![i](https://e.example/i.png) _em_"
    row = NodeRow(node="n|1", verdict="failed", causes=[nasty], device_line="a|b\r\nc")
    cluster = ClusterReport("c", "kwok", nodes=[row], tests=[
        record("suites/t.py::test_x[a|b`c]", "failed", nasty, node="n|1")])
    md = reports.render_markdown(summary(cluster))
    table = next(line for line in md.splitlines() if line.startswith("| ❌ failed"))
    assert len(re.split(r"(?<!\\)\|", table)) == 12  # 10 cells: no pipe leaked out of a cell
    assert "n\\|1" in table and "bad \\| cell second line with \\<b>tag\\</b>" in table
    assert "\\`tick\\` \\*star\\* ![i\\](https://e.example/i.png) \\_em\\_" in table
    failure = next(line for line in md.splitlines() if line.startswith("- ❌"))
    assert "``suites/t.py::test_x[a|b`c]``" in failure  # a code span longer than the backtick run
    assert "second line" not in failure  # a cause is one line


def test_markdown_merged_summary_of_several_clusters_comes_first() -> None:
    good = three_node_cluster("eastus-a")
    good.tests = [t if not t.failing else TestRecord(**{**t.to_dict(), "outcome": "passed", "cause": ""})
                  for t in good.tests]
    good.nodes = reports.node_rows([gpu_node(n) for n in NODES], tests=good.tests)
    bad = three_node_cluster("westeu-b")
    down = ClusterReport("prod-c", "attach", error="unreachable: connection refused")
    s = summary(good, bad, down)
    md = reports.render_markdown(s)
    assert md.splitlines()[0] == ("## GPU conformance: FAILED — 2 of 3 clusters failing, "
                                  "1 could not be validated, 1 of 6 GPU nodes failing, 2 of 16 checks failed")
    merged = md.index("| cluster | backend | Kubernetes | verdict |")
    assert merged < md.index("### Cluster eastus-a") < md.index("### Cluster westeu-b") < md.index(
        "### Cluster prod-c")
    assert "| eastus-a | kwok | v1.36.3 | ✅ PASSED | 0 of 3 | 0 of 8 | \u2013 |" in md
    assert "| westeu-b | kwok | v1.36.3 | ❌ FAILED | 1 of 3 | 2 of 8 |" in md
    assert ("| prod-c | attach | \u2013 | ❌ FAILED | 0 of 0 | 0 of 0 | unreachable: connection refused |"
            in md)
    assert "**Could not be validated:** unreachable: connection refused" in md


def test_merge_keeps_artifact_paths_resolvable_from_the_fleet_report() -> None:
    a, b = summary(three_node_cluster("a")), summary(three_node_cluster("b"))
    b.started_at, b.finished_at = "2025-06-01T10:01:00Z", "2025-06-01T10:02:00Z"
    fleet = reports.merge([("a", a), ("b/", b)], command="gpu-conformance run --fleet f.yaml")
    assert [c.name for c in fleet.clusters] == ["a", "b"]
    assert (fleet.started_at, fleet.finished_at) == ("2025-06-01T10:00:00Z", "2025-06-01T10:02:00Z")
    artifacts = [t.artifact for c in fleet.clusters for t in c.tests if t.artifact]
    name = reports.artifact_path(f"{CAPACITY}[aks-gpu-1]")
    assert artifacts == [f"a/{name}", f"b/{name}"]
    assert [t.artifact for t in a.clusters[0].tests if t.artifact] == [name]  # parts left as they were


# --- JSON ----------------------------------------------------------------------------------------

def test_json_round_trip_and_facts() -> None:
    s = summary(three_node_cluster("a"), ClusterReport("b", "attach", error="unreachable"))
    text = reports.render_json(s)
    assert reports.load_json(text) == s
    assert reports.render_json(reports.load_json(text)) == text
    data = json.loads(text)
    assert list(data) == ["schema", "verdict", "counts", "started_at", "finished_at", "command",
                          "tool_version", "clusters"]
    assert data["verdict"] == "FAILED" and data["counts"]["gpu_nodes_failing"] == 1
    nodes = {n["node"]: n for n in data["clusters"][0]["nodes"]}
    assert nodes["aks-gpu-1"]["verdict"] == "failed" and UNHEALTHY in nodes["aks-gpu-1"]["causes"]
    assert nodes["aks-gpu-0"]["verdict"] == "passed" and nodes["aks-gpu-0"]["causes"] == []
    assert data["clusters"][1] == {"name": "b", "backend": "attach", "kubernetes_version": None,
                                   "verdict": "FAILED", "error": "unreachable", "properties": {},
                                   "nodes": [], "tests": []}


@pytest.mark.parametrize("text", [
    "", "[]", "not json", '{"schema": "something-else"}',
    json.dumps({"schema": reports.SCHEMA, "clusters": "x", "started_at": "", "finished_at": "",
                "command": "", "tool_version": ""}),
])
def test_load_json_rejects_what_it_did_not_write(text: str) -> None:
    with pytest.raises(ReportFormatError):
        reports.load_json(text)


def test_load_json_rejects_an_unknown_outcome() -> None:
    data = summary().to_dict()
    data["clusters"][0]["tests"][0]["outcome"] = "xpassed"
    with pytest.raises(ReportFormatError, match="xpassed"):
        reports.load_json(json.dumps(data))


# --- HTML ----------------------------------------------------------------------------------------

def test_html_three_nodes_one_failing() -> None:
    page = reports.render_html(summary())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "GPU conformance: FAILED — 1 of 3 GPU nodes failing, 2 of 8 checks failed" in page
    rows = {name: next(line for line in page.splitlines() if f"<td>{name}</td>" in line) for name in NODES}
    assert rows["aks-gpu-1"].startswith('<tr class="failed">')
    assert "allocatable nvidia.com/gpu 0 &lt; capacity 1" in rows["aks-gpu-1"]
    for name in ("aks-gpu-0", "aks-gpu-2"):
        assert rows[name].startswith('<tr class="passed">') and "550.54.15 / 12.4" in rows[name]
    link = reports.artifact_path(f"{CAPACITY}[aks-gpu-1]")
    assert f'<a href="{link}">' in page


def test_html_escapes_everything_and_loads_nothing() -> None:
    evil = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    row = NodeRow(node="n<1>", verdict="failed", causes=[evil], plugin_pod='p"><script>')
    cluster = ClusterReport('c"<b>', "kwok", properties={"<k>": evil}, nodes=[row],
                            tests=[record("t::x[<script>]", "failed", evil, artifact='a" onclick="x')])
    page = reports.render_html(summary(cluster, ClusterReport("d", "kwok", error=evil)))
    assert "<script" not in page and "<img" not in page and 'onclick="' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in page
    assert "Content-Security-Policy" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external asset


# --- artifacts and files -------------------------------------------------------------------------

NASTY_IDS = [
    "suites/test_x.py::test_x[a/b c|d]",
    "suites/test_x.py::test_x[a/b c_d]",
    "suites/test_x.py::test_x[a_b_c_d]",
    "../../etc/passwd",
    ".hidden",
    "",
    "suites/test_x.py::test_x[" + "ü" * 50 + "]",
    "suites/test_x.py::test_x[" + "n" * 1000 + "]",
    "suites/test_x.py::test_x[" + "n" * 1000 + "1]",
    "suites/test_x.py::test_x[\x00\udcff\n\t]",
]


def test_artifact_names_are_safe_unique_readable_and_bounded() -> None:
    names = [reports.artifact_name(n) for n in NASTY_IDS]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name
        assert not name.startswith(".") and 0 < len(name) <= 111
    assert names[0].startswith("suites_test_x.py_test_x_a_b_c_d-")
    assert reports.artifact_name(NASTY_IDS[0]) == names[0]  # stable
    assert reports.artifact_path(NASTY_IDS[0]) == f"artifacts/{names[0]}.txt"


def test_write_creates_every_file_and_appends_to_the_step_summary(tmp_path: Path) -> None:
    step = tmp_path / "github" / "step_summary.md"
    step.parent.mkdir()
    step.write_text("earlier step\n")
    nodeid = f"{CAPACITY}[aks-gpu-1]"
    huge = "diagnostics line\n" * 20_000  # far past the 12 000 characters the terminal shows
    out = tmp_path / "reports" / "run"
    written = reports.write(out, summary(), {nodeid: huge, "x::y[a/b c|d]": "other"}, step)
    artifact = out / reports.artifact_path(nodeid)
    assert written == [out / "summary.md", out / "summary.json", out / "summary.html", artifact,
                       out / reports.artifact_path("x::y[a/b c|d]"), step]
    assert all(p.is_file() for p in written)
    assert huge in artifact.read_text() and artifact.read_text().startswith(nodeid + "\n")
    md = (out / "summary.md").read_text()
    assert step.read_text() == "earlier step\n" + md + "\n"
    assert reports.load_json((out / "summary.json").read_text()) == summary()
    assert "<table>" in (out / "summary.html").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["artifacts", "summary.html", "summary.json",
                                                     "summary.md"]  # no temp file left


def test_write_links_artifacts_to_records_that_have_none(tmp_path: Path) -> None:
    cluster = ClusterReport("c", "kwok", tests=[record("a::b[x]", "failed", "boom")])
    reports.write(tmp_path, summary(cluster), {"a::b[x]": "full text"}, None)
    loaded = reports.load_json((tmp_path / "summary.json").read_text())
    assert loaded.clusters[0].tests[0].artifact == reports.artifact_path("a::b[x]")
    assert reports.artifact_path("a::b[x]") in (tmp_path / "summary.md").read_text()


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "summary.md").write_text("the previous report\n")

    def interrupted(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError, match="disk full"):
        reports.write(tmp_path, summary(), {}, None)
    assert (tmp_path / "summary.md").read_text() == "the previous report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_write_never_raises_on_odd_content(tmp_path: Path) -> None:
    odd = "lone surrogate \udcff, NUL \x00, escape \x1b[31mred\x1b[0m, emoji 🚀, bell \x07"
    cluster = ClusterReport(odd, "kwok", properties={odd: odd},
                            nodes=[NodeRow(node=odd, verdict="failed", causes=[odd], device_line=odd)],
                            tests=[record(odd, "failed", odd, node=odd)])
    written = reports.write(tmp_path, summary(cluster), {odd: odd * 1000}, tmp_path / "step.md")
    for path in written:
        path.read_bytes().decode("utf-8")  # valid UTF-8 everywhere
    md = (tmp_path / "summary.md").read_text()
    assert "\x1b" not in md and "\x00" not in md and "🚀" in md
    assert "\x00" in (tmp_path / reports.artifact_path(odd)).read_text()  # artifacts stay verbatim


def test_step_summary_is_cut_to_fit_githubs_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "STEP_SUMMARY_LIMIT", 600)
    step = tmp_path / "step.md"
    step.write_text("x" * 100)
    reports.write(tmp_path / "r", summary(), {}, step)
    text = step.read_text()
    assert len(text.encode()) <= 600 and text.startswith("x" * 100 + "## GPU conformance: FAILED")
    assert "cut to fit GitHub's step summary" in text and str(tmp_path / "r" / "summary.md") in text


# --- secrets -------------------------------------------------------------------------------------

def test_redact_replaces_each_secret_longest_first_and_ignores_short_ones() -> None:
    text = "token=abcd1234efgh and again abcd1234efgh; prefix abcd1234; pw=abc; empty"
    assert reports.redact(text, ["abcd1234", "abcd1234efgh", "abc", "", "   "]) == (
        "token=[REDACTED] and again [REDACTED]; prefix [REDACTED]; pw=abc; empty")
    assert reports.redact(text, []) == text


def test_write_redacts_secrets_everywhere_even_where_escaping_would_hide_them(tmp_path: Path) -> None:
    secret = 'p<a"ss&word|1'
    cluster = ClusterReport("c", "attach", properties={"kubeconfig_user": secret},
                            tests=[record("a::b", "failed", f"401 Unauthorized for token {secret}")])
    step = tmp_path / "step.md"
    written = reports.write(tmp_path / "r", summary(cluster), {"a::b": f"Authorization: Bearer {secret}"},
                            step, secrets=[secret])
    for path in written:
        text = path.read_text()
        assert secret not in text and "[REDACTED]" in text, path
        assert "p&lt;a" not in text and "p<a\\\"ss" not in text and "p\\<a" not in text, path


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://10.0.0.1:443", certificate-authority-data: Q0EtREFUQQ==}
users:
- name: token-user
  user:
    token: eyJhbGciOiJSUzI1NiJ9.payload.signature
- name: basic
  user: {username: admin, password: hunter2hunter2}
- name: cert
  user:
    client-certificate-data: Q0VSVC1EQVRB
    client-key-data: S0VZLURBVEEtU0VDUkVU
- name: oidc
  user:
    auth-provider:
      name: oidc
      config: {client-id: kubernetes, client-secret: oidc-client-secret-1, id-token: id.tok.en,
               refresh-token: refresh-tok-en, idp-issuer-url: "https://issuer.example"}
- name: exec
  user:
    exec:
      command: aws
      args: [eks, get-token]
      env:
      - {name: AWS_PROFILE, value: prod}
      - {name: AWS_SECRET_ACCESS_KEY, value: wJalrXUtnFEMI/K7MDENG}
      - {name: AWS_SESSION_TOKEN, value: FQoGZXIvYXdzEBY}
- name: short
  user: {token: abc}
- name: odd
  user: [not, a, mapping]
"""


def test_find_secrets_in_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    assert sorted(reports.find_secrets_in_kubeconfig(path)) == sorted([
        "eyJhbGciOiJSUzI1NiJ9.payload.signature", "hunter2hunter2", "S0VZLURBVEEtU0VDUkVU",
        "oidc-client-secret-1", "id.tok.en", "refresh-tok-en", "wJalrXUtnFEMI/K7MDENG",
        "FQoGZXIvYXdzEBY"])
    assert reports.find_secrets_in_kubeconfig(str(path)) == reports.find_secrets_in_kubeconfig(path)


@pytest.mark.parametrize("content", [
    b"", b"users: [", b"\x00\xff\xfe binary", b"- just\n- a list\n", b"users: 42\n",
    b"users:\n- user: {token: [1, 2]}\n", b"{{{{", b"key: 'unterminated\n",
])
def test_find_secrets_tolerates_any_malformed_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config"
    path.write_bytes(content)
    assert reports.find_secrets_in_kubeconfig(path) == []


def test_find_secrets_of_a_missing_file_or_none() -> None:
    assert reports.find_secrets_in_kubeconfig(None) == []
    assert reports.find_secrets_in_kubeconfig("/nonexistent/kubeconfig") == []
    assert reports.find_secrets_in_kubeconfig(Path("/")) == []  # a directory


# --- purity --------------------------------------------------------------------------------------

def test_module_imports_neither_the_kubernetes_client_nor_pytest() -> None:
    code = ("import sys, gpu_conformance.reports; print([m for m in sys.modules "
            "if m.split('.')[0] in ('kubernetes', 'pytest', '_pytest', 'yaml')])")
    env = {**os.environ, "PYTHONPATH": str(Path(reports.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
