"""Real output captured on GPU hosts, read from the one place each file is kept.

Logs the offline cluster serves as reference logs live in the package
(gpu_conformance/data/reference_logs/, README there); everything else in tests/data/captures/.
"""

from __future__ import annotations

from pathlib import Path

from gpu_conformance.paths import PACKAGE_ROOT

REFERENCE_LOGS = PACKAGE_ROOT / "data" / "reference_logs"
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"


def capture_path(name: str) -> Path:
    for folder in (REFERENCE_LOGS, CAPTURES):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no capture named {name} in {REFERENCE_LOGS} or {CAPTURES}")


def read_capture(name: str) -> str:
    return capture_path(name).read_text()
