"""The real CLI synthesises offline, and the copied image context stays small."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CDK = REPO / "node_modules" / ".bin" / "cdk"
# What must never travel into cdk.out (or a docker build context).
NEVER_COPIED = (".venv", "node_modules", "cdk.out", "tests", ".git", "build/cache", ".aimaas")


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.slow
def test_cdk_cli_synth_offline_and_lean_assets(tmp_path: Path) -> None:
    if not CDK.exists():
        pytest.skip("node_modules/.bin/cdk missing: run `npm ci` (make test does)")
    if not (REPO / "functions" / "inference" / "Dockerfile").is_file():
        pytest.skip("functions/inference/Dockerfile does not exist yet")
    if not any((REPO / "build" / "registry").glob("*/*/manifest.json")):
        pytest.skip("build/registry is empty: synthesis needs the stage's models (make models)")
    env = {
        **os.environ,
        "CDK_DISABLE_VERSION_CHECK": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        # Any attempt to reach the network fails fast instead of hanging.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "-o", str(tmp_path), "-c", "stage=dev"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # cdk.json sets every recommended flag: the CLI has nothing to warn about.
    assert "feature flags are not configured" not in result.stdout + result.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    stacks = {
        k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"
    }
    assert stacks == {
        "aimaas-dev-storage",
        "aimaas-dev-serving",
        "aimaas-dev-api",
        "aimaas-dev-observability",
        "aimaas-dev-console",
    }

    assets = {p: _size(p) for p in tmp_path.glob("asset.*") if p.is_dir()}
    image_contexts = [p for p in assets if (p / "functions" / "inference" / "Dockerfile").is_file()]
    assert len(image_contexts) == 1  # both model groups share one image asset
    context = image_contexts[0]
    for name in NEVER_COPIED:
        assert not (context / name).exists(), name
    registry = REPO / "build" / "registry"
    budget = (_size(registry) if registry.is_dir() else 0) + 20 * 2**20
    total = sum(assets.values())
    print(f"cdk.out assets: {total / 2**20:.1f} MiB (image context {assets[context] / 2**20:.1f})")
    assert total <= budget, f"assets {total} bytes exceed registry + 20 MiB ({budget})"
