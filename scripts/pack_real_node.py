"""Pack the real node's programs for a GPU host reached through 64 MiB calls.

    python scripts/pack_real_node.py [--out .gpu-conformance/real-node-pack] [--chunk-mib 55]

Builds (or finds in the cache) every program a control plane plus a real GPU node needs, puts
them in one tar (``bin/<program>``; the five Kubernetes programs as one multi-call ``kube``
with symlinks), compresses it with ``xz -6`` and splits the result into parts of at most
``--chunk-mib`` MiB, next to ``MANIFEST.json`` (part and file sha256s, versions). The folder
is git-ignored: carry ``MANIFEST.json`` and one part per call, in order;
scripts/real_node_gpu_host.sh ``receive`` reassembles them in /tmp on the host.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_conformance import binaries
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.realnode import programs

DEFAULT_OUT = REPO_ROOT / ".gpu-conformance" / "real-node-pack"
FAMILIES = ("kube-multicall", "containerd", "runc", "cni-plugins", "nodekit", "fakegpu",
            "nvidia-device-plugin", "nvidia-container-toolkit")
SKIP = {"BUILD-INFO", "ptp", "portmap"}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def collect() -> dict[str, Path]:
    found = {name: path for name, path in programs.ensure(FAMILIES).items() if name not in SKIP}
    etcd = binaries.find("etcd") or binaries.ensure()["etcd"]
    found["etcd"] = etcd
    return dict(sorted(found.items()))


def write_tar(files: dict[str, Path], target: Path) -> None:
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in files.items():
            info = tar.gettarinfo(str(path), arcname=f"bin/{name}")
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o755
            with path.open("rb") as handle:
                tar.addfile(info, handle)
        for alias in programs.MULTICALL_NAMES:
            link = tarfile.TarInfo(f"bin/{alias}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "kube", 0o777
            tar.addfile(link, io.BytesIO(b""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--chunk-mib", type=int, default=55)
    parser.add_argument("--level", default="6", help="xz preset (default 6)")
    args = parser.parse_args()
    xz = shutil.which("xz")
    if xz is None:
        print("xz is missing (apt-get install xz-utils)", file=sys.stderr)
        return 1
    files = collect()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("part-*"):
        old.unlink()
    tar_path = args.out / "real-node-bin.tar"
    write_tar(files, tar_path)
    started = time.monotonic()
    packed = args.out / "real-node-bin.tar.xz"
    subprocess.run([xz, f"-{args.level}", "-T0", "-f", "-k", str(tar_path)], check=True)
    print(f"xz -{args.level}: {tar_path.stat().st_size / 1e6:.1f} MB -> {packed.stat().st_size / 1e6:.1f} MB "
          f"in {time.monotonic() - started:.0f}s")
    chunk = args.chunk_mib << 20
    parts = []
    with packed.open("rb") as handle:
        for number in range(1, 1000):
            data = handle.read(chunk)
            if not data:
                break
            part = args.out / f"part-{number:02d}"
            part.write_bytes(data)
            parts.append({"name": part.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {
        "archive_sha256": sha256(packed),
        "parts": parts,
        "files": {name: {"size": path.stat().st_size, "sha256": sha256(path)}
                  for name, path in files.items()},
        "multicall": list(programs.MULTICALL_NAMES),
        "versions": {f.name: f.version for f in programs.FAMILIES if f.name in FAMILIES}
        | {"etcd": binaries.ETCD_VERSION},
    }
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    tar_path.unlink()
    packed.unlink()
    rel = args.out.relative_to(REPO_ROOT) if args.out.is_relative_to(REPO_ROOT) else args.out
    print(f"{len(parts)} part(s) in {rel}:")
    for number, part in enumerate(parts, 1):
        print(f"  call {number}: carry {rel}/MANIFEST.json {rel}/{part['name']} "
              f"({part['size'] / 1048576:.1f} MiB), run: scripts/real_node_gpu_host.sh receive")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
