"""Where the tests, benchmarks and scripts find what the repository builds.

One definition of the registry every test reads (``AIMAAS_REGISTRY``, else the repository's
``build/registry`` that ``make models`` fills), instead of one per test module.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository's root (this package lives in ``src/aimaas_testing``).
REPO_ROOT = Path(__file__).resolve().parents[2]


def registry_path() -> Path:
    """The model registry folder: ``AIMAAS_REGISTRY``, else ``<repo>/build/registry``."""
    return Path(os.environ.get("AIMAAS_REGISTRY", REPO_ROOT / "build" / "registry")).resolve()


#: :func:`registry_path` as read when the tests start.
REGISTRY = registry_path()


def has_model(name: str, registry: Path = REGISTRY) -> bool:
    """True when ``registry`` holds at least one built version of ``name``."""
    folder = registry / name
    return folder.is_dir() and any((p / "manifest.json").is_file() for p in folder.iterdir())
