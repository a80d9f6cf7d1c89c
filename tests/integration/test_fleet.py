"""Issue 11: a fleet (several clusters) validated in one invocation; one broken cluster does
not stop the healthy one, each has its own JUnit file and summary, and a merged summary says
which cluster failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gpu_conformance.offline import OfflineCluster


def _merged_kubeconfig(clusters: dict[str, OfflineCluster], path: Path) -> Path:
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                              "contexts": [], "current-context": next(iter(clusters))}
    for context, cluster in clusters.items():
        data = yaml.safe_load(cluster.kubeconfig.read_text())
        merged["clusters"].append({"name": context, "cluster": data["clusters"][0]["cluster"]})
        merged["users"].append({"name": context, "user": data["users"][0]["user"]})
        merged["contexts"].append({"name": context,
                                   "context": {"cluster": context, "user": context}})
    path.write_text(yaml.safe_dump(merged))
    return path


def test_two_clusters_one_broken(make_cluster: Callable[..., OfflineCluster],
                                 kubectl: Callable[..., Any], tmp_path: Path) -> None:
    healthy = make_cluster(gpu_nodes=1)
    broken = make_cluster(gpu_nodes=2, gpus_per_node=2, unhealthy={"aks-gpu-00000001": 1})
    kubeconfig = _merged_kubeconfig({"east": healthy, "west": broken}, tmp_path / "fleet.kubeconfig")
    result = subprocess.run(
        [sys.executable, "-m", "gpu_conformance", "run", f"--kubeconfig={kubeconfig}",
         "--kube-context", "east,west", "-p", "no:randomly", "--gpu-timeout", "gpu-settle=3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "GPU_CONFORMANCE_STATE": str(tmp_path / "state")})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "fleet: east: passed (exit 0)" in output and "fleet: west: FAILED (exit 1)" in output
    reports = tmp_path / "reports"
    for name in ("east", "west"):
        assert (reports / name / "junit.xml").is_file()
    assert (reports / "east" / "summary.md").read_text().startswith("## GPU conformance: PASSED")
    assert (reports / "west" / "summary.md").read_text().startswith("## GPU conformance: FAILED")
    merged = json.loads((reports / "summary.json").read_text())
    verdicts = {c["name"]: c for c in merged["clusters"]}
    assert set(verdicts) == {healthy.spec.name, broken.spec.name} or len(verdicts) == 2
    text = (reports / "summary.md").read_text()
    assert text.startswith("## GPU conformance: FAILED")
    assert "aks-gpu-00000001" in text and "allocatable nvidia.com/gpu 1 < capacity 2" in text
