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


class MissingModelsError(FileNotFoundError):
    """The stage serves models that the registry does not hold (run ``make models``)."""


def require_models(registry: Path, names: tuple[str, ...], stage: str) -> None:
    """Refuse to synthesise a stage whose models are not exported yet.

    Synthesis only copies the image context; without this check a clean clone synthesises and
    the image build fails at deploy time (or an endpoint starts without its models).

    Parameters
    ----------
    registry
        The exported registry (``<name>/<version>/manifest.json``).
    names
        The models the stage serves.
    stage
        For the message.

    Raises
    ------
    MissingModelsError
        Naming every missing model and the command that builds them.
    """
    missing = [name for name in names if not any(registry.glob(f"{name}/*/manifest.json"))]
    if missing:
        raise MissingModelsError(
            f"stage {stage!r} serves {', '.join(missing)}, missing from {registry}: build the "
            f"models first with `make models` (`make deploy STAGE={stage}` does it for you)"
        )


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
