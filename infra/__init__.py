"""The aimaas CDK app (AWS CDK v2, Python): stacks split by lifecycle, one stage per synthesis.

Public face: :func:`build_app` (used by ``app.py`` and the tests), :class:`InfraSettings`.
CDK constructs only; nothing here imports the runtime (FastAPI, ONNX Runtime).
"""

from infra.assembly import FEATURE_FLAGS, Stacks, build_app
from infra.settings import InfraSettings

__all__ = ["FEATURE_FLAGS", "InfraSettings", "Stacks", "build_app"]
