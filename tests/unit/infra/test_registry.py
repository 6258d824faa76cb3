"""Synthesis fails, with a clear message, when a model the stage serves is not exported: the
image bakes the stage's CPU models in and a GPU stage publishes its GPU models, so a clean clone
must not synthesise (or deploy) a stage without them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.assets import MissingModelsError
from infra.settings import InfraSettings

REPO = Path(__file__).resolve().parents[3]


def _build(**context: str) -> None:
    import aws_cdk as cdk

    from infra import FEATURE_FLAGS, build_app

    app = cdk.App(context={**FEATURE_FLAGS, "aws:cdk:disable-asset-staging": True, **context})
    build_app(app, nag=False)


def test_a_stage_with_a_missing_model_does_not_synthesise(
    tmp_path: Path, registry_with_stage_models: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(registry_with_stage_models, registry)
    shutil.rmtree(registry / "mobilenet-v2")
    with pytest.raises(MissingModelsError, match=r"'dev' serves mobilenet-v2, missing from .*"):
        _build(stage="dev", registry=str(registry))
    # The GPU models count only where the stage has the GPU.
    shutil.rmtree(registry / "all-minilm-l6-v2")
    shutil.copytree(registry_with_stage_models / "mobilenet-v2", registry / "mobilenet-v2")
    _build(stage="dev", registry=str(registry))
    with pytest.raises(MissingModelsError, match="all-minilm-l6-v2,"):
        _build(stage="prod", registry=str(registry))


def test_the_cli_says_what_to_run(tmp_path: Path) -> None:
    """``python app.py`` (what ``cdk synth`` runs) exits 1 with one line, not a traceback."""
    env = {
        **os.environ,
        "CDK_OUTDIR": str(tmp_path / "out"),
        "CDK_CONTEXT_JSON": '{"stage": "dev", "registry": "%s"}' % (tmp_path / "empty"),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "missing from" in result.stderr and "make models" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_image_gets_the_stages_cpu_models(synth: Any) -> None:
    cpu = InfraSettings.from_context({"stage": "dev"}).cpu_models
    assert cpu  # the stage file names its default models
    assets = synth(stage="dev").outdir / "aimaas-dev-serving.assets.json"
    (image,) = json.loads(assets.read_text())["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {"MODELS": " ".join(cpu)}
