"""Local mode: the same app with local adapters (a registry folder, SQLite keys and ledger).

``python -m aimaas_local serve`` creates (or reuses) a demo tenant and key, prints them with
example commands, and runs uvicorn. Public face: :func:`ensure_demo_key`, :func:`main`.
"""

from aimaas_local.cli import main
from aimaas_local.demo import DemoCredentials, ensure_demo_key

__all__ = ["DemoCredentials", "ensure_demo_key", "main"]
