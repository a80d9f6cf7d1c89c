"""Where the project's own files are: in a checkout, or inside the installed package."""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def in_checkout() -> bool:
    """True when running from a checkout (its pytest.ini and tools/ are beside the package)."""
    return (REPO_ROOT / "pytest.ini").is_file() and (REPO_ROOT / "tools").is_dir()


def manifests_dir() -> Path:
    """The shipped manifests: the checkout's manifests/, or their copy inside the package."""
    packaged = PACKAGE_ROOT / "_project" / "manifests"
    return REPO_ROOT / "manifests" if in_checkout() or not packaged.is_dir() else packaged
