"""cdk.json sets every feature flag the CDK release recommends (the CLI has none to warn about),
and departs from a recommendation only where infra.assembly.FLAG_CHOICES says why."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(scope="module")
def report(synth: Any) -> dict[str, Any]:
    manifest = json.loads((synth(stage="dev").outdir / "manifest.json").read_text())
    (artifact,) = (
        a for a in manifest["artifacts"].values() if a["type"] == "cdk:feature-flag-report"
    )
    return artifact["properties"]["flags"]


def test_no_flag_is_left_to_a_default_unlike_its_recommendation(report: dict[str, Any]) -> None:
    unconfigured = [
        name
        for name, flag in report.items()
        if "userValue" not in flag
        and flag.get("unconfiguredBehavesLike", {}).get("v2") != flag["recommendedValue"]
    ]
    assert unconfigured == []


def test_departures_from_the_recommendation_are_the_documented_choices(
    report: dict[str, Any],
) -> None:
    from infra.assembly import FLAG_CHOICES

    departures = {
        name: flag["userValue"]
        for name, flag in report.items()
        if "userValue" in flag and flag["userValue"] != flag["recommendedValue"]
    }
    assert departures == {name: value for name, (value, _) in FLAG_CHOICES.items()}
