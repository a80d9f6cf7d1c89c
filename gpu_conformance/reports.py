"""The run's reports: one Markdown, JSON and HTML summary per run, and one artifact per failure.

Pure rendering and writing: it knows nothing of pytest or the Kubernetes API. The plugin
builds a ``Summary`` from what the run learned (``TestRecord`` per test, ``NodeRow`` per GPU
node through ``node_rows``) and calls ``write``. Everything here tolerates odd text (control
characters, lone surrogates, huge logs): a report must never hide the failure it reports.

Layout of a report directory::

    summary.md       the verdict first, then one table per cluster (also appended to
                     $GITHUB_STEP_SUMMARY), each failure's one-line cause and artifact
    summary.json     the same facts, ``load_json`` reads it back (fleets merge them)
    summary.html     one self-contained page: inline CSS, no script, no external asset
    artifacts/       <artifact_name(nodeid)>.txt: a failure's full diagnostics, uncut
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from gpu_conformance import __version__, gpus
from gpu_conformance.gpu_nodes import GpuNode

if TYPE_CHECKING:  # read by attribute only: this module stays free of the Kubernetes client
    from gpu_conformance.checks.workload import WorkloadResult

SCHEMA = "gpu-conformance/summary/v1"
ARTIFACTS_DIR = "artifacts"
MARKDOWN_FILE = "summary.md"
JSON_FILE = "summary.json"
HTML_FILE = "summary.html"
REDACTED = "[REDACTED]"
#: shorter values would redact ordinary words and numbers all over the reports
MIN_SECRET_LENGTH = 4
#: a cause is one line; the artifact holds the rest
CAUSE_LIMIT = 300
#: device lines can be a whole nvidia-smi row; the table shows this much, the JSON all of it
CELL_LIMIT = 120
#: GitHub rejects a step summary over 1 MiB; keep under it with room for other steps' text
STEP_SUMMARY_LIMIT = 1_000_000
ARTIFACT_NAME_STEM = 100
ARTIFACT_HASH = 10
#: the per-node tests' parameter ids when there is no node to name (checks.capacity's
#: NO_GPU_NODE and NOT_STARTED; a unit test keeps them equal): no row for these
PLACEHOLDER_NODES: frozenset[str] = frozenset({"no-gpu-node-found", "run-not-started"})

TestOutcome = Literal["passed", "failed", "error", "skipped"]
NodeVerdict = Literal["passed", "failed", "busy", "not run"]
RunVerdict = Literal["PASSED", "FAILED"]

_OUTCOMES: dict[str, TestOutcome] = {
    "passed": "passed", "failed": "failed", "error": "error", "skipped": "skipped"}
_VERDICTS: dict[str, NodeVerdict] = {
    "passed": "passed", "failed": "failed", "busy": "busy", "not run": "not run"}
#: worst first: a row or cell shows the worst of what it saw
_SEVERITY: dict[NodeVerdict, int] = {"failed": 3, "busy": 2, "passed": 1, "not run": 0}
#: an empty cell (an en dash)
_NONE = "\u2013"
_FAILING: frozenset[str] = frozenset({"failed", "error"})
_ICONS: dict[str, str] = {"passed": "✅", "failed": "❌", "error": "❌", "busy": "⏳",
                          "not run": "\u2796", "skipped": "\u2796", "PASSED": "✅", "FAILED": "❌"}


_T = TypeVar("_T")


class ReportFormatError(ValueError):
    """A summary.json that is not one this module wrote (or is damaged)."""


# --- the data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TestRecord:
    """One test's result: one record per test id, the worst of its phases."""

    __test__: ClassVar[bool] = False  # a data class, not a pytest test class

    nodeid: str
    suite: str
    outcome: TestOutcome
    duration_s: float
    #: one line: the failure message's first line or the skip reason; "" on pass
    cause: str = ""
    #: the GPU node when the test is per node
    node: str | None = None
    #: the workload profile when the test is per profile
    profile: str | None = None
    #: where its full diagnostics are, relative to the report directory
    artifact: str | None = None

    @property
    def failing(self) -> bool:
        return self.outcome in _FAILING

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "suite": self.suite, "outcome": self.outcome,
                "duration_s": self.duration_s, "cause": self.cause, "node": self.node,
                "profile": self.profile, "artifact": self.artifact}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestRecord:
        where = "test"
        return cls(nodeid=_str(data, "nodeid", where), suite=_str(data, "suite", where),
                   outcome=_choice(data, "outcome", _OUTCOMES, where),
                   duration_s=_float(data, "duration_s", where), cause=_str(data, "cause", where),
                   node=_opt_str(data, "node", where), profile=_opt_str(data, "profile", where),
                   artifact=_opt_str(data, "artifact", where))


@dataclass
class NodeRow:
    """One GPU node's line in the report: what it is, what ran on it, its verdict and why."""

    node: str
    vm_size: str | None = None
    gpu_model: str | None = None
    capacity: int | None = None
    allocatable: int | None = None
    #: ``namespace/name (Ready)``, or None when no plugin pod was found on the node
    plugin_pod: str | None = None
    #: profile -> passed | failed | busy | not run
    workloads: dict[str, NodeVerdict] = field(default_factory=dict)
    device_line: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    verdict: NodeVerdict = "not run"
    causes: list[str] = field(default_factory=list)
    #: a MIG or time-sliced node: every GPU resource it offers -> "capacity / allocatable"
    gpu_resources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "vm_size": self.vm_size, "gpu_model": self.gpu_model,
                "capacity": self.capacity, "allocatable": self.allocatable,
                "gpu_resources": dict(self.gpu_resources),
                "plugin_pod": self.plugin_pod, "workloads": dict(self.workloads),
                "device_line": self.device_line, "driver_version": self.driver_version,
                "cuda_version": self.cuda_version, "verdict": self.verdict,
                "causes": list(self.causes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeRow:
        where = "node"
        workloads = _mapping(data, "workloads", where)
        return cls(
            node=_str(data, "node", where), vm_size=_opt_str(data, "vm_size", where),
            gpu_model=_opt_str(data, "gpu_model", where), capacity=_opt_int(data, "capacity", where),
            allocatable=_opt_int(data, "allocatable", where),
            plugin_pod=_opt_str(data, "plugin_pod", where),
            workloads={str(k): _choice(workloads, k, _VERDICTS, f"{where} workloads")
                       for k in workloads},
            device_line=_opt_str(data, "device_line", where),
            driver_version=_opt_str(data, "driver_version", where),
            cuda_version=_opt_str(data, "cuda_version", where),
            verdict=_choice(data, "verdict", _VERDICTS, where),
            causes=_str_list(data, "causes", where),
            gpu_resources={str(k): str(v)
                           for k, v in _mapping(data, "gpu_resources", where).items()})


@dataclass
class ClusterReport:
    """One cluster's results. ``error`` is set when it could not be validated at all."""

    name: str
    backend: str
    kubernetes_version: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeRow] = field(default_factory=list)
    tests: list[TestRecord] = field(default_factory=list)
    error: str | None = None

    @property
    def failed_tests(self) -> list[TestRecord]:
        return [t for t in self.tests if t.failing]

    @property
    def failing_nodes(self) -> list[NodeRow]:
        return [n for n in self.nodes if n.verdict == "failed"]

    @property
    def passed(self) -> bool:
        """No error, no failed test, no failing node, and at least one test ran: a cluster
        where nothing was checked has shown nothing."""
        return (self.error is None and bool(self.tests) and not self.failed_tests
                and not self.failing_nodes)

    @property
    def verdict(self) -> RunVerdict:
        return "PASSED" if self.passed else "FAILED"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend,
                "kubernetes_version": self.kubernetes_version, "verdict": self.verdict,
                "error": self.error, "properties": dict(self.properties),
                "nodes": [n.to_dict() for n in self.nodes],
                "tests": [t.to_dict() for t in self.tests]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterReport:
        where = "cluster"
        props = _mapping(data, "properties", where)
        return cls(
            name=_str(data, "name", where), backend=_str(data, "backend", where),
            kubernetes_version=_opt_str(data, "kubernetes_version", where),
            properties={str(k): _str(props, k, f"{where} properties") for k in props},
            nodes=[NodeRow.from_dict(n) for n in _dict_list(data, "nodes", where)],
            tests=[TestRecord.from_dict(t) for t in _dict_list(data, "tests", where)],
            error=_opt_str(data, "error", where))


@dataclass(frozen=True)
class Counts:
    """What the verdict line counts, over every cluster of a summary."""

    clusters: int
    clusters_failed: int
    clusters_unvalidated: int
    gpu_nodes: int
    gpu_nodes_failing: int
    gpu_nodes_busy: int
    checks: int
    passed: int
    failed: int
    errors: int
    skipped: int

    @property
    def checks_failed(self) -> int:
        return self.failed + self.errors

    def to_dict(self) -> dict[str, int]:
        return {"clusters": self.clusters, "clusters_failed": self.clusters_failed,
                "clusters_unvalidated": self.clusters_unvalidated, "gpu_nodes": self.gpu_nodes,
                "gpu_nodes_failing": self.gpu_nodes_failing, "gpu_nodes_busy": self.gpu_nodes_busy,
                "checks": self.checks, "passed": self.passed, "failed": self.failed,
                "errors": self.errors, "skipped": self.skipped}


@dataclass
class Summary:
    """A run (one cluster) or a fleet (merged): what every report renders."""

    clusters: list[ClusterReport]
    started_at: str
    finished_at: str
    command: str = ""
    tool_version: str = __version__

    @property
    def verdict(self) -> RunVerdict:
        """PASSED only when every cluster passed (and there is at least one)."""
        return "PASSED" if self.clusters and all(c.passed for c in self.clusters) else "FAILED"

    @property
    def counts(self) -> Counts:
        tests = [t for c in self.clusters for t in c.tests]
        nodes = [n for c in self.clusters for n in c.nodes]
        return Counts(
            clusters=len(self.clusters),
            clusters_failed=sum(not c.passed for c in self.clusters),
            clusters_unvalidated=sum(c.error is not None for c in self.clusters),
            gpu_nodes=len(nodes),
            gpu_nodes_failing=sum(n.verdict == "failed" for n in nodes),
            gpu_nodes_busy=sum(n.verdict == "busy" for n in nodes),
            checks=len(tests),
            passed=sum(t.outcome == "passed" for t in tests),
            failed=sum(t.outcome == "failed" for t in tests),
            errors=sum(t.outcome == "error" for t in tests),
            skipped=sum(t.outcome == "skipped" for t in tests))

    @property
    def duration_s(self) -> float | None:
        start, end = _parse_time(self.started_at), _parse_time(self.finished_at)
        return (end - start).total_seconds() if start and end else None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "verdict": self.verdict, "counts": self.counts.to_dict(),
                "started_at": self.started_at, "finished_at": self.finished_at,
                "command": self.command, "tool_version": self.tool_version,
                "clusters": [c.to_dict() for c in self.clusters]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """The inverse of ``to_dict``; derived fields (verdict, counts) are recomputed."""
        if data.get("schema") != SCHEMA:
            raise ReportFormatError(f"not a gpu-conformance summary (schema {data.get('schema')!r}, "
                                    f"expected {SCHEMA!r})")
        where = "summary"
        return cls(clusters=[ClusterReport.from_dict(c) for c in _dict_list(data, "clusters", where)],
                   started_at=_str(data, "started_at", where),
                   finished_at=_str(data, "finished_at", where),
                   command=_str(data, "command", where),
                   tool_version=_str(data, "tool_version", where))


def now_iso() -> str:
    """The current time as the summaries write it: ISO 8601, UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge(parts: Iterable[tuple[str, Summary]], *, command: str = "") -> Summary:
    """One fleet summary from per-cluster ones; each ``(subdir, summary)`` pair names where
    that summary's report directory is relative to the merged one, so artifact paths still
    resolve from the merged report."""
    clusters: list[ClusterReport] = []
    starts: list[str] = []
    ends: list[str] = []
    for subdir, part in parts:
        starts.append(part.started_at)
        ends.append(part.finished_at)
        prefix = subdir.strip("/")
        for cluster in part.clusters:
            tests = [replace(t, artifact=f"{prefix}/{t.artifact}" if prefix and t.artifact
                             else t.artifact) for t in cluster.tests]
            clusters.append(replace(cluster, tests=tests))
    return Summary(clusters=clusters, started_at=min(starts, default=now_iso()),
                   finished_at=max(ends, default=now_iso()), command=command)


# --- the rows of the GPU node table ---------------------------------------------------------------

@dataclass(frozen=True)
class PluginPod:
    """A device plugin pod and the node it runs on; ``name`` is ``namespace/name``."""

    node: str
    name: str
    ready: bool


@dataclass(frozen=True)
class WorkloadRun:
    """One workload profile's Job on one node, as the report needs it."""

    profile: str
    #: where its pod ran; None when it never got a node
    node: str | None
    completed: bool
    #: the failure (first line is shown), "" when none
    failure: str = ""
    device_lines: tuple[str, ...] = ()
    #: what the log reported: driver_version, cuda_version, ...
    properties: Mapping[str, str] = field(default_factory=dict)
    #: every GPU of the node was held by other pods: not a verdict on the node
    busy: bool = False
    holders: tuple[str, ...] = ()

    @classmethod
    def from_result(cls, result: WorkloadResult, *, node: str | None = None, busy: bool = False,
                    holders: Sequence[str] = ()) -> WorkloadRun:
        """From the workload check's result (``node`` overrides where its pod ran)."""
        report = result.report
        return cls(profile=result.profile.name, node=node or result.node_name,
                   completed=result.completed, failure=result.failure,
                   device_lines=tuple(report.device_lines) if report else (),
                   properties=dict(report.properties) if report else {},
                   busy=busy, holders=tuple(holders))


def node_rows(gpu_nodes: Iterable[GpuNode], *, plugin_pods: Iterable[PluginPod] = (),
              workloads: Iterable[WorkloadRun] = (), tests: Iterable[TestRecord] = (),
              profiles: Sequence[str] = ()) -> list[NodeRow]:
    """One row per GPU node (and per node a per-node test or a workload named), sorted by name.

    A node's causes: its failed per-node tests, failed cluster-wide tests whose cause names
    it, its workloads' failures and busy GPUs. Its verdict is the worst of: failed (any
    cause of failure), busy, passed (something that covers it passed), not run. Workload
    columns list ``profiles`` plus every profile seen.
    """
    nodes = {n.name: n for n in gpu_nodes}
    records = list(tests)
    runs = list(workloads)
    names = set(nodes)
    names.update(t.node for t in records if t.node and t.node not in PLACEHOLDER_NODES)
    names.update(r.node for r in runs if r.node)
    all_profiles = list(dict.fromkeys([*profiles, *(r.profile for r in runs),
                                       *(t.profile for t in records if t.profile)]))
    pods: dict[str, list[PluginPod]] = {}
    for pod in plugin_pods:
        pods.setdefault(pod.node, []).append(pod)
    return [_row(name, nodes.get(name), pods.get(name, []),
                 [r for r in runs if r.node == name], records, all_profiles)
            for name in sorted(names)]


def _row(name: str, node: GpuNode | None, pods: list[PluginPod], runs: list[WorkloadRun],
         records: list[TestRecord], profiles: list[str]) -> NodeRow:
    row = NodeRow(node=name)
    if node is not None:
        labels = node.labels
        row.vm_size = (labels.get(gpus.INSTANCE_TYPE_LABEL)
                       or labels.get(gpus.LEGACY_INSTANCE_TYPE_LABEL))
        sku = gpus.sku_for_vm_size(row.vm_size)
        row.gpu_model = labels.get(gpus.PRODUCT_LABEL) or (sku.device_name if sku else None)
        row.capacity, row.allocatable = node.capacity, node.allocatable
        if node.shared:
            row.gpu_resources = {r: f"{v} / {node.gpu_allocatable.get(r, '?')}"
                                 for r, v in sorted(node.gpu_capacity.items())}
    if pods:
        pod = max(pods, key=lambda p: p.ready)  # a ready one, if any, says the node is served
        row.plugin_pod = f"{pod.name} ({'Ready' if pod.ready else 'not ready'})"
    causes: list[str] = []
    verdicts: list[NodeVerdict] = []
    cells: dict[str, NodeVerdict] = dict.fromkeys(profiles, "not run")
    for record in records:
        if record.node is None and record.profile is None and record.outcome == "passed":
            verdicts.append("passed")  # a cluster-wide check that passed covers every GPU node
            continue
        mine = record.node == name or (record.node is None and record.failing
                                       and names_node(record.cause, name))
        if not mine:
            continue
        if record.failing:
            causes.append(cause_line(record.cause) or f"{record.nodeid}: {record.outcome}")
            verdicts.append("failed")
            if record.profile:
                cells[record.profile] = "failed"
        elif record.outcome == "passed":
            verdicts.append("passed")
            if record.profile:
                cells[record.profile] = _worst(cells.get(record.profile, "not run"), "passed")
    for run in runs:
        cell: NodeVerdict
        if run.busy and not run.completed:
            cell = "busy"
            held = f" by {', '.join(run.holders)}" if run.holders else ""
            causes.append(cause_line(f"{run.profile}: every GPU is in use{held} (busy, not broken)"))
        elif run.completed and not run.failure:
            cell = "passed"
        else:  # a completed Job whose log could not be read has shown nothing either
            cell = "failed"
            causes.append(cause_line(
                f"{run.profile}: {cause_line(run.failure) or 'the Job did not complete'}"))
        cells[run.profile] = _worst(cells.get(run.profile, "not run"), cell)
        verdicts.append(cell)
        if row.device_line is None and run.device_lines:
            row.device_line = cause_line(run.device_lines[0])
        row.driver_version = row.driver_version or run.properties.get("driver_version")
        row.cuda_version = row.cuda_version or run.properties.get("cuda_version")
    row.workloads = cells
    row.causes = _distinct(causes)
    verdict: NodeVerdict = "not run"
    for seen in verdicts:
        verdict = _worst(verdict, seen)
    row.verdict = verdict
    return row


def _distinct(causes: Iterable[str]) -> list[str]:
    """Causes in order, without one that another already says (a workload's failure and its
    test's message are often the same line, one with the profile in front)."""
    kept: list[str] = []
    for cause in causes:
        if not cause or any(cause in k for k in kept):
            continue
        kept = [k for k in kept if k not in cause] + [cause]
    return kept


def _worst(old: NodeVerdict, new: NodeVerdict) -> NodeVerdict:
    return new if _SEVERITY[new] > _SEVERITY[old] else old


def names_node(text: str, node: str) -> bool:
    """Does ``text`` name ``node`` (whole name: aks-gpu-1 is not named by aks-gpu-10)?"""
    if not node:
        return False
    pattern = rf"(?<![A-Za-z0-9.-]){re.escape(node)}(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
    return re.search(pattern, text) is not None


# --- text helpers --------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_PYTEST_PREFIX = re.compile(r"^(E\s+|Failed:\s+|AssertionError:\s+|Skipped:\s+)+")


def clean(text: str) -> str:
    """Text safe to show: no terminal escapes, no control characters, no lone surrogates."""
    return _CONTROL.sub("\ufffd", _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))


def cause_line(text: str, limit: int = CAUSE_LIMIT) -> str:
    """One line for a cause: the first non-blank line, pytest's ``E``/``Failed:`` prefixes
    dropped, whitespace collapsed, cut at ``limit`` characters."""
    first = next((line for line in clean(text).splitlines() if line.strip()), "")
    line = " ".join(_PYTEST_PREFIX.sub("", first.strip()).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _short(text: str | None, limit: int = CELL_LIMIT) -> str:
    line = " ".join(clean(text or "").split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return word if count == 1 else (plural or word + "s")


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds} s"


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def headline(summary: Summary) -> str:
    """The one-line verdict: ``FAILED — 1 of 3 GPU nodes failing, 2 of 14 checks failed``."""
    c = summary.counts
    verdict = summary.verdict
    parts: list[str] = []
    if not summary.clusters:
        return f"{verdict} — no cluster was checked"
    if c.clusters > 1:
        parts.append(f"{c.clusters_failed} of {c.clusters} clusters failing" if c.clusters_failed
                     else f"{c.clusters} clusters")
    if c.clusters_unvalidated:
        if c.clusters == 1:
            error = summary.clusters[0].error or ""
            parts.append(f"cluster {summary.clusters[0].name} could not be validated: "
                         f"{cause_line(error, 160)}")
        else:
            parts.append(f"{c.clusters_unvalidated} could not be validated")
    if c.gpu_nodes_failing:
        parts.append(f"{c.gpu_nodes_failing} of {c.gpu_nodes} GPU {_plural(c.gpu_nodes, 'node')} "
                     "failing")
    elif c.gpu_nodes:
        parts.append(f"{c.gpu_nodes} GPU {_plural(c.gpu_nodes, 'node')}"
                     + (" passing" if verdict == "PASSED" else ""))
    elif c.clusters_unvalidated < c.clusters:
        parts.append("no GPU node found")
    if c.gpu_nodes_busy:
        parts.append(f"{c.gpu_nodes_busy} busy")
    if c.checks_failed:
        parts.append(f"{c.checks_failed} of {c.checks} {_plural(c.checks, 'check')} failed")
    elif c.checks:
        parts.append(f"{c.passed} of {c.checks} {_plural(c.checks, 'check')} passed")
    elif c.clusters_unvalidated < c.clusters:
        parts.append("no check ran")
    if c.skipped:
        parts.append(f"{c.skipped} skipped")
    return f"{verdict} — {', '.join(parts)}"


# --- Markdown ------------------------------------------------------------------------------------

#: what would turn into markup, and only that, so that causes stay readable in the raw file:
#: backslash, backtick, star, tilde and pipe always; underscore unless inside a word
#: (Standard_NC4as_T4_v3 stays as it is); "<" that opens a tag; "]" that closes a link or an
#: image; "&" that starts an entity
_MD_SPECIAL = re.compile(r"[\\`*~|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|<(?=[A-Za-z/!?])|\](?=[(\[])"
                         r"|&(?=#?[A-Za-z0-9]+;)")


def _md(text: str | None, limit: int | None = None) -> str:
    """Plain text for a Markdown table cell: markup characters escaped, one line."""
    value = _short(text, limit) if limit else " ".join(clean(text or "").split())
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), value) if value else _NONE


def _md_code(text: str, in_table: bool = False) -> str:
    """``text`` as a code span, whatever backticks it holds (``|`` escaped in a table)."""
    value = " ".join(clean(text).split())
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    if in_table:
        value = value.replace("|", "\\|")
    return f"{fence}{pad}{value}{pad}{fence}"


def _workload_cells(workloads: Mapping[str, NodeVerdict]) -> str:
    return ", ".join(f"{_ICONS[v]} {p}" + ("" if v == "passed" else f" ({v})")
                     for p, v in workloads.items())


def _gpus(row: NodeRow) -> str:
    def show(value: int | None) -> str:
        return "?" if value is None else str(value)
    if row.gpu_resources:
        return ", ".join(f"{r} {v}" for r, v in row.gpu_resources.items())
    return f"{show(row.capacity)} / {show(row.allocatable)}"


def _driver(row: NodeRow) -> str | None:
    if row.driver_version is None and row.cuda_version is None:
        return None
    return f"{row.driver_version or '?'} / {row.cuda_version or '?'}"


def render_markdown(summary: Summary) -> str:
    """The report for people: verdict line first, then per cluster its GPU node table and
    each failure's one-line cause with its artifact; readable in GitHub's step summary."""
    out = [f"## GPU conformance: {_md(headline(summary))}", ""]
    meta = [f"gpu-conformance {_md(summary.tool_version)}",
            f"{_md(summary.started_at)} → {_md(summary.finished_at)} "
            f"({_seconds(summary.duration_s)})"]
    if summary.command:
        meta.append(_md_code(summary.command))
    out += [" · ".join(meta), ""]
    if len(summary.clusters) > 1:
        out += _md_clusters(summary.clusters)
    for cluster in summary.clusters:
        out += _md_cluster(cluster)
    return "\n".join(out).rstrip() + "\n"


def _md_clusters(clusters: Sequence[ClusterReport]) -> list[str]:
    out = ["| cluster | backend | Kubernetes | verdict | GPU nodes failing | checks failed | first cause |",
           "|---|---|---|---|---|---|---|"]
    for c in clusters:
        failed = c.failed_tests
        first = c.error or (failed[0].cause if failed else "") or (
            c.failing_nodes[0].causes[0] if c.failing_nodes and c.failing_nodes[0].causes else "")
        if not c.tests and c.error is None:
            first = "no check ran"
        out.append(f"| {_md(c.name)} | {_md(c.backend)} | {_md(c.kubernetes_version)} | "
                   f"{_ICONS[c.verdict]} {c.verdict} | {len(c.failing_nodes)} of {len(c.nodes)} | "
                   f"{len(failed)} of {len(c.tests)} | {_md(cause_line(first)) if first else _NONE} |")
    return [*out, ""]


def _md_cluster(c: ClusterReport) -> list[str]:
    out = [f"### Cluster {_md(c.name)}: {_ICONS[c.verdict]} {c.verdict}", ""]
    facts = [f"backend {_md(c.backend)}"]
    if c.kubernetes_version:
        facts.append(f"Kubernetes {_md(c.kubernetes_version)}")
    facts.append(f"{len(c.nodes)} GPU {_plural(len(c.nodes), 'node')}")
    outcomes = {o: sum(t.outcome == o for t in c.tests) for o in _OUTCOMES}
    facts.append(f"{len(c.tests)} {_plural(len(c.tests), 'check')}: "
                 + ", ".join(f"{n} {o}" for o, n in outcomes.items() if n) if c.tests
                 else "no check ran")
    out += [" · ".join(facts), ""]
    if c.error is not None:
        out += [f"**Could not be validated:** {_md(cause_line(c.error))}", ""]
    if c.nodes:
        out += ["| | node | VM size | GPU model | GPUs (capacity / allocatable) | plugin pod | "
                "workloads | device line | driver / CUDA | cause |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for row in c.nodes:
            out.append(" | ".join([
                f"| {_ICONS[row.verdict]} {row.verdict}", _md(row.node), _md(row.vm_size),
                _md(row.gpu_model), _gpus(row), _md(row.plugin_pod),
                _md(_workload_cells(row.workloads)), _md(row.device_line, CELL_LIMIT),
                _md(_driver(row)), _md("; ".join(row.causes)) + " |"]))
        out += ["", "✅ passed · ❌ failed · ⏳ busy (GPUs held by other pods) · \u2796 not run", ""]
    elif c.error is None:
        out += ["No GPU node found.", ""]
    failed = c.failed_tests
    if failed:
        out += [f"**{len(failed)} {_plural(len(failed), 'failure')}**", ""]
        for t in failed:
            where = f" — diagnostics: {_md_code(t.artifact)}" if t.artifact else ""
            out.append(f"- {_ICONS[t.outcome]} {_md_code(t.nodeid)} {t.outcome} "
                       f"({_seconds(t.duration_s)}): {_md(cause_line(t.cause)) if t.cause else _NONE}"
                       f"{where}")
        out.append("")
    skipped = [t for t in c.tests if t.outcome == "skipped"]
    if skipped:
        out += [f"<details><summary>{len(skipped)} skipped</summary>", ""]
        out += [f"- {_md_code(t.nodeid)}: {_md(cause_line(t.cause))}" for t in skipped]
        out += ["", "</details>", ""]
    if c.properties:
        out += ["<details><summary>Run properties</summary>", "", "| property | value |", "|---|---|"]
        out += [f"| {_md(k)} | {_md(v, CELL_LIMIT * 2)} |" for k, v in sorted(c.properties.items())]
        out += ["", "</details>", ""]
    return out


# --- JSON ----------------------------------------------------------------------------------------

def render_json(summary: Summary) -> str:
    """The report for machines: the same facts, fixed keys (``schema`` names the version)."""
    return json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n"


def load_json(text: str) -> Summary:
    """Read back what ``render_json`` wrote; ReportFormatError when it is not that."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReportFormatError(f"summary is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReportFormatError("summary is not a JSON object")
    return Summary.from_dict(data)


def _field(data: Mapping[str, Any], key: str, where: str) -> object:
    if key not in data:
        raise ReportFormatError(f"{where}: missing {key!r}")
    value: object = data[key]
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise ReportFormatError(f"{where}: {key!r} is not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if data.get(key) is None else _str(data, key, where)


def _opt_int(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReportFormatError(f"{where}: {key!r} is not an integer")
    return value


def _float(data: Mapping[str, Any], key: str, where: str) -> float:
    value = _field(data, key, where)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ReportFormatError(f"{where}: {key!r} is not a number")
    return float(value)


def _choice(data: Mapping[str, Any], key: str, choices: Mapping[str, _T], where: str) -> _T:
    value = _str(data, key, where)
    if value not in choices:
        raise ReportFormatError(f"{where}: {key!r} is {value!r}, not one of {', '.join(choices)}")
    return choices[value]


def _mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value: object = data.get(key) or {}
    if not isinstance(value, dict):
        raise ReportFormatError(f"{where}: {key!r} is not an object")
    return value


def _dict_list(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value: object = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ReportFormatError(f"{where}: {key!r} is not a list of objects")
    return list(value)


def _str_list(data: Mapping[str, Any], key: str, where: str) -> list[str]:
    value: object = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportFormatError(f"{where}: {key!r} is not a list of strings")
    return list(value)


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1f2328}
h1{font-size:1.35em;padding:.5em .7em;border-radius:6px}
h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:0 3px}
.passed,.PASSED{background:#dafbe1;color:#116329}
.failed,.FAILED,.error{background:#ffebe9;color:#a40e26}
.busy{background:#fff8c5;color:#7d4e00}
.not-run,.skipped{background:#f6f8fa;color:#59636e}
.meta{color:#59636e}
td.wrap{max-width:32em;word-break:break-word}
span.cell{display:inline-block;padding:0 4px;margin:1px;border-radius:4px}
"""


#: an artifact path is linked only when it is plainly a relative path inside the report
_SAFE_LINK = re.compile(r"(?!/)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9._/-]+")


def _h(text: object) -> str:
    return html.escape(clean(str(text)), quote=True)


def _css_class(verdict: str) -> str:
    return verdict.replace(" ", "-")


def render_html(summary: Summary) -> str:
    """One self-contained page: inline CSS, no script, every value escaped."""
    verdict = summary.verdict
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           # nothing here needs a script or a fetch: forbid them, whatever a cause holds
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'unsafe-inline'\">",
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>GPU conformance: {verdict}</title>", f"<style>{_CSS}</style>",
           "</head><body>",
           f'<h1 class="{verdict}">{_ICONS[verdict]} GPU conformance: {_h(headline(summary))}</h1>',
           f'<p class="meta">gpu-conformance {_h(summary.tool_version)} · {_h(summary.started_at)} → '
           f"{_h(summary.finished_at)} ({_h(_seconds(summary.duration_s))})"
           + (f" · <code>{_h(summary.command)}</code>" if summary.command else "") + "</p>"]
    if len(summary.clusters) > 1:
        out += ["<table><tr><th>cluster</th><th>backend</th><th>Kubernetes</th><th>verdict</th>"
                "<th>GPU nodes failing</th><th>checks failed</th><th>first cause</th></tr>"]
        for c in summary.clusters:
            failed = c.failed_tests
            first = c.error or (failed[0].cause if failed else "")
            out.append(f"<tr><td>{_h(c.name)}</td><td>{_h(c.backend)}</td>"
                       f"<td>{_h(c.kubernetes_version or _NONE)}</td>"
                       f'<td class="{c.verdict}">{c.verdict}</td>'
                       f"<td>{len(c.failing_nodes)} of {len(c.nodes)}</td>"
                       f"<td>{len(failed)} of {len(c.tests)}</td>"
                       f'<td class="wrap">{_h(cause_line(first) or _NONE)}</td></tr>')
        out.append("</table>")
    for cluster in summary.clusters:
        out += _html_cluster(cluster)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_cluster(c: ClusterReport) -> list[str]:
    out = [f'<h2>Cluster {_h(c.name)}: <span class="cell {c.verdict}">{c.verdict}</span></h2>',
           f'<p class="meta">backend {_h(c.backend)}'
           + (f" · Kubernetes {_h(c.kubernetes_version)}" if c.kubernetes_version else "")
           + f" · {len(c.nodes)} GPU {_plural(len(c.nodes), 'node')} · {len(c.tests)} "
           f"{_plural(len(c.tests), 'check')}</p>"]
    if c.error is not None:
        out.append(f'<p class="failed"><b>Could not be validated:</b> {_h(cause_line(c.error))}</p>')
    if c.nodes:
        out.append("<table><tr><th>verdict</th><th>node</th><th>VM size</th><th>GPU model</th>"
                   "<th>GPUs (capacity / allocatable)</th><th>plugin pod</th><th>workloads</th>"
                   "<th>device line</th><th>driver / CUDA</th><th>cause</th></tr>")
        for row in c.nodes:
            cells = "".join(f'<span class="cell {_css_class(v)}">{_h(p)}: {_h(v)}</span>'
                            for p, v in row.workloads.items())
            causes = "<br>".join(_h(x) for x in row.causes) or _NONE
            out.append(
                f'<tr class="{_css_class(row.verdict)}"><td>{_h(row.verdict)}</td>'
                f"<td>{_h(row.node)}</td><td>{_h(row.vm_size or _NONE)}</td>"
                f"<td>{_h(row.gpu_model or _NONE)}</td><td>{_h(_gpus(row))}</td>"
                f"<td>{_h(row.plugin_pod or _NONE)}</td><td>{cells or _NONE}</td>"
                f'<td class="wrap">{_h(row.device_line or _NONE)}</td>'
                f"<td>{_h(_driver(row) or _NONE)}</td><td class=\"wrap\">{causes}</td></tr>")
        out.append("</table>")
    elif c.error is None:
        out.append("<p>No GPU node found.</p>")
    shown = [t for t in c.tests if t.outcome != "passed"]
    if shown:
        out.append("<table><tr><th>outcome</th><th>test</th><th>duration</th><th>cause</th>"
                   "<th>diagnostics</th></tr>")
        for t in shown:
            link = (f'<a href="{_h(t.artifact)}">{_h(t.artifact)}</a>' if t.artifact and
                    _SAFE_LINK.fullmatch(t.artifact) else _h(t.artifact or _NONE))
            out.append(f'<tr><td class="{t.outcome}">{t.outcome}</td><td><code>{_h(t.nodeid)}</code>'
                       f"</td><td>{_h(_seconds(t.duration_s))}</td>"
                       f'<td class="wrap">{_h(cause_line(t.cause) or _NONE)}</td><td>{link}</td></tr>')
        out.append("</table>")
    if c.properties:
        out.append("<details><summary>Run properties</summary><table>")
        out += [f"<tr><th>{_h(k)}</th><td class=\"wrap\">{_h(v)}</td></tr>"
                for k, v in sorted(c.properties.items())]
        out.append("</table></details>")
    return out


# --- files ---------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def artifact_name(nodeid: str) -> str:
    """A file name for a test id: readable, only ``[A-Za-z0-9._-]``, at most 111 characters,
    never hidden, and unique (a hash of the whole id, as sanitizing can make two ids alike)."""
    stem = _UNSAFE.sub("_", nodeid).strip("._-")[:ARTIFACT_NAME_STEM].rstrip("._-") or "test"
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:ARTIFACT_HASH]
    return f"{stem}-{digest}"


def artifact_path(nodeid: str) -> str:
    """Where ``write`` puts the test's artifact, relative to the report directory (what a
    TestRecord's ``artifact`` holds)."""
    return f"{ARTIFACTS_DIR}/{artifact_name(nodeid)}.txt"


def _encode(text: str) -> bytes:
    # lone surrogates (undecodable bytes of a log) become "?" rather than an error
    return text.encode("utf-8", errors="replace")


def _atomic_write(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _step_summary_text(text: str, existing: int, report: Path) -> bytes:
    data = _encode(text)
    budget = STEP_SUMMARY_LIMIT - existing
    if len(data) <= budget:
        return data
    note = _encode(f"\n\n… (cut to fit GitHub's step summary; the whole report is {report})\n")
    cut = data[: max(budget - len(note), 0)]
    cut = cut[: cut.rfind(b"\n") + 1] if b"\n" in cut else b""
    return cut + note if budget > len(note) else b""


def with_artifacts(summary: Summary, nodeids: Collection[str]) -> Summary:
    """The summary with ``artifact`` set (to ``artifact_path``) on records that have none and
    whose test has an artifact among ``nodeids``."""
    clusters = [replace(c, tests=[
        replace(t, artifact=artifact_path(t.nodeid)) if t.artifact is None and t.nodeid in nodeids
        else t for t in c.tests]) for c in summary.clusters]
    return replace(summary, clusters=clusters)


def write(report_dir: Path, summary: Summary, artifacts: Mapping[str, str],
          github_step_summary: Path | None = None, *, secrets: Iterable[str] = ()) -> list[Path]:
    """Write summary.md, summary.json, summary.html and artifacts/<name>.txt (uncut) under
    ``report_dir``; append summary.md to ``github_step_summary`` when given. Files are
    replaced atomically; ``secrets`` are redacted from everything written. Returns the paths
    written, the step summary last. Raises OSError only when a file cannot be written."""
    hidden = _secret_list(secrets)
    summary = with_artifacts(summary, set(artifacts))
    if hidden:
        summary = redact_summary(summary, hidden)
    written: list[Path] = []
    markdown = redact(render_markdown(summary), hidden)
    for name, text in ((MARKDOWN_FILE, markdown),
                       (JSON_FILE, redact(render_json(summary), hidden)),
                       (HTML_FILE, redact(render_html(summary), hidden))):
        _atomic_write(report_dir / name, _encode(text))
        written.append(report_dir / name)
    for nodeid, text in artifacts.items():
        path = report_dir / artifact_path(nodeid)
        header = f"{nodeid}\n{'=' * min(len(nodeid), 100)}\n\n"
        _atomic_write(path, _encode(redact(header + text, hidden)))
        written.append(path)
    if github_step_summary is not None:
        github_step_summary.parent.mkdir(parents=True, exist_ok=True)
        existing = github_step_summary.stat().st_size if github_step_summary.exists() else 0
        with github_step_summary.open("ab") as out:
            out.write(_step_summary_text(markdown + "\n", existing, report_dir / MARKDOWN_FILE))
        written.append(github_step_summary)
    return written


# --- secrets -------------------------------------------------------------------------------------

def _secret_list(secrets: Iterable[str]) -> list[str]:
    # longest first: a secret that contains another is replaced whole
    found = {s for s in secrets if isinstance(s, str) and len(s.strip()) >= MIN_SECRET_LENGTH}
    return sorted(found, key=lambda s: (-len(s), s))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (non-empty, at least 4 characters) replaced by [REDACTED]."""
    for secret in _secret_list(secrets):
        text = text.replace(secret, REDACTED)
    return text


def redact_summary(summary: Summary, secrets: Iterable[str]) -> Summary:
    """The summary with secrets redacted from every string value, before it is rendered: a
    secret holding ``"`` or ``<`` would no longer match once JSON or HTML escaped it."""
    hidden = _secret_list(secrets)
    if not hidden:
        return summary

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, hidden)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: v if k in _STRUCTURAL else scrub(v) for k, v in value.items()}
        return value

    return Summary.from_dict(scrub(summary.to_dict()))


#: fields whose values are this module's own words (a secret equal to "passed" stays a verdict)
_STRUCTURAL = frozenset({"schema", "verdict", "outcome", "workloads", "counts"})
_SECRET_KEYS = frozenset({"token", "password", "client-key-data"})
_SECRETISH = re.compile(r"token|secret|password|passwd|key|credential", re.IGNORECASE)


def find_secrets_in_kubeconfig(path: str | os.PathLike[str] | None) -> list[str]:
    """Secret values in a kubeconfig: users' token, password and client-key-data, and
    auth-provider config / exec env values whose name says secret (token, secret, password,
    key, credential). Certificates and file paths are not secrets. Any unreadable or
    malformed file gives []."""
    if not path:
        return []
    try:
        import yaml  # only here: the rest of the module needs nothing beyond the stdlib

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8", errors="replace"))
    except Exception:
        return []
    return list(dict.fromkeys(s for s in _kubeconfig_secrets(data)
                              if len(s.strip()) >= MIN_SECRET_LENGTH))


def _kubeconfig_secrets(data: object) -> Iterator[str]:
    if not isinstance(data, dict):
        return
    users = data.get("users")
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        for key in _SECRET_KEYS:
            value = user.get(key)
            if isinstance(value, str):
                yield value
        provider = user.get("auth-provider")
        config = provider.get("config") if isinstance(provider, dict) else None
        if isinstance(config, dict):
            yield from (v for k, v in config.items()
                        if isinstance(k, str) and isinstance(v, str) and _SECRETISH.search(k))
        exec_ = user.get("exec")
        env = exec_.get("env") if isinstance(exec_, dict) else None
        for var in env if isinstance(env, list) else []:
            if isinstance(var, dict) and isinstance(var.get("name"), str) \
                    and isinstance(var.get("value"), str) and _SECRETISH.search(var["name"]):
                yield var["value"]
