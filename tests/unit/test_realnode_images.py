"""The registry-free image builder: OCI archives whose digests hold together, built the same
way every time, named the way containerd's CRI looks images up."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from gpu_conformance.errors import UsageError
from gpu_conformance.realnode import images
from gpu_conformance.realnode.node_images import (
    DEVICE_PLUGIN_IMAGE,
    REFERENCE_DIR,
    REFERENCE_LOG,
    STANDIN,
    fake_gpu_images,
    fake_plugin_image,
)
from gpu_conformance.workloads import PROFILES


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def small_spec(**overrides: object) -> images.ImageSpec:
    spec = images.ImageSpec(
        "example.com/team/tool:v1",
        [[images.executable("/usr/bin/tool", b"\x7fELF fake"), images.file("/etc/tool/conf", "a=1\n"),
          images.symlink("/bin/tool", "/usr/bin/tool")],
         [images.file("/etc/tool/conf", "a=2\n", mode=0o600)]],
        entrypoint=["/usr/bin/tool"], cmd=["--serve"], env={"PATH": "/usr/bin", "MODE": "test"},
        labels={"purpose": "unit"},
    )
    for key, value in overrides.items():
        setattr(spec, key, value)
    return spec


def test_index_manifest_config_and_layers_reference_each_other_by_digest(tmp_path: Path) -> None:
    built = images.build_archive(small_spec(), tmp_path / "image.tar")
    found = images.read_archive(built.archive)  # verifies every blob against its name
    [entry] = found.index["manifests"]
    assert entry["digest"] == built.manifest.digest == sha(found.blobs[entry["digest"]])
    assert entry["size"] == len(found.blobs[entry["digest"]])
    assert entry["annotations"]["io.containerd.image.name"] == "example.com/team/tool:v1"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert entry["platform"] == {"architecture": images.host_architecture(), "os": "linux"}
    assert found.manifest["config"]["digest"] == built.config.digest
    assert found.manifest["config"]["mediaType"] == images.MEDIA_CONFIG
    diff_ids = []
    for layer in found.manifest["layers"]:
        blob = found.blobs[layer["digest"]]
        assert layer["size"] == len(blob) and layer["mediaType"] == images.MEDIA_LAYER_GZIP
        diff_ids.append(sha(gzip.decompress(blob)))
    assert found.config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert list(built.diff_ids) == diff_ids
    assert len(found.config["history"]) == 2


def test_the_config_carries_entrypoint_cmd_env_and_labels(tmp_path: Path) -> None:
    config = images.read_archive(images.build_archive(small_spec(), tmp_path / "i.tar").archive).config
    assert config["config"]["Entrypoint"] == ["/usr/bin/tool"]
    assert config["config"]["Cmd"] == ["--serve"]
    assert config["config"]["Env"] == ["PATH=/usr/bin", "MODE=test"]
    assert config["config"]["Labels"] == {"purpose": "unit"}
    assert config["os"] == "linux" and config["created"] == images.EPOCH_TEXT


def test_the_same_files_give_the_same_bytes(tmp_path: Path) -> None:
    first = images.build_archive(small_spec(), tmp_path / "a.tar")
    second = images.build_archive(small_spec(), tmp_path / "b.tar")
    assert first.manifest == second.manifest
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    changed = images.build_archive(small_spec(env={"MODE": "other"}), tmp_path / "c.tar")
    assert changed.config.digest != first.config.digest and changed.layers == first.layers


def test_layers_hold_parents_modes_links_and_fixed_owner_and_time(tmp_path: Path) -> None:
    found = images.read_archive(images.build_archive(small_spec(), tmp_path / "i.tar").archive)
    layer = found.manifest["layers"][0]
    members = {m.name: m for m in images.layer_members(found.blobs[layer["digest"]], layer["mediaType"])}
    assert list(members) == sorted(members)
    assert {"bin", "etc", "etc/tool", "usr", "usr/bin"} <= set(members)
    assert members["usr/bin"].isdir() and members["usr/bin"].mode == 0o755
    assert members["usr/bin/tool"].mode == 0o755 and members["etc/tool/conf"].mode == 0o644
    assert members["bin/tool"].issym() and members["bin/tool"].linkname == "/usr/bin/tool"
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())


def test_uncompressed_layers_use_the_plain_tar_media_type(tmp_path: Path) -> None:
    built = images.build_archive(small_spec(compression="none"), tmp_path / "i.tar")
    found = images.read_archive(built.archive)
    for layer in found.manifest["layers"]:
        assert layer["mediaType"] == images.MEDIA_LAYER
        assert layer["digest"] in found.config["rootfs"]["diff_ids"]


def test_host_files_and_trees_keep_content_mode_and_symlinks(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "run.sh").write_text("echo hi\n")
    os.chmod(tree / "sub" / "run.sh", 0o750)
    os.symlink("sub/run.sh", tree / "link")
    spec = images.ImageSpec("local/tree", [images.host_tree("/opt/tree", tree)])
    found = images.read_archive(images.build_archive(spec, tmp_path / "i.tar").archive)
    layer = found.manifest["layers"][0]
    blob = gzip.decompress(found.blobs[layer["digest"]])
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        member = tar.getmember("opt/tree/sub/run.sh")
        assert member.mode == 0o750
        handle = tar.extractfile(member)
        assert handle is not None and handle.read() == b"echo hi\n"
        assert tar.getmember("opt/tree/link").linkname == "sub/run.sh"


@pytest.mark.parametrize(("given", "normal"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("pytorch/pytorch:2.5.1-cuda12.4", "docker.io/pytorch/pytorch:2.5.1-cuda12.4"),
    ("docker.io/ubuntu:24.04", "docker.io/library/ubuntu:24.04"),
    ("nvcr.io/nvidia/k8s-device-plugin:v0.18.0", "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"),
    ("mcr.microsoft.com/azuredocs/tf-mnist:gpu", "mcr.microsoft.com/azuredocs/tf-mnist:gpu"),
    ("localhost/gpu-conformance/pause:3.10", "localhost/gpu-conformance/pause:3.10"),
    ("localhost:5000/team/app", "localhost:5000/team/app:latest"),
])
def test_references_are_normalized_as_the_cri_looks_them_up(given: str, normal: str) -> None:
    assert images.normalize_reference(given) == normal


@pytest.mark.parametrize("bad", ["", " busybox", "Upper/Case:1", "a b"])
def test_bad_references_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        images.normalize_reference(bad)


def test_paths_cannot_escape_the_image(tmp_path: Path) -> None:
    spec = images.ImageSpec("local/x", [[images.file("/etc/../../x", "no")]])
    with pytest.raises(UsageError, match=r"\.\."):
        images.build_archive(spec, tmp_path / "i.tar")


def test_the_archive_is_written_atomically_and_leaves_no_scratch(tmp_path: Path) -> None:
    images.build_archive(small_spec(), tmp_path / "out" / "i.tar")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["i.tar"]


def test_one_stand_in_image_per_image_name_carries_each_profiles_reference_log(tmp_path: Path) -> None:
    """Profiles sharing an image (nvidia-smi and gpu-health) get one image holding both logs:
    importing one per profile let the last one overwrite the other (seen: nvidia-smi's Job
    printed gpu-health's log on the real node)."""
    standin = tmp_path / "standin"
    standin.write_bytes(b"\x7fELF stand-in")
    programs = {"pause": standin, "fakegpu-device-plugin": standin, "standin": standin}
    specs = fake_gpu_images(programs, 2, "Tesla T4")[2:]
    references = [s.reference for s in specs]
    assert len(references) == len(set(references)) == len({p.image for p in PROFILES.values()})
    seen: set[str] = set()
    for spec in specs:
        found = images.read_archive(images.build_archive(spec, tmp_path / "i.tar").archive)
        assert found.index["manifests"][0]["annotations"]["io.containerd.image.name"] == \
            images.normalize_reference(spec.reference)
        layer = found.manifest["layers"][0]
        blob = gzip.decompress(found.blobs[layer["digest"]])
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for profile in PROFILES.values():
                if profile.image != spec.reference:
                    continue
                handle = tar.extractfile(f"{REFERENCE_DIR}/{profile.name}.log".lstrip("/"))
                assert handle is not None
                expected = (profile.reference_log("Tesla T4", 2) if profile.all_gpus
                            else profile.reference_log("Tesla T4"))
                assert handle.read().decode() == expected
                seen.add(profile.name)
            assert tar.extractfile(REFERENCE_LOG.lstrip("/")) is not None
            assert tar.getmember("bin/sh").linkname == STANDIN
        assert found.config["config"]["Entrypoint"] == [STANDIN]
    assert seen == set(PROFILES)


def test_the_fake_plugin_image_is_the_manifests_image_with_its_settings_in_env(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.write_bytes(b"\x7fELF plugin")
    spec = fake_plugin_image(plugin, 4, "NVIDIA H200")
    found = images.read_archive(images.build_archive(spec, tmp_path / "p.tar").archive)
    assert found.index["manifests"][0]["annotations"]["io.containerd.image.name"] == DEVICE_PLUGIN_IMAGE
    env = dict(item.split("=", 1) for item in found.config["config"]["Env"])
    assert env["FAKE_GPU_COUNT"] == "4" and env["FAKE_GPU_NAME"] == "NVIDIA H200"
    assert json.dumps(found.config).count("nvidia-device-plugin") >= 1


def test_images_built_on_a_gpu_host_carry_the_system_libraries_the_driver_loads(tmp_path: Path) -> None:
    """NVML is dlopen()ed by the plugin: its own NEEDED libraries must be in the image (the
    H200 host's first run: the plugin image had only the plugin's libc, NVML failed to load
    and the plugin said "Incompatible strategy detected auto")."""
    from gpu_conformance.realnode.gpu_images import driver_dependencies

    system_lib = Path("/lib/x86_64-linux-gnu/libm.so.6")
    if not system_lib.exists():
        pytest.skip("no /lib/x86_64-linux-gnu/libm.so.6 to stand in for NVML")
    (tmp_path / "lib64").mkdir()
    nvml = tmp_path / "lib64" / "libnvidia-ml.so.1"
    nvml.write_bytes(system_lib.read_bytes())
    paths = [e.path for e in driver_dependencies(tmp_path)]
    assert any(p.endswith("/libc.so.6") for p in paths)
    assert not any(p.startswith(str(tmp_path)) for p in paths)
    assert driver_dependencies(tmp_path / "missing") == []
