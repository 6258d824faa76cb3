"""The ``serve`` entry script's CUDA forward-compatibility decision."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SERVE = Path(__file__).resolve().parents[3] / "functions" / "gpu_server" / "serve"


@pytest.fixture(scope="module")
def serve() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gpu_serve_script", str(SERVE))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)  # top level only: __main__ is not run
    return module


def test_driver_major_reads_proc_text(serve: ModuleType) -> None:
    text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 2024\n"
    assert serve.driver_major(text) == 535
    open_module = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release"
    assert serve.driver_major(open_module) == 580
    assert serve.driver_major("nonsense") is None


def _compat(tmp_path: Path, version: str) -> Path:
    folder = tmp_path / "compat"
    folder.mkdir()
    (folder / f"libcuda.so.{version}").write_bytes(b"")
    os.symlink(f"libcuda.so.{version}", folder / "libcuda.so.1")
    return folder


@pytest.mark.parametrize(
    ("host", "wanted"), [("535.183.01", True), ("580.95.05", False), ("590.10.01", False)]
)
def test_compat_only_for_an_older_host_driver(
    serve: ModuleType, tmp_path: Path, host: str, wanted: bool
) -> None:
    compat = _compat(tmp_path, "580.95.05")
    proc = tmp_path / "version"
    proc.write_text(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {host}  Tue\n")
    assert serve.needs_compat(compat, proc) is wanted


def test_no_driver_or_no_compat_library_means_nothing_to_do(
    serve: ModuleType, tmp_path: Path
) -> None:
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.239.06  Wed\n")
    assert serve.needs_compat(tmp_path / "missing", proc) is False
    assert serve.needs_compat(_compat(tmp_path, "580.95.05"), tmp_path / "no-proc") is False


def test_the_script_prints_its_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SERVE), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--port" in result.stdout
