"""The GPU inference server (SageMaker container contract) with dynamic batching.

Public face: :func:`create_app`, :class:`ServerSettings` and :func:`main` (the ``serve``
entry point). Execution targets live in :mod:`.engine`, loaded models and batching in
:mod:`.models`.
"""

from .invocations import create_app
from .server import main
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "main"]
