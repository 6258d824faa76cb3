"""Building into a registry: atomic install, fingerprints, skip and rebuild, failed gates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimaas.manifest import ModelManifest
from model_export.base import BuildContext
from model_export.registry import BUILD_INFO, build_one, fingerprint, verify_entry


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    return BuildContext(cache_dir=tmp_path / "cache")


def test_build_installs_a_valid_entry_then_skips(
    tmp_path: Path, ctx: BuildContext, tiny: type
) -> None:
    registry = tmp_path / "registry"
    first = build_one(tiny(), registry, ctx)
    assert first.status == "built" and isinstance(first.manifest, ModelManifest)
    entry = registry / "tiny-model" / "1.0.0"
    manifest = ModelManifest.model_validate_json((entry / "manifest.json").read_text())
    assert manifest.artifact.file == "model.onnx" and verify_entry(entry) == manifest
    assert json.loads((entry / BUILD_INFO).read_text())["fingerprint"] == fingerprint(tiny())
    assert not (registry / ".staging").exists()
    second = build_one(tiny(), registry, ctx)
    assert second.status == "skipped" and tiny.calls == ["tiny-model"]


def test_changed_config_or_force_or_tampering_rebuilds(
    tmp_path: Path, ctx: BuildContext, tiny: type
) -> None:
    registry = tmp_path / "registry"
    build_one(tiny(setting="a"), registry, ctx)
    assert fingerprint(tiny(setting="a")) != fingerprint(tiny(setting="b"))
    assert build_one(tiny(setting="b"), registry, ctx).status == "built"
    assert build_one(tiny(setting="b"), registry, ctx, force=True).status == "built"
    (registry / "tiny-model" / "1.0.0" / "labels.txt").write_text("tampered\n")
    with pytest.raises(ValueError, match="does not match"):
        verify_entry(registry / "tiny-model" / "1.0.0")
    assert build_one(tiny(setting="b"), registry, ctx).status == "built"
    assert len(tiny.calls) == 4


def test_failed_gate_writes_nothing_and_keeps_the_old_entry(
    tmp_path: Path, ctx: BuildContext, tiny: type
) -> None:
    registry = tmp_path / "registry"
    fresh = build_one(tiny(metric=5.0), registry, ctx)
    assert fresh.status == "failed" and "gate failed" in (fresh.error or "")
    assert not (registry / "tiny-model").exists() and not (registry / ".staging").exists()
    build_one(tiny(), registry, ctx)
    before = (registry / "tiny-model" / "1.0.0" / "manifest.json").read_bytes()
    assert build_one(tiny(metric=5.0, setting="new"), registry, ctx).status == "failed"
    assert (registry / "tiny-model" / "1.0.0" / "manifest.json").read_bytes() == before
