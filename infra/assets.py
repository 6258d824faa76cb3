"""Local staging of the zip assets (no Docker bundling): the shared-code Lambda layer.

A Python layer is unpacked under ``/opt``; ``/opt/python`` is on ``sys.path``. What goes in is
declared in ``layers/aimaas/layer.toml`` (the runtime core's packages under ``src/``; their
plans and stages travel inside as package data). The tree is copied at synth time into
``build/assets/`` (an ignored folder) and zipped by CDK from there.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from infra.settings import REPO_ROOT

LAYER_SPEC = REPO_ROOT / "layers" / "aimaas" / "layer.toml"
SOURCE_ROOT = REPO_ROOT / "src"
ASSETS_DIR = REPO_ROOT / "build" / "assets"


def stage_core_layer(
    destination: Path = ASSETS_DIR / "aimaas-layer",
    spec: Path = LAYER_SPEC,
    source_root: Path = SOURCE_ROOT,
) -> Path:
    """Copy the packages the layer spec names into a Lambda layer tree.

    Parameters
    ----------
    destination
        The layer root to (re)create; it ends up holding ``python/<package>/``.
    spec
        The layer's ``layer.toml``.
    source_root
        The folder holding the packages (``src/``).

    Returns
    -------
    Path
        ``destination``, ready for ``lambda_.Code.from_asset``.
    """
    layer = tomllib.loads(spec.read_text())["layer"]
    ignore = shutil.ignore_patterns(*layer.get("exclude", ()))
    # Rebuilt from scratch each synth so a deleted module never lingers in the layer.
    shutil.rmtree(destination, ignore_errors=True)
    for package in layer["packages"]:
        source = source_root / package
        if not (source / "__init__.py").is_file():
            raise FileNotFoundError(f"the layer's package {package!r} is missing at {source}")
        shutil.copytree(source, destination / "python" / package, ignore=ignore)
    return destination
