"""Build hook: the wheel carries the project's top-level files (pytest.ini, conftest.py,
suites/, fixtures/, manifests/, the pinned tools modules) under gpu_conformance/_project/, so
`pip install` gives a working `gpu-conformance run` without a checkout. Everything else about
the package is declared in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: (source, glob) pairs copied into gpu_conformance/_project/
PROJECT_FILES = (
    ("pytest.ini", ""), ("conftest.py", ""),
    ("suites", "*.py"), ("fixtures", "*.py"), ("manifests", "**/*.yaml"),
    ("tools", "*/go.mod"), ("tools", "*/go.sum"), ("tools", "*/*.go"), ("tools", "*/**/*.go"),
)


class BuildWithProject(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "gpu_conformance" / "_project"
        for source, pattern in PROJECT_FILES:
            paths = [HERE / source] if not pattern else sorted((HERE / source).glob(pattern))
            for path in paths:
                if path.is_file():
                    destination = target / path.relative_to(HERE)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, destination)


setup(cmdclass={"build_py": BuildWithProject})
