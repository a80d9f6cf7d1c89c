"""What the real node changes on its host, and how each change is undone: processes, mounts,
cgroups, a network link, sysctls. Standard library only (ctypes for umount2, a netlink
socket for deleting the bridge), since the GPU host has neither ``ip`` nor Python packages."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path

Log = Callable[[str], None]

CGROUP_ROOT = Path("/sys/fs/cgroup")
MNT_DETACH = 2
#: what a kubelet at its defaults sets (pkg/kubelet/cm/container_manager_linux.go
#: setupKernelTunables), plus what the bridge plugin may switch on
KERNEL_TUNABLES = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
)


CAP_SYS_RESOURCE = 24


def has_capability(number: int) -> bool:
    """Whether this process holds a capability (bit ``number`` of CapEff)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> number & 1)
    return False


# --- cgroups ------------------------------------------------------------------------------
def cgroup_v2() -> bool:
    """True on a unified (v2-only) hierarchy; False on v1 and on hybrid v1+v2 hosts."""
    return (CGROUP_ROOT / "cgroup.controllers").is_file()


def v1_hierarchies() -> list[Path]:
    """Mount points of the v1 hierarchies (one per controller set), from /proc/self/mounts."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup":
            found.append(Path(fields[1]))
    return found


def cgroup_dirs(relative: str) -> list[Path]:
    """The directories of one cgroup path in every hierarchy the kubelet uses."""
    rel = relative.strip("/")
    if cgroup_v2():
        return [CGROUP_ROOT / rel]
    return [mount / rel for mount in v1_hierarchies()]


V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")


def create_cgroup_root(relative: str) -> list[Path]:
    """Create the kubelet's --cgroup-root (it must exist) with the controllers it needs."""
    dirs = cgroup_dirs(relative)
    if cgroup_v2():
        available = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
        wanted = " ".join(f"+{c}" for c in V2_CONTROLLERS if c in available)
        parent = CGROUP_ROOT
        for part in relative.strip("/").split("/"):
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text(wanted)
            parent = parent / part
            parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text(wanted)
        return dirs
    for path in dirs:
        path.mkdir(parents=True, exist_ok=True)
        if path.parent.name != "" and (path / "cpuset.cpus").exists():
            # a new v1 cpuset is empty: no task can join it until cpus and mems are set
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (path / name).read_text().strip():
                    (path / name).write_text((path.parent / name).read_text())
    return dirs


def cgroup_pids(top: Path) -> list[int]:
    pids: list[int] = []
    if not top.is_dir():
        return pids
    for root, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids += [int(p) for p in (Path(root) / "cgroup.procs").read_text().split()]
    return pids


def kill_cgroup_tree(relative: str, timeout: float, log: Log) -> None:
    """SIGKILL every process in the cgroup tree (containers, pause) until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = sorted({p for d in cgroup_dirs(relative) for p in cgroup_pids(d)})
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            log(f"processes {pids[:10]} are still in cgroup {relative} after {timeout:g}s")
            return
        time.sleep(0.2)


def remove_cgroup_tree(relative: str, timeout: float, log: Log) -> None:
    """rmdir the tree bottom-up in every hierarchy (a cgroup goes once its tasks are gone)."""
    deadline = time.monotonic() + timeout
    for top in cgroup_dirs(relative):
        while top.is_dir():
            for root, dirs, _files in os.walk(top, topdown=False):
                for name in dirs:
                    with contextlib.suppress(OSError):
                        os.rmdir(Path(root) / name)
            with contextlib.suppress(OSError):
                os.rmdir(top)
            if not top.is_dir():
                break
            if time.monotonic() > deadline:
                log(f"cgroup {top} could not be removed within {timeout:g}s")
                break
            time.sleep(0.2)


# --- processes ----------------------------------------------------------------------------
def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


#: the programs a node or control plane starts; nothing else is ever stopped by marker
OUR_PROGRAMS = frozenset({
    "kubelet", "containerd", "containerd-shim-runc-v2", "runc", "nvidia-container-runtime",
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube",
})


def _ancestors() -> set[int]:
    found, pid = set(), os.getpid()
    while pid > 1:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
    return found


def processes_mentioning(markers: Iterable[str]) -> list[int]:
    """Live processes of OUR_PROGRAMS whose arguments contain one of ``markers`` (our paths):
    never a shell or a test runner that merely mentions the path, never an ancestor of ours."""
    wanted = [m for m in markers if m]
    skip = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) not in OUR_PROGRAMS:
            continue
        if any(m in arg for arg in argv[1:] for m in wanted) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def stop(pids: list[int], timeout: float, log: Log, what: str) -> None:
    """SIGTERM, wait (bounded), SIGKILL what is left; reap it when it is our child."""
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pids)
        if not any(alive(p) for p in pids):
            return
        time.sleep(0.1)
    for pid in [p for p in pids if alive(p)]:
        log(f"{what} (pid {pid}) ignored SIGTERM for {timeout:g}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    _reap(pids)


def _reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


# --- mounts -------------------------------------------------------------------------------
def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts_under(prefixes: Iterable[Path]) -> list[str]:
    """Mount points at or below any prefix, deepest first."""
    roots = [str(p.resolve() if p.exists() else p).rstrip("/") for p in prefixes]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point == r or point.startswith(r + "/") for r in roots):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def unmount_all(prefixes: Iterable[Path], log: Log) -> None:
    libc = _libc()
    for _attempt in range(5):
        points = mounts_under(prefixes)
        if not points:
            return
        for point in points:
            if libc.umount2(point.encode(), 0) != 0:
                code = ctypes.get_errno()
                if code not in (errno.EINVAL, errno.ENOENT) and libc.umount2(point.encode(), MNT_DETACH) != 0:
                    log(f"cannot unmount {point}: {os.strerror(ctypes.get_errno())}")
    left = mounts_under(prefixes)
    if left:
        log(f"still mounted: {', '.join(left[:5])}")


# --- network ------------------------------------------------------------------------------
def socket_listening(path: Path) -> bool:
    """Something accepts connections on the Unix socket ``path``. A socket file left by a
    process that was killed (a kubelet's ``device-plugins/kubelet.sock``) refuses them."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_link(name: str) -> bool:
    """``ip link delete NAME`` over rtnetlink; False when there was no such link."""
    if not link_exists(name):
        return False
    rtm_dellink, nlm_f_request, nlm_f_ack, ifla_ifname = 17, 1, 4, 3
    payload = name.encode() + b"\0"
    attr = struct.pack("HH", 4 + len(payload), ifla_ifname) + payload
    attr += b"\0" * ((4 - len(attr) % 4) % 4)
    ifinfo = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    body = ifinfo + attr
    header = struct.pack("IHHII", 16 + len(body), rtm_dellink, nlm_f_request | nlm_f_ack, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:  # NETLINK_ROUTE
        sock.bind((0, 0))
        sock.settimeout(5)
        sock.send(header + body)
        reply = sock.recv(65536)
    _length, kind, _flags, _seq, _pid = struct.unpack("IHHII", reply[:16])
    if kind == 2:  # NLMSG_ERROR: code 0 is the ACK
        code = struct.unpack("i", reply[16:20])[0]
        if code not in (0, -errno.ENODEV):
            raise OSError(-code, f"deleting link {name}: {os.strerror(-code)}")
    return True


# --- sysctls ------------------------------------------------------------------------------
def read_sysctls(names: Iterable[str] = KERNEL_TUNABLES) -> dict[str, str]:
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = (Path("/proc/sys") / name).read_text().strip()
    return values


def restore_sysctls(values: dict[str, str], log: Log) -> None:
    for name, value in values.items():
        path = Path("/proc/sys") / name
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as exc:
            log(f"cannot restore {name}={value}: {exc.strerror}")
