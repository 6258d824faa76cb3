"""Local staging of the zip assets (no Docker bundling): the shared-code Lambda layer.

A Python layer is unpacked under ``/opt``; ``/opt/python`` is on ``sys.path``, and
``aimaas.config`` looks for its TOML files in ``python/aimaas/config/`` beside the code. So the
layer tree is ``python/aimaas/**`` plus ``python/aimaas/config/*.toml``, copied at synth time into
``build/assets/`` (an ignored folder) and zipped by CDK from there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.settings import CONFIG_DIR, REPO_ROOT

LAYER_SOURCE = REPO_ROOT / "layers" / "aimaas" / "python" / "aimaas"
ASSETS_DIR = REPO_ROOT / "build" / "assets"

# Byte-code and caches differ per machine and would change the asset hash for nothing.
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")


def stage_core_layer(
    destination: Path = ASSETS_DIR / "aimaas-layer",
    source: Path = LAYER_SOURCE,
    config_dir: Path = CONFIG_DIR,
) -> Path:
    """Copy the runtime core and its configuration into a Lambda layer tree.

    Parameters
    ----------
    destination
        The layer root to (re)create; it ends up holding ``python/aimaas/``.
    source
        The ``aimaas`` package folder.
    config_dir
        The folder of ``*.toml`` files shipped as ``python/aimaas/config/``.

    Returns
    -------
    Path
        ``destination``, ready for ``lambda_.Code.from_asset``.
    """
    if not (source / "__init__.py").is_file():
        raise FileNotFoundError(f"the aimaas core package is missing at {source}")
    # Rebuilt from scratch each synth so a deleted module never lingers in the layer.
    shutil.rmtree(destination, ignore_errors=True)
    package = destination / "python" / "aimaas"
    shutil.copytree(source, package, ignore=_IGNORED)
    shipped_config = package / "config"
    shipped_config.mkdir(exist_ok=True)
    for toml in sorted(config_dir.glob("*.toml")):
        shutil.copy2(toml, shipped_config / toml.name)
    return destination
