"""Issue 11: an installed gpu-conformance runs the suites from any directory, with no checkout,
no Go and no binary built (attach builds nothing).

The wheel is built from this checkout and installed (without its dependencies, which come
from the project's virtualenv through a .pth file: no network) into a fresh virtualenv
outside the checkout; the run happens in an empty directory, with Go off PATH and an empty
binary cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from gpu_conformance.offline import OfflineCluster
from gpu_conformance.paths import REPO_ROOT


def _build_wheel(tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp), str(REPO_ROOT)], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = tmp.glob("gpu_conformance-*.whl")
    return wheel


def test_wheel_carries_the_project_files(tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(_build_wheel(tmp_path)).namelist())
    for needed in ("gpu_conformance/_project/pytest.ini", "gpu_conformance/_project/conftest.py",
                   "gpu_conformance/_project/suites/test_capacity.py",
                   "gpu_conformance/_project/fixtures/workload.py",
                   "gpu_conformance/_project/manifests/current/nvidia-device-plugin.yaml",
                   "gpu_conformance/_project/manifests/incluster/rbac.yaml",
                   "gpu_conformance/_project/tools/kube/go.mod",
                   "gpu_conformance/data/reference_logs/h200-torch.txt"):
        assert needed in names, needed
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(_build_wheel(tmp_path / "again")).read(entry_points).decode()
    assert "[pytest11]" in text and "gpu_conformance.pytest_plugin" in text


def test_installed_wheel_runs_attach_from_anywhere(offline_cluster: OfflineCluster,
                                                  tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True).stdout.strip())
    # dependencies from the project's virtualenv, never the network
    (site / "project-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                    "--no-index", "--quiet", str(wheel)], check=True, timeout=300)
    work = tmp_path / "anywhere"
    work.mkdir()
    cache = tmp_path / "empty-cache"
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not (Path(p) / "go").exists())
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{path}",
           "GPU_CONFORMANCE_CACHE": str(cache), "GPU_CONFORMANCE_STATE": str(tmp_path / "state")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(venv / "bin" / "gpu-conformance"), "run", "--backend", "attach",
         f"--kubeconfig={offline_cluster.kubeconfig}", "-p", "no:randomly"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert f"rootdir: {site / 'gpu_conformance' / '_project'}" in output, output[:2000]
    assert (work / "reports" / "junit.xml").is_file()
    assert (work / "reports" / "summary.md").read_text().startswith("## GPU conformance: PASSED")
    assert (work / ".pytest_cache").is_dir()  # --lf works where the user runs
    assert not cache.exists() or not any(cache.iterdir())  # nothing built, nothing fetched
    assert str(REPO_ROOT / "gpu_conformance") not in output  # the installed copy ran
    assert "Warning" not in output, output[-3000:]
