"""Every exported model can be billed: plans.toml prices it in the unit its manifest counts."""

from __future__ import annotations

import json

import pytest

from aimaas.manifest import ModelManifest
from aimaas.plans import UNIT_CONVERSIONS, load_catalog
from aimaas_testing.paths import REGISTRY


def manifests() -> list[ModelManifest]:
    paths = sorted(REGISTRY.glob("*/*/manifest.json"))
    return [ModelManifest.model_validate(json.loads(p.read_text())) for p in paths]


@pytest.mark.skipif(not manifests(), reason="no model registry (make models)")
def test_every_model_has_a_price_in_its_billing_unit() -> None:
    catalog = load_catalog()
    for manifest in manifests():
        price = catalog.list_price(manifest.task, manifest.name)
        unit = manifest.billing_unit
        if manifest.task in catalog.token_prices:
            # A language model counts tokens; a call is recorded as its tokens' charge.
            charge = catalog.token_charge(manifest.task, input_tokens=1, output_tokens=1)
            assert charge > 0, manifest.model_id
            unit = price.unit
            for plan in catalog.plans:
                assert catalog.price(manifest.task, manifest.name, charge, plan, unit) > 0
            continue
        assert unit == price.unit or (unit, price.unit) in UNIT_CONVERSIONS, manifest.model_id
        for plan in catalog.plans:
            assert catalog.price(manifest.task, manifest.name, 1, plan, unit) > 0
