"""The FastAPI application: routes, error shape, request ids, the dependency container.

Public face: :func:`create_app` and :class:`Container` / :func:`build_container`. The same app
serves the Lambda (through Mangum, ``functions/inference/handler.py``) and local mode
(``python -m aimaas_local serve``).
"""

from aimaas.api.app import create_app
from aimaas.api.container import Container, build_container

__all__ = ["Container", "build_container", "create_app"]
