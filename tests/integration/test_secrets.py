"""Issue 10: credentials never reach the terminal, JUnit, reports or state files, even on a
failing run with diagnostics; private keys the project writes are readable by their owner
alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gpu_conformance.offline import OfflineCluster
from gpu_conformance.paths import REPO_ROOT


def test_canary_credentials_appear_nowhere(make_cluster: Callable[..., OfflineCluster],
                                           kubectl: Callable[..., Any], tmp_path: Path) -> None:
    cluster = make_cluster(gpu_nodes=1)
    kubectl(cluster, "create", "serviceaccount", "canary", "-n", "default")
    token = kubectl(cluster, "create", "token", "canary", "-n", "default").stdout.strip()
    password = "canary-password-7b1e0c"
    azure_secret = "canary-azure-secret-5d2f9a"
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    # client certificates authenticate; the token and password ride along as a leak would
    config["users"][0]["user"].update({"token": token, "password": password,
                                       "username": "canary-user"})
    kubeconfig = tmp_path / "canary.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    reports = tmp_path / "reports"
    junit = tmp_path / "junit.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO_ROOT / "pytest.ini"),
         f"--rootdir={REPO_ROOT}", f"--junitxml={junit}", "-p", "no:cacheprovider",
         "--backend", "attach", f"--kubeconfig={kubeconfig}", "--expect-gpu", "Tesla K80",
         f"--gpu-report-dir={reports}", "-v", str(REPO_ROOT / "suites")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "AZURE_CLIENT_SECRET": azure_secret,
             "GPU_CONFORMANCE_AKS_SUBSCRIPTION": "00000000-0000-0000-0000-000000000000"})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # the device check fails: diagnostics run
    assert "gpu-conformance diagnostics" in output
    texts = {"terminal": output, "junit": junit.read_text()}
    for path in reports.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    assert any("artifacts" in name for name in texts)
    for name, text in texts.items():
        for secret in (token, password, azure_secret):
            assert secret not in text, f"{secret[:12]}... leaked into {name}"


def test_private_keys_are_owner_only(offline_cluster: OfflineCluster) -> None:
    keys = [*(offline_cluster.kwok_dir / "pki").glob("*.key"), offline_cluster.kubeconfig]
    assert keys
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(offline_cluster.kwok_dir.stat().st_mode) == 0o700
