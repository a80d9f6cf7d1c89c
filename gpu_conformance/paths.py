"""Where the project's own files are: in a checkout, or inside the installed package.

A wheel carries the project's top-level files (pytest.ini, conftest.py, suites/, fixtures/,
manifests/, tools/*/go.mod) under gpu_conformance/_project/ (setup.py copies them there at
build time), so an installed gpu-conformance runs the same suites with the same configuration
as a checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
PACKAGED_PROJECT = PACKAGE_ROOT / "_project"


def in_checkout() -> bool:
    """True when running from a checkout (its pytest.ini and tools/ are beside the package)."""
    return (REPO_ROOT / "pytest.ini").is_file() and (REPO_ROOT / "tools").is_dir() and (
        REPO_ROOT / "suites").is_dir()


def project_dir() -> Path:
    """The folder holding pytest.ini, conftest.py, suites/, fixtures/, manifests/ and tools/."""
    return REPO_ROOT if in_checkout() or not PACKAGED_PROJECT.is_dir() else PACKAGED_PROJECT


def manifests_dir() -> Path:
    return project_dir() / "manifests"


def tools_dir() -> Path:
    return project_dir() / "tools"
