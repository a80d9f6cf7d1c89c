"""The in-cluster Job and CronJob run as the least-privilege account with valid options."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gpu_conformance import options
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.permissions import ACCOUNT, NAMESPACE
from gpu_conformance.settings import Settings

INCLUSTER = REPO_ROOT / "manifests" / "incluster"


def _options(args: list[str]) -> dict[str, Any]:
    given: dict[str, Any] = {}
    tokens = iter(args)
    for token in tokens:
        flag, eq, value = token.partition("=")
        given[flag.lstrip("-")] = value if eq else next(tokens)
    return given


@pytest.mark.parametrize("name", ["job.yaml", "cronjob.yaml"])
def test_incluster_run_uses_the_account_and_valid_options(name: str) -> None:
    doc = yaml.safe_load((INCLUSTER / name).read_text())
    job = doc["spec"] if doc["kind"] == "Job" else doc["spec"]["jobTemplate"]["spec"]
    spec = job["spec"]["template"]["spec"] if "spec" in job and "template" not in job else \
        job["template"]["spec"]
    assert spec["serviceAccountName"] == ACCOUNT and doc["metadata"]["namespace"] == NAMESPACE
    given = _options(spec["containers"][0]["args"])
    assert given.pop("junitxml") == "/reports/junit.xml"
    settings = Settings.from_values(options.from_mapping(given))
    assert settings.backend == "attach" and str(settings.report_dir) == "/reports"
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert {"/reports", "/work", "/tmp"} <= mounts  # the root filesystem is read-only
