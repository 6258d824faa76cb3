"""Synthesise the CDK app once per context and share the templates across the infra tests.

jsii start-up costs seconds, so each distinct context is synthesised once per session; asset
staging is disabled here (the real CLI run in test_cli_synth.py copies the assets).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
UPSTREAM = "http://127.0.0.1:8000"


@dataclass
class Synth:
    """One synthesised app: templates by stack name, the assembly folder, the built stacks."""

    templates: dict[str, Any]  # stack name -> aws_cdk.assertions.Template
    outdir: Path
    stacks: Any

    def template(self, suffix: str) -> Any:
        """The template of the stack whose name ends with ``-<suffix>``."""
        matches = [name for name in self.templates if name.endswith(f"-{suffix}")]
        assert len(matches) == 1, f"no single stack *-{suffix} in {sorted(self.templates)}"
        return self.templates[matches[0]]

    def json(self, suffix: str) -> dict[str, Any]:
        return self.template(suffix).to_json()

    def resources(self, suffix: str, type_name: str) -> dict[str, dict[str, Any]]:
        """``{logical id: resource}`` of one CloudFormation type in one stack."""
        template = self.json(suffix)
        return {k: v for k, v in template["Resources"].items() if v["Type"] == type_name}

    def all_resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        """``{stack/logical id: resource}`` of one type across every stack."""
        found = {}
        for name, template in self.templates.items():
            for k, v in template.to_json()["Resources"].items():
                if v["Type"] == type_name:
                    found[f"{name}/{k}"] = v
        return found

    def report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


def require_inference_image() -> None:
    """The AWS profile builds the serving image from the serving engineer's Dockerfile."""
    if not (REPO / "functions" / "inference" / "Dockerfile").is_file():
        pytest.skip("functions/inference/Dockerfile does not exist yet")


@pytest.fixture(scope="session")
def registry_with_stage_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry folder holding a manifest for every model the deployable stages serve.

    Synthesis refuses a stage whose models are not exported (tests/unit/infra/test_registry.py);
    the templates do not depend on the models' contents, so the template tests need only their
    presence, not a model build.
    """
    from aimaas.config import StageConfig, load_toml

    root = tmp_path_factory.mktemp("registry")
    for stage in load_toml("stages.toml")["stages"]:
        config = StageConfig.load(stage)
        for name in {*config.default_models.values(), *config.gpu_models}:
            (root / name / "1.0.0").mkdir(parents=True, exist_ok=True)
            (root / name / "1.0.0" / "manifest.json").write_text("{}")
    return root


@pytest.fixture(scope="session")
def synth(
    tmp_path_factory: pytest.TempPathFactory, registry_with_stage_models: Path
) -> Callable[..., Synth]:
    """``synth(stage=..., profile=..., **context)`` -> :class:`Synth`, cached per context."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra import FEATURE_FLAGS, build_app

    cache: dict[tuple[tuple[str, str], ...], Synth] = {}

    def run(**context: str) -> Synth:
        context.setdefault("registry", str(registry_with_stage_models))
        if context.get("profile", "aws") == "aws":
            require_inference_image()
        key = tuple(sorted(context.items()))
        if key not in cache:
            outdir = tmp_path_factory.mktemp("cdk")
            app = cdk.App(
                outdir=str(outdir),
                context={
                    **FEATURE_FLAGS,
                    "aws:cdk:disable-asset-staging": True,
                    **context,
                },
            )
            stacks = build_app(app)
            app.synth()  # cdk-nag runs here; any unacknowledged finding raises
            cache[key] = Synth(
                {s.stack_name: Template.from_stack(s) for s in stacks.all}, outdir, stacks
            )
        return cache[key]

    return run
