"""The README documents every option (with its env var and ini key) and every timeout."""

from __future__ import annotations

import pytest

from gpu_conformance import binaries, docs
from gpu_conformance.options import OPTIONS, Opt
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.timeouts import DEFAULTS

README = (REPO_ROOT / "README.md").read_text()


def test_generated_tables_are_current() -> None:
    assert docs.render(README) == README, "run `make docs` to regenerate the README's tables"


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.flag)
def test_option_is_documented_with_env_and_ini(opt: Opt) -> None:
    rows = [line for line in README.splitlines() if line.startswith(f"| `{opt.flag}`")]
    assert any(f"`{opt.env}`" in row and f"`{opt.ini}`" in row for row in rows), (
        f"{opt.flag} with {opt.env} / {opt.ini} missing from the README's options table")


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_timeout_is_documented_with_its_default(name: str) -> None:
    assert f"| `{name}` | {DEFAULTS[name].seconds:g} s |" in README


def test_pinned_versions_are_the_documented_ones() -> None:
    for version in (binaries.KUBERNETES_VERSION, binaries.ETCD_VERSION, binaries.KWOK_VERSION):
        assert version in README


def test_rbac_manifest_is_generated_from_the_permissions_table() -> None:
    from gpu_conformance.permissions import rbac_manifest

    assert (REPO_ROOT / docs.RBAC_FILE).read_text() == rbac_manifest(), "run `make docs`"
