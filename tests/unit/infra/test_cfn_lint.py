"""cfn-lint on every synthesized template of every stage (dev, prod) and profile (aws,
localstack): no errors, and no warnings but those ``.cfnlintrc.yaml`` lists with a reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / ".cfnlintrc.yaml"
UPSTREAM = "http://127.0.0.1:8000"


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("profile", ["aws", "localstack"])
def test_templates_pass_cfn_lint(synth: Any, stage: str, profile: str) -> None:
    context = {"stage": stage, "profile": profile}
    if profile == "localstack":
        context["upstream_url"] = UPSTREAM
    _lint(synth(**context))


def test_templates_with_the_console_origin_pass_cfn_lint(synth: Any) -> None:
    """A stage whose API answers the console (CORS preflight, gateway error headers); the same
    context as tests/unit/infra/test_console.py, so it is synthesised once."""
    _lint(synth(stage="dev", console_origin="https://d111111abcdef8.cloudfront.net"))


def _lint(synthesized: Any) -> None:
    templates = sorted(synthesized.outdir.glob("*.template.json"))
    assert len(templates) == len(synthesized.templates)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("cfn-lint")),
            "--config-file",
            str(CONFIG),
            "--format",
            "parseable",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Exit 0: clean; 2 errors, 4 warnings, 8 informational (bit flags).
    assert result.returncode == 0, result.stdout + result.stderr
