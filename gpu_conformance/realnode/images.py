"""Container images without a registry: OCI image archives built from a list of files.

An archive is a tar of an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/``)
whose index names the image with ``io.containerd.image.name``, so
``ctr -n k8s.io images import ARCHIVE`` tags it as given. Output is deterministic: fixed
timestamps, owners and order, so the same files always give the same digests.

Standard library only: the GPU host builds its images with this module and a bare Python.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import platform
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, Protocol

from gpu_conformance.errors import UsageError

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
#: every timestamp in an image: layers, config "created", history
EPOCH = 0
EPOCH_TEXT = "1970-01-01T00:00:00Z"
CHUNK = 1 << 20
Compression = Literal["gzip", "none"]

_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_architecture() -> str:
    machine = platform.machine().lower()
    return _GO_ARCH.get(machine, machine)


@dataclass(frozen=True)
class Entry:
    """One thing in a layer. Exactly one of data / source / link_target / is_dir applies."""

    path: str
    data: bytes | None = None
    #: a file on this machine, copied into the layer when it is written
    source: Path | None = None
    link_target: str | None = None
    is_dir: bool = False
    mode: int | None = None

    def kind(self) -> str:
        if self.is_dir:
            return "dir"
        if self.link_target is not None:
            return "symlink"
        return "file"


def file(path: str, data: bytes | str, mode: int = 0o644) -> Entry:
    return Entry(path, data=data.encode() if isinstance(data, str) else data, mode=mode)


def executable(path: str, data: bytes) -> Entry:
    return Entry(path, data=data, mode=0o755)


def host_file(path: str, source: Path, mode: int | None = None) -> Entry:
    """A file copied from this machine (its mode kept unless ``mode`` is given)."""
    return Entry(path, source=source, mode=mode)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, link_target=target)


def directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, is_dir=True, mode=mode)


def host_tree(image_dir: str, source: Path, *, skip: Sequence[str] = ("__pycache__",)) -> list[Entry]:
    """A directory of this machine, recursively: files, directories and symlinks as they are."""
    entries = [directory(image_dir, 0o755)]
    for root, dirs, files in os.walk(source, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        rel_root = Path(root).relative_to(source)
        for name in [*dirs, *sorted(files)]:
            host_path = Path(root) / name
            image_path = str(PurePosixPath(image_dir) / rel_root / name)
            info = host_path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries.append(symlink(image_path, os.readlink(host_path)))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(directory(image_path, stat.S_IMODE(info.st_mode)))
            elif stat.S_ISREG(info.st_mode):
                entries.append(host_file(image_path, host_path))
    return entries


def normalize_reference(reference: str) -> str:
    """The full name containerd's CRI looks an image up by (docker.io/library/..., :latest)."""
    if not reference or reference != reference.strip() or any(c.isspace() for c in reference):
        raise UsageError(f"bad image reference {reference!r}")
    name, digest = reference, ""
    if "@" in name:
        name, digest = name.split("@", 1)
    first, _, rest = name.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}" if rest else f"docker.io/library/{name}"
    if name.startswith("docker.io/") and name.count("/") == 1:
        name = "docker.io/library/" + name.removeprefix("docker.io/")
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        name += ":latest"
    if not re.fullmatch(r"[a-z0-9][a-z0-9._:/-]*(:[\w][\w.-]{0,127})?", name):
        raise UsageError(f"bad image reference {reference!r}")
    return f"{name}@{digest}" if digest else name


@dataclass
class ImageSpec:
    """What to build: a name, layers (bottom first) and the image config."""

    reference: str
    layers: list[list[Entry]]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)
    architecture: str = field(default_factory=host_architecture)
    compression: Compression = "gzip"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class BuiltImage:
    """Where an archive was written and what it holds."""

    reference: str
    archive: Path
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]


class _Sink(Protocol):
    def write(self, data: Any, /) -> int: ...


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what passes through on its way to ``target``."""

    def __init__(self, target: _Sink) -> None:
        super().__init__()
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        self.target.write(view)
        return len(view)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _clean_path(path: str) -> str:
    pure = PurePosixPath("/" + path.lstrip("/"))
    if ".." in pure.parts:
        raise UsageError(f"image path {path!r} must not contain '..'")
    return str(pure).lstrip("/")


def _expanded(entries: Iterable[Entry]) -> list[Entry]:
    """Entries keyed by clean path (a later one wins), with every parent directory added."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        clean = _clean_path(entry.path)
        if not clean:
            continue
        by_path[clean] = Entry(clean, entry.data, entry.source, entry.link_target, entry.is_dir,
                               entry.mode)
    for clean in list(by_path):
        parent = PurePosixPath(clean).parent
        while str(parent) not in ("", "."):
            by_path.setdefault(str(parent), directory(str(parent)))
            parent = parent.parent
    return [by_path[key] for key in sorted(by_path)]


def _tar_info(entry: Entry) -> tuple[tarfile.TarInfo, IO[bytes] | None]:
    info = tarfile.TarInfo(entry.path)
    info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
    kind = entry.kind()
    if kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, entry.mode if entry.mode is not None else 0o755
        return info, None
    if kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.link_target or ""
        return info, None
    info.type = tarfile.REGTYPE
    if entry.source is not None:
        host = entry.source.stat()
        info.size = host.st_size
        info.mode = entry.mode if entry.mode is not None else stat.S_IMODE(host.st_mode)
        return info, entry.source.open("rb")
    data = entry.data or b""
    info.size, info.mode = len(data), entry.mode if entry.mode is not None else 0o644
    return info, io.BytesIO(data)


def write_layer(entries: Iterable[Entry], target: IO[bytes], compression: Compression
                ) -> tuple[Descriptor, str]:
    """Write one layer to ``target``: its descriptor and its diff ID (uncompressed digest)."""
    blob = _HashingWriter(target)
    with contextlib.ExitStack() as stack:
        if compression == "gzip":
            # mtime=0 and no file name: the gzip header is the same on every run
            compressed = stack.enter_context(
                gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6))
            raw = _HashingWriter(compressed)
        else:
            raw = blob
        with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in _expanded(entries):
                info, content = _tar_info(entry)
                try:
                    tar.addfile(info, content)
                finally:
                    if content is not None:
                        content.close()
        diff_id = raw.digest
    media = MEDIA_LAYER_GZIP if compression == "gzip" else MEDIA_LAYER
    return Descriptor(media, blob.digest, blob.size), diff_id


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), EPOCH, 0o644, "", ""
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = path.stat().st_size, EPOCH, 0o644, "", ""
    with path.open("rb") as handle:
        tar.addfile(info, handle)


def image_config(spec: ImageSpec, diff_ids: Sequence[str]) -> dict[str, Any]:
    config: dict[str, Any] = {"WorkingDir": spec.working_dir}
    if spec.entrypoint is not None:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd is not None:
        config["Cmd"] = list(spec.cmd)
    if spec.env:
        config["Env"] = [f"{k}={v}" for k, v in spec.env.items()]
    if spec.labels:
        config["Labels"] = dict(spec.labels)
    return {
        "architecture": spec.architecture,
        "os": "linux",
        "created": EPOCH_TEXT,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": EPOCH_TEXT, "created_by": "gpu_conformance.realnode.images"}
                    for _ in diff_ids],
    }


def build_archive(spec: ImageSpec, archive: Path) -> BuiltImage:
    """Write ``spec`` as an OCI layout tar at ``archive`` (atomically) and describe it."""
    if not spec.layers:
        raise UsageError(f"image {spec.reference}: at least one layer is needed")
    reference = normalize_reference(spec.reference)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".image-") as scratch:
        layer_files: list[tuple[Descriptor, Path]] = []
        diff_ids: list[str] = []
        for number, entries in enumerate(spec.layers):
            path = Path(scratch) / f"layer-{number}"
            with path.open("wb") as handle:
                descriptor, diff_id = write_layer(entries, handle, spec.compression)
            layer_files.append((descriptor, path))
            diff_ids.append(diff_id)
        config_bytes = _json_bytes(image_config(spec, diff_ids))
        config = Descriptor(MEDIA_CONFIG, _digest(config_bytes), len(config_bytes))
        manifest_bytes = _json_bytes({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.as_dict(),
            "layers": [d.as_dict() for d, _ in layer_files],
        })
        manifest = Descriptor(MEDIA_MANIFEST, _digest(manifest_bytes), len(manifest_bytes))
        tag = reference.rsplit(":", 1)[-1] if "@" not in reference else reference.rsplit("@", 1)[-1]
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{
                **manifest.as_dict(),
                "platform": {"architecture": spec.architecture, "os": "linux"},
                "annotations": {"io.containerd.image.name": reference,
                                "org.opencontainers.image.ref.name": tag},
            }],
        }
        partial = Path(scratch) / "archive.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
            _add_bytes(tar, "index.json", _json_bytes(index))
            written: set[str] = set()
            blobs: list[tuple[str, bytes | Path]] = [(config.digest, config_bytes),
                                                     (manifest.digest, manifest_bytes)]
            blobs += [(d.digest, p) for d, p in layer_files]
            for digest, content in blobs:
                name = "blobs/sha256/" + digest.removeprefix("sha256:")
                if name in written:
                    continue
                written.add(name)
                if isinstance(content, bytes):
                    _add_bytes(tar, name, content)
                else:
                    _add_file(tar, name, content)
        os.replace(partial, archive)
    return BuiltImage(reference, archive, manifest, config, tuple(d for d, _ in layer_files),
                      tuple(diff_ids))


@dataclass(frozen=True)
class ArchiveContents:
    """What :func:`read_archive` found: the parsed JSON documents and the blob digests."""

    index: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]
    blobs: dict[str, bytes]


def read_archive(archive: Path) -> ArchiveContents:
    """Parse an archive and verify every blob against its digest (for tests and checks)."""
    blobs: dict[str, bytes] = {}
    documents: dict[str, bytes] = {}
    with tarfile.open(archive, "r") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is None:
                continue
            data = handle.read()
            if member.name.startswith("blobs/sha256/"):
                digest = "sha256:" + member.name.rsplit("/", 1)[-1]
                if _digest(data) != digest:
                    raise UsageError(f"{archive}: blob {digest} does not match its content")
                blobs[digest] = data
            else:
                documents[member.name] = data
    index = json.loads(documents["index.json"])
    manifest = json.loads(blobs[index["manifests"][0]["digest"]])
    config = json.loads(blobs[manifest["config"]["digest"]])
    return ArchiveContents(index, manifest, config, blobs)


def layer_members(layer: bytes, media_type: str) -> Iterator[tarfile.TarInfo]:
    """The entries of one layer blob, in order."""
    raw = gzip.decompress(layer) if media_type.endswith("+gzip") else layer
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r") as tar:
        yield from tar.getmembers()
