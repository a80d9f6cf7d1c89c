"""``python3 -m gpu_conformance.realnode``: drive a control plane and a real node by hand, or
from scripts/real_node_gpu_host.sh on a GPU host (standard library only).

    control-plane up|down  --work DIR [--programs-dir BIN]
    node up|down           --work DIR (--control-plane DIR | --kwok-kubeconfig FILE)
                           [--programs-dir BIN] [--gpu-mode fake|nvidia] [--fake-gpus N]
                           [--runtime runc|nvidia-cdi] [--cdi-dir DIR] [--image ARCHIVE]...
    gpu-images             --out DIR --programs-dir BIN [--driver-root DIR] [--nvcc PATH]
                           [--python PATH]
    check                  --work DIR --control-plane DIR [--programs-dir BIN] [--evidence DIR]
                           [--profile NAME]... [--expect-gpus N] [--device-name NAME]

Every program is looked up in --programs-dir first (one file per program, named as in
gpu_conformance.realnode.programs), then in the cache (building what is missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpu_conformance.errors import GpuConformanceError, one_line
from gpu_conformance.realnode.controlplane import ControlPlane, ControlPlaneSpec
from gpu_conformance.realnode.labels import gpu_labels
from gpu_conformance.realnode.node import ControlPlaneAccess, RealNode, RealNodeSpec


def _programs(folder: Path | None) -> dict[str, Path]:
    if folder is None:
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}


def _say(line: str) -> None:
    print(line, flush=True)


def _access(args: argparse.Namespace) -> ControlPlaneAccess:
    if args.kwok_kubeconfig:
        return ControlPlaneAccess.from_kwok_cluster(Path(args.kwok_kubeconfig))
    return ControlPlane(ControlPlaneSpec(Path(args.control_plane))).access()


def _node_spec(args: argparse.Namespace) -> RealNodeSpec:
    labels = gpu_labels(args.gpu_mode, args.fake_gpus, args.device_name,
                        str(_programs(args.programs_dir).get("nvidia-smi", "nvidia-smi")))
    labels.update(dict(label.split("=", 1) for label in args.label))
    return RealNodeSpec(
        work_dir=Path(args.work), node_name=args.node_name, gpu_mode=args.gpu_mode,
        fake_gpus=args.fake_gpus, device_name=args.device_name,
        container_runtime=args.runtime,
        cdi_spec_dirs=tuple(Path(d) for d in args.cdi_dir),
        image_archives=tuple(Path(i) for i in args.image),
        programs=_programs(args.programs_dir),
        labels=labels,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m gpu_conformance.realnode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    plane = sub.add_parser("control-plane")
    plane.add_argument("action", choices=["up", "down"])
    plane.add_argument("--work", required=True)
    plane.add_argument("--programs-dir", type=Path)

    node = sub.add_parser("node")
    node.add_argument("action", choices=["up", "down", "restart-kubelet"])
    node.add_argument("--work", required=True)
    node.add_argument("--control-plane")
    node.add_argument("--kwok-kubeconfig")
    node.add_argument("--programs-dir", type=Path)
    node.add_argument("--node-name", default="127.0.0.1")
    node.add_argument("--gpu-mode", choices=["fake", "nvidia"], default="fake")
    node.add_argument("--fake-gpus", type=int, default=2)
    node.add_argument("--device-name", default="Tesla T4")
    node.add_argument("--runtime", choices=["runc", "nvidia-cdi"], default="runc")
    node.add_argument("--cdi-dir", action="append", default=[])
    node.add_argument("--image", action="append", default=[])
    node.add_argument("--label", action="append", default=[])

    gpu = sub.add_parser("gpu-images")
    gpu.add_argument("--out", required=True, type=Path)
    gpu.add_argument("--programs-dir", type=Path, required=True)
    gpu.add_argument("--nvcc", type=Path)
    gpu.add_argument("--driver-root", type=Path, default=Path("/usr/local/nvidia"))
    gpu.add_argument("--python", type=Path)

    check = sub.add_parser("check")
    check.add_argument("--work", required=True)
    check.add_argument("--control-plane", required=True)
    check.add_argument("--programs-dir", type=Path)
    check.add_argument("--evidence", type=Path)
    check.add_argument("--node-name", default="127.0.0.1")
    check.add_argument("--profile", action="append", default=[])
    check.add_argument("--expect-gpus", type=int)
    check.add_argument("--device-name")
    check.add_argument("--manifest", type=Path)

    args = parser.parse_args(argv)
    try:
        if args.command == "control-plane":
            control = ControlPlane(ControlPlaneSpec(Path(args.work), programs=_programs(args.programs_dir)))
            if args.action == "up":
                print(control.up(_say).admin_kubeconfig)
            else:
                control.down(_say)
        elif args.command == "node":
            real = RealNode(_node_spec(args))
            if args.action == "up":
                real.up(_access(args), _say)
                print(json.dumps(real.timings))
            elif args.action == "restart-kubelet":
                real.restart_kubelet(_say)
            else:
                real.down(_say)
        elif args.command == "gpu-images":
            from gpu_conformance.realnode import gpu_images

            archives = gpu_images.build_gpu_host_images(
                _programs(args.programs_dir), args.out, driver_root=args.driver_root, nvcc=args.nvcc,
                python=args.python, log=_say)
            print("\n".join(str(a) for a in archives))
        else:
            from gpu_conformance.realnode import evidence as checks

            access = ControlPlane(ControlPlaneSpec(Path(args.control_plane))).access()
            report = checks.run_checks(
                access, _programs(args.programs_dir), node_name=args.node_name,
                profiles=args.profile, expect_gpus=args.expect_gpus, device_name=args.device_name,
                evidence_dir=args.evidence, work_dir=Path(args.work), manifest=args.manifest, log=_say)
            print(json.dumps(report["summary"], indent=2))
            return 0 if report["summary"]["passed"] else 1
    except GpuConformanceError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
