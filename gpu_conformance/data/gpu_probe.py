"""GPU probe for the ``torch`` workload profile: find the GPU, check it computes, train on it.

Shipped to the cluster in a ConfigMap and run with the PyTorch image's ``python``. It needs
nothing but PyTorch and downloads nothing: its training data is generated here, from a fixed
seed, so the same accuracy curve appears on every healthy GPU.

Output (parsed by gpu_conformance.workloads.torch_probe):
  name: <device> major: X minor: Y ...     one line per visible GPU, the seed's TF format
  Accuracy at step N: 0.xxxx                every ``--every`` steps, on held-out samples
  gpu-probe: PASSED: ...                    last line on success (exit 0)
  gpu-probe: FAILED: <reason>               last line on failure (exit 1, 2 or 3)
Exit status: 0 passed; 1 wrong results or low accuracy; 2 no usable GPU; 3 no PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any

EXIT_BAD_RESULT = 1
EXIT_NO_GPU = 2
EXIT_NO_TORCH = 3
PREFIX = "gpu-probe:"


def say(text: str) -> None:
    print(text, flush=True)


def fail(reason: str, code: int) -> int:
    say(f"{PREFIX} FAILED: {reason}")
    return code


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="training steps (default 500)")
    parser.add_argument("--every", type=int, default=10, help="report accuracy every N steps")
    parser.add_argument("--min-accuracy", type=float, default=0.9,
                        help="final held-out accuracy needed to pass (default 0.9)")
    parser.add_argument("--signal", type=float, default=0.15,
                        help="class separation of the generated data (default 0.15)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def describe_devices(torch: Any) -> list[str]:
    names = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        say(f"Found device {index} with properties:")
        say(f"name: {props.name} major: {props.major} minor: {props.minor} "
            f"multiProcessorCount: {props.multi_processor_count} "
            f"totalMemory: {props.total_memory / 2**30:.2f}GiB")
        names.append(str(props.name))
    return names


def check_matmul(torch: Any, device: Any, generator: Any) -> float:
    """Largest relative difference between a matmul done on the GPU and on the CPU."""
    a = torch.randn(512, 512, generator=generator)
    b = torch.randn(512, 512, generator=generator)
    expected = a @ b
    got = (a.to(device) @ b.to(device)).cpu()
    return float(((got - expected).abs().max() / expected.abs().max()).item())


def make_data(torch: Any, generator: Any, signal: float, n: int) -> tuple[Any, Any, Any]:
    """Ten classes of 784 features (an MNIST-sized input): a class prototype plus noise."""
    features, classes = 784, 10
    prototypes = torch.randint(0, 2, (classes, features), generator=generator).float() * 2 - 1
    labels = torch.randint(0, classes, (n,), generator=generator)
    inputs = prototypes[labels] * signal + torch.randn(n, features, generator=generator)
    return inputs, labels, prototypes


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError as exc:
        return fail(f"PyTorch is not installed in this image ({exc})", EXIT_NO_TORCH)
    cuda_version = getattr(torch.version, "cuda", None)
    say(f"{PREFIX} torch {torch.__version__}, built for CUDA {cuda_version}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}")
    if not cuda_version:
        return fail(f"this PyTorch build ({torch.__version__}) has no CUDA support", EXIT_NO_GPU)
    try:
        available = bool(torch.cuda.is_available())
        count = int(torch.cuda.device_count()) if available else 0
    except RuntimeError as exc:
        return fail(f"CUDA initialisation failed: {exc}", EXIT_NO_GPU)
    if not available or count == 0:
        return fail("no usable CUDA GPU: torch.cuda.is_available() is False "
                    "(no GPU given to the container, or no NVIDIA driver on the node)", EXIT_NO_GPU)
    say(f"{PREFIX} {count} CUDA device(s) visible")
    names = describe_devices(torch)
    device = torch.device("cuda:0")

    generator = torch.Generator().manual_seed(args.seed)
    error = check_matmul(torch, device, generator)
    if not error < 1e-2:
        return fail(f"a 512x512 matmul on {device} differs from the CPU's "
                    f"(relative error {error:.3g})", EXIT_BAD_RESULT)
    say(f"{PREFIX} matmul on {device} matches the CPU (relative error {error:.1e})")

    inputs, labels, _ = make_data(torch, generator, args.signal, 12000)
    train_x, train_y = inputs[:10000].to(device), labels[:10000].to(device)
    test_x, test_y = inputs[10000:].to(device), labels[10000:].to(device)
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    say(f"{PREFIX} training a 784-128-10 classifier on {device} "
        f"({len(train_y)} generated samples, {args.steps} steps of 100)")

    accuracy, step = 0.0, 0
    train_started = time.monotonic()
    for step in range(args.steps):
        if step % args.every == 0:
            with torch.no_grad():
                predicted = model(test_x).argmax(dim=1)
                accuracy = float((predicted == test_y).float().mean().item())
            say(f"Accuracy at step {step}: {accuracy:.4f}")
        batch = torch.randint(0, len(train_y), (100,), device=device)
        optimizer.zero_grad()
        loss = loss_fn(model(train_x[batch]), train_y[batch])
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(dim=1) == test_y).float().mean().item())
    torch.cuda.synchronize()
    train_s = time.monotonic() - train_started
    say(f"Accuracy at step {args.steps}: {accuracy:.4f}")
    total_s = time.monotonic() - started
    if accuracy < args.min_accuracy:
        return fail(f"accuracy {accuracy:.4f} after {args.steps} steps is below "
                    f"{args.min_accuracy} on {names[0]}", EXIT_BAD_RESULT)
    say(f"{PREFIX} PASSED: accuracy {accuracy:.4f} after {args.steps} steps on {names[0]} "
        f"(training {train_s:.2f} s, total {total_s:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
