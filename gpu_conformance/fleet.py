"""``gpu-conformance run``: the suites from any directory, on one cluster or a fleet.

One cluster: pytest runs in this process with the project's configuration (the checkout's, or
the copy an installed package carries), the suites as its argument, and the pytest cache and
reports where the user runs it. A fleet (``--kube-context a,b,c`` or ``--fleet FILE``): each
cluster is validated by its own pytest process, one after another, into reports/<cluster>/;
a cluster that fails or cannot be reached does not stop the others; a merged summary goes to
reports/. The exit status is the worst of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpu_conformance.backends import FLEET_BACKEND
from gpu_conformance.errors import ExitCode, UsageError
from gpu_conformance.paths import project_dir

REPORT_DIR_OPTION = "--gpu-report-dir"
#: worst first: what a fleet's exit status is, given its clusters'
SEVERITY = (ExitCode.INTERNAL_ERROR, ExitCode.CHECKS_FAILED, ExitCode.CLUSTER_UNAVAILABLE,
            ExitCode.USAGE_ERROR, ExitCode.INTERRUPTED, ExitCode.NO_TESTS, ExitCode.OK)


@dataclass(frozen=True)
class Target:
    name: str
    kubeconfig: str | None
    context: str | None


def _take(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """Remove ``flag VALUE`` / ``flag=VALUE`` from ``argv``; its last value."""
    value, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == flag:
            if i + 1 >= len(argv):
                raise UsageError(f"{flag} needs a value")
            value, i = argv[i + 1], i + 2
            continue
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "cluster"


def fleet_targets(contexts: str | None, fleet_file: str | None, kubeconfig: str | None
                  ) -> list[Target]:
    """The clusters of a fleet, from comma-separated contexts or a YAML file."""
    if fleet_file:
        path = Path(fleet_file).expanduser()
        if not path.is_file():
            raise UsageError(f"--fleet {fleet_file}: no such file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            raise UsageError(f"--fleet {fleet_file} is not valid YAML") from None
        entries = data.get("clusters") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise UsageError(f"--fleet {fleet_file}: expected 'clusters:' with a list of "
                             "{name, kubeconfig, context} entries")
        targets = []
        for i, entry in enumerate(entries, 1):
            if not isinstance(entry, dict) or not (entry.get("kubeconfig") or entry.get("context")):
                raise UsageError(f"--fleet {fleet_file}: cluster {i} needs a kubeconfig or a "
                                 "context")
            kc = str(Path(str(entry["kubeconfig"])).expanduser()) if entry.get("kubeconfig") \
                else kubeconfig
            name = str(entry.get("name") or entry.get("context") or Path(str(kc)).stem)
            targets.append(Target(_safe(name), kc, entry.get("context")))
    else:
        names = [c.strip() for c in (contexts or "").split(",") if c.strip()]
        targets = [Target(_safe(c), kubeconfig, c) for c in names]
    seen = [t.name for t in targets]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise UsageError(f"two fleet clusters share the name {duplicates[0]!r}; name them apart")
    return targets


def pytest_args(argv: Sequence[str]) -> list[str]:
    """The pytest command line of one run of the suites, from wherever the user is."""
    project = project_dir()
    cache = Path.cwd() / ".pytest_cache"
    return ["-c", str(project / "pytest.ini"), f"--rootdir={project}", "-o",
            f"cache_dir={cache}", *argv, str(project / "suites")]


def run_one(argv: Sequence[str]) -> int:
    import pytest

    return int(pytest.main(pytest_args(argv)))


def run(argv: Sequence[str]) -> int:
    """``gpu-conformance run [--kube-context a,b | --fleet FILE] [pytest args]``."""
    args = list(argv)
    contexts, args = _take(args, "--kube-context")
    fleet_file, args = _take(args, "--fleet")
    if not fleet_file and not (contexts and "," in contexts):
        return run_one(args + ([f"--kube-context={contexts}"] if contexts else []))
    kubeconfig, args = _take(args, "--kubeconfig")
    backend, args = _take(args, "--backend")
    if backend not in (None, FLEET_BACKEND):
        raise UsageError(f"a fleet is validated with --backend {FLEET_BACKEND}, not {backend}")
    report_dir, args = _take(args, REPORT_DIR_OPTION)
    reports = Path(report_dir or "reports")
    targets = fleet_targets(contexts, fleet_file, kubeconfig)
    codes: dict[str, int] = {}
    for target in targets:
        folder = reports / target.name
        command = [sys.executable, "-m", "gpu_conformance", "run", "--backend", FLEET_BACKEND,
                   f"{REPORT_DIR_OPTION}={folder}", f"--junitxml={folder / 'junit.xml'}"]
        if target.kubeconfig:
            command.append(f"--kubeconfig={target.kubeconfig}")
        if target.context:
            command.append(f"--kube-context={target.context}")
        print(f"[gpu-conformance] fleet: validating {target.name} -> {folder}", flush=True)
        codes[target.name] = subprocess.run([*command, *args], env=os.environ.copy(),
                                            check=False).returncode
    merged = merge_summaries(reports, [t.name for t in targets], codes)
    for line in merged:
        print(f"[gpu-conformance] {line}", flush=True)
    return worst(codes.values())


def worst(codes: Iterable[int]) -> int:
    found = set(codes)
    for code in SEVERITY:
        if code in found:
            return int(code)
    return int(max(found)) if found else int(ExitCode.OK)


def merge_summaries(reports: Path, names: list[str], codes: dict[str, int]) -> list[str]:
    """Write the fleet's merged summary from each cluster's; one line per cluster."""
    from gpu_conformance import reports as render

    parts = []
    lines = []
    for name in names:
        path = reports / name / "summary.json"
        verdict = {0: "passed", 1: "FAILED", 6: "UNAVAILABLE"}.get(codes[name], f"exit {codes[name]}")
        lines.append(f"fleet: {name}: {verdict} (exit {codes[name]})")
        summary = None
        if path.is_file():
            try:
                summary = render.load_json(path.read_text())
            except (OSError, ValueError):
                summary = None
        if summary is None:
            now = render.now_iso()
            summary = render.Summary(clusters=[render.ClusterReport(
                name=name, backend="attach",
                error=f"no report: the run ended with exit {codes[name]} before writing one "
                      "(see its output above)")], started_at=now, finished_at=now)
        parts.append((name, summary))
    merged = render.merge(parts, command=" ".join(sys.argv))
    render.write(reports, merged, {}, _step_summary())
    lines.append(f"fleet: {merged.verdict}; merged summary in {reports / 'summary.md'}")
    return lines


def _step_summary() -> Path | None:
    value = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None
