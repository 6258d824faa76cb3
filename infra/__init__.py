"""The aimaas CDK app (AWS CDK v2, Python): stacks split by lifecycle, one stage per synthesis.

Public face: :func:`build_app` (used by ``app.py`` and the tests), :class:`InfraSettings`.
CDK constructs only; nothing here imports the runtime's heavy parts (FastAPI, ONNX Runtime).
The names load on first use, so the deploy tools (``infra.preflight``, ``infra.deploy``) run
without starting the CDK's JavaScript runtime.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FEATURE_FLAGS": "infra.assembly",
    "Stacks": "infra.assembly",
    "build_app": "infra.assembly",
    "InfraSettings": "infra.settings",
}

__all__ = ["FEATURE_FLAGS", "InfraSettings", "Stacks", "build_app"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'infra' has no attribute {name!r}")
