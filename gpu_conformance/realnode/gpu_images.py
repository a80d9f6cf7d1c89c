"""Images built ON a GPU host, from what that host has: no registry, no Docker.

- the NVIDIA device plugin image: our build of k8s-device-plugin v0.18.0 (cgo, dynamic glibc)
  with the host's glibc, tagged as the manifest's image. Like NVIDIA's image it sets
  NVIDIA_VISIBLE_DEVICES=all, so the NVIDIA runtime (CDI mode) gives it the driver's NVML
  and the device nodes; nothing of the driver is baked in.
- ``nvidia-smi``: a shell and glibc only; nvidia-smi and the driver libraries arrive through
  CDI, as they do with the NVIDIA runtime in the real CUDA base image.
- ``cuda-vectoradd``: NVIDIA's vectorAdd sample rewritten to print the sample's lines,
  compiled here with nvcc (static cudart); libcuda comes through CDI.
- ``torch`` (optional, GBs): the host's python3 and its torch installation.

The profiles' commands run ``/bin/sh -c ...`` or ``python``: the host's dash and python are
copied with the shared libraries ``ldd`` names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from gpu_conformance.errors import ClusterError
from gpu_conformance.realnode import images
from gpu_conformance.realnode.node_images import DEVICE_PLUGIN_IMAGE
from gpu_conformance.workloads import PROFILES

PATH = "/usr/local/nvidia/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: where CDI puts the driver's libraries when the driver root is /usr/local/nvidia (its
#: lib64 becomes /lib64) and where they are with a driver root of /
LD_LIBRARY_PATH = ("/lib64:/usr/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:"
                   "/lib/x86_64-linux-gnu")
LABEL = "io.gpu-conformance.gpu-host"

VECTOR_ADD_CU = r"""
// vectorAdd as in NVIDIA's cuda-samples (Samples/0_Introduction/vectorAdd): same
// computation, same output lines, so the cuda-vectoradd profile's parser judges it alike.
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cuda_runtime.h>

__global__ void vectorAdd(const float *A, const float *B, float *C, int numElements) {
  int i = blockDim.x * blockIdx.x + threadIdx.x;
  if (i < numElements) C[i] = A[i] + B[i] + 0.0f;
}

static void check(cudaError_t err, const char *what) {
  if (err != cudaSuccess) {
    fprintf(stderr, "Failed to %s (error code %s)!\n", what, cudaGetErrorString(err));
    exit(EXIT_FAILURE);
  }
}

int main(void) {
  int numElements = 50000;
  size_t size = numElements * sizeof(float);
  printf("[Vector addition of %d elements]\n", numElements);
  float *h_A = (float *)malloc(size), *h_B = (float *)malloc(size), *h_C = (float *)malloc(size);
  for (int i = 0; i < numElements; ++i) {
    h_A[i] = rand() / (float)RAND_MAX;
    h_B[i] = rand() / (float)RAND_MAX;
  }
  float *d_A = NULL, *d_B = NULL, *d_C = NULL;
  check(cudaMalloc((void **)&d_A, size), "allocate device vector A");
  check(cudaMalloc((void **)&d_B, size), "allocate device vector B");
  check(cudaMalloc((void **)&d_C, size), "allocate device vector C");
  printf("Copy input data from the host memory to the CUDA device\n");
  check(cudaMemcpy(d_A, h_A, size, cudaMemcpyHostToDevice), "copy vector A from host to device");
  check(cudaMemcpy(d_B, h_B, size, cudaMemcpyHostToDevice), "copy vector B from host to device");
  int threadsPerBlock = 256;
  int blocksPerGrid = (numElements + threadsPerBlock - 1) / threadsPerBlock;
  printf("CUDA kernel launch with %d blocks of %d threads\n", blocksPerGrid, threadsPerBlock);
  vectorAdd<<<blocksPerGrid, threadsPerBlock>>>(d_A, d_B, d_C, numElements);
  check(cudaGetLastError(), "launch vectorAdd kernel");
  printf("Copy output data from the CUDA device to the host memory\n");
  check(cudaMemcpy(h_C, d_C, size, cudaMemcpyDeviceToHost), "copy vector C from device to host");
  for (int i = 0; i < numElements; ++i) {
    if (fabs(h_A[i] + h_B[i] - h_C[i]) > 1e-5) {
      fprintf(stderr, "Result verification failed at element %d!\n", i);
      exit(EXIT_FAILURE);
    }
  }
  printf("Test PASSED\n");
  check(cudaFree(d_A), "free device vector A");
  check(cudaFree(d_B), "free device vector B");
  check(cudaFree(d_C), "free device vector C");
  free(h_A); free(h_B); free(h_C);
  printf("Done\n");
  return 0;
}
"""


#: the driver's own libraries come through CDI, never from the image
DRIVER_LIBRARY_PREFIXES = ("libcuda.", "libnvidia-", "libnvcuvid.", "libnvoptix.")


def shared_libraries(binaries: Iterable[Path], *, strict: bool = True) -> list[Path]:
    """The shared libraries (and the ELF interpreter) ``ldd`` lists for the binaries, less
    the driver's."""
    ldd = shutil.which("ldd")
    if not ldd:
        raise ClusterError("ldd is missing: cannot find the shared libraries to copy into images")
    found: dict[str, Path] = {}
    for binary in binaries:
        run = subprocess.run([ldd, str(binary)], capture_output=True, text=True, timeout=30, check=False)
        if run.returncode != 0 and "not a dynamic executable" in (run.stdout + run.stderr):
            continue
        for line in run.stdout.splitlines():
            parts = line.split()
            if "=>" in parts:
                target = parts[parts.index("=>") + 1]
                if target.startswith("/"):
                    found[target] = Path(target)
            elif parts and parts[0].startswith("/"):
                found[parts[0]] = Path(parts[0])
            if "not found" in line and strict:
                raise ClusterError(f"{binary}: {line.strip()}")
    return [p for p in found.values() if not p.name.startswith(DRIVER_LIBRARY_PREFIXES)]


def _library_entries(binaries: Iterable[Path], *, strict: bool = True) -> list[images.Entry]:
    """Each library at the path the loader asks for, as a regular file (symlinks followed)."""
    return [images.host_file(str(lib), lib.resolve(), 0o755)
            for lib in shared_libraries(binaries, strict=strict)]


def driver_soname_links(driver_root: Path) -> list[images.Entry]:
    """The driver's SONAME links (libnvidia-ml.so.1 -> libnvidia-ml.so.580.x, libcuda.so.1,
    ...) at the paths CDI mounts the libraries to (host path less the driver root). They
    dangle in the image and resolve once CDI mounts the driver's files; without them NVML
    and libcuda are found only if the spec's update-ldcache hook ran ldconfig."""
    links: list[images.Entry] = []
    for sub in ("lib64", "lib", "usr/lib64", "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"):
        folder = driver_root / sub
        if not folder.is_dir() or folder.is_symlink():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_symlink() and path.name.startswith(DRIVER_LIBRARY_PREFIXES) and ".so." in path.name:
                target = Path(str(path.readlink()))
                if not target.is_absolute() and "/" not in str(target):
                    inside = "/" + str(path.relative_to(driver_root))
                    links.append(images.symlink(inside, str(target)))
    return links


#: the driver's user-space entry points: what they load from the system (libm, libdl,
#: librt, libpthread, ...) must be in every image, as it is in NVIDIA's Ubuntu-based ones
DRIVER_ENTRY_POINTS = ("lib64/libnvidia-ml.so.1", "lib64/libcuda.so.1", "bin/nvidia-smi",
                       "lib/libnvidia-ml.so.1", "lib/libcuda.so.1")


def driver_dependencies(driver_root: Path) -> list[images.Entry]:
    """The system libraries the driver's NVML, libcuda and nvidia-smi need (ldd), less the
    driver's own (CDI mounts those). Without them dlopen("libnvidia-ml.so.1") fails in a
    minimal image and NVIDIA's plugin reports "Incompatible strategy detected auto" (seen on
    the H200 host: its binary links only libc)."""
    found = [driver_root / p for p in DRIVER_ENTRY_POINTS if (driver_root / p).exists()]
    return [e for e in _library_entries(found, strict=False)
            if not e.path.startswith(str(driver_root))]


def _base_entries() -> list[images.Entry]:
    return [images.directory("/tmp", 0o1777), images.directory("/etc/ld.so.conf.d"),
            images.file("/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n"),
            images.file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            images.file("/etc/group", "root:x:0:\n"), images.directory("/lib64"),
            images.directory("/usr/lib64"), images.directory("/dev")]


def _shell_entries() -> list[images.Entry]:
    sh = Path(shutil.which("dash") or shutil.which("sh") or "/bin/sh").resolve()
    return [images.host_file("/bin/sh", sh, 0o755), images.symlink("/usr/bin/sh", "/bin/sh"),
            *_library_entries([sh])]


def device_plugin_image(plugin: Path, driver_links: list[images.Entry],
                        reference: str = DEVICE_PLUGIN_IMAGE) -> images.ImageSpec:
    entries = [*_base_entries(), *driver_links,
               images.host_file("/usr/bin/nvidia-device-plugin", plugin, 0o755),
               *_library_entries([plugin])]
    return images.ImageSpec(
        reference, [entries], entrypoint=["nvidia-device-plugin"],
        env={"PATH": PATH, "LD_LIBRARY_PATH": LD_LIBRARY_PATH, "NVIDIA_VISIBLE_DEVICES": "all",
             "NVIDIA_DRIVER_CAPABILITIES": "utility", "NVIDIA_DISABLE_REQUIRE": "true"},
        labels={LABEL: "nvidia-device-plugin"})


def nvidia_smi_image(driver_links: list[images.Entry]) -> images.ImageSpec:
    profile = PROFILES["nvidia-smi"]
    return images.ImageSpec(
        profile.image, [[*_base_entries(), *driver_links, *_shell_entries()]], cmd=["/bin/sh"],
        env={"PATH": PATH, "LD_LIBRARY_PATH": LD_LIBRARY_PATH, "NVIDIA_VISIBLE_DEVICES": "void",
             "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
        labels={LABEL: profile.name})


def compile_vector_add(nvcc: Path, out: Path) -> Path:
    """nvcc with the static CUDA runtime: the binary needs only glibc, libstdc++ and libcuda."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "vectorAdd.cu"
        source.write_text(VECTOR_ADD_CU)
        errors = []
        for arch in ("-arch=native", "-arch=sm_90", "-arch=all-major"):
            run = subprocess.run([str(nvcc), "-O2", "-cudart", "static", arch, "-o", str(out), str(source)],
                                 capture_output=True, text=True, timeout=600, check=False)
            if run.returncode == 0:
                return out
            errors.append(f"{arch}: {(run.stderr or run.stdout).strip()[-200:]}")
    raise ClusterError("nvcc could not build vectorAdd: " + " | ".join(errors))


def cuda_vectoradd_image(vector_add: Path, driver_links: list[images.Entry]) -> images.ImageSpec:
    profile = PROFILES["cuda-vectoradd"]
    entries = [*_base_entries(), *driver_links, *_shell_entries(),
               images.host_file("/cuda-samples/vectorAdd", vector_add, 0o755),
               *_library_entries([vector_add])]
    return images.ImageSpec(
        profile.image, [entries], cmd=["/cuda-samples/vectorAdd"],
        env={"PATH": PATH, "LD_LIBRARY_PATH": LD_LIBRARY_PATH, "NVIDIA_VISIBLE_DEVICES": "void",
             "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
        labels={LABEL: profile.name})


def _python_paths(python: Path) -> list[Path]:
    run = subprocess.run([str(python), "-c", "import sys, json; print(json.dumps(sys.path[1:]))"],
                         capture_output=True, text=True, timeout=60, check=True)
    return [Path(p) for p in json.loads(run.stdout) if p and Path(p).is_dir()]


def torch_image(python: Path, driver_links: list[images.Entry]) -> images.ImageSpec:
    """The host's interpreter, its standard library and every package directory on its
    sys.path (torch and its CUDA wheels included): several GB, stored uncompressed."""
    real = python.resolve()
    layers: list[list[images.Entry]] = [[*_base_entries(), *driver_links, *_shell_entries(),
                                         images.host_file(str(real), real, 0o755),
                                         images.symlink("/usr/bin/python", str(real)),
                                         images.symlink("/usr/bin/python3", str(real)),
                                         *_library_entries([real])]]
    extensions: list[Path] = []
    for folder in _python_paths(real):
        layers.append(images.host_tree(str(folder), folder))
        extensions += sorted(folder.glob("lib-dynload/*.so"))
        extensions += sorted((folder / "torch" / "lib").glob("*.so*"))
        extensions += sorted((folder / "torch").glob("_C*.so"))
    # what the standard library's extension modules and torch's own libraries load from the
    # system (libssl, libffi, libstdc++, ...)
    layers[0] += _library_entries(extensions, strict=False)
    profile = PROFILES["torch"]
    return images.ImageSpec(
        profile.image, layers, cmd=[str(real)],
        env={"PATH": PATH, "LD_LIBRARY_PATH": LD_LIBRARY_PATH, "NVIDIA_VISIBLE_DEVICES": "void",
             "NVIDIA_DRIVER_CAPABILITIES": "compute,utility", "PYTHONUNBUFFERED": "1"},
        labels={LABEL: profile.name}, compression="none")


def build_gpu_host_images(programs: dict[str, Path], out_dir: Path, *, driver_root: Path,
                          nvcc: Path | None, python: Path | None,
                          log: Callable[[str], None] = print) -> list[Path]:
    """Build every image this host can make; returns the archives (for RealNodeSpec)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    links = driver_soname_links(driver_root)
    log(f"driver SONAME links for the images: {', '.join(e.path for e in links) or 'none found'}")
    needed = driver_dependencies(driver_root)
    log(f"system libraries the driver needs: {', '.join(e.path for e in needed) or 'none found'}")
    links += needed
    specs = [device_plugin_image(programs["nvidia-device-plugin"], links), nvidia_smi_image(links)]
    if nvcc is not None:
        specs.append(cuda_vectoradd_image(compile_vector_add(nvcc, out_dir / "vectorAdd"), links))
    if python is not None:
        specs.append(torch_image(python, links))
    archives = []
    for number, spec in enumerate(specs):
        built = images.build_archive(spec, out_dir / f"gpu-{number:02d}.tar")
        size = built.archive.stat().st_size / 1e6
        log(f"built image {built.reference} ({size:.1f} MB)")
        archives.append(built.archive)
    return archives

