"""The FastAPI application: routes, error shape, request ids, the dependency container.

Public face: :func:`create_app` and :class:`Container` / :func:`build_container`. The same app
serves the Lambda (through Mangum, ``functions/inference/inference_handler.py``) and local mode
(``python -m aimaas_local serve``).
"""

from aimaas.api.container import Container, build_container
from aimaas.api.factory import create_app

__all__ = ["Container", "build_container", "create_app"]
