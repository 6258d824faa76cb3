"""Plan changes under AWS's rule: an API key may be in one usage plan per API stage.

moto accepts a key in two usage plans of the same stage; this fake refuses it as AWS does
(ConflictException), and can fail one call to check the restore.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from aimaas.plans import usage_plan_name
from aimaas_admin.provisioner import ApiGatewayProvisioner

PLANS = {"free": "up-free", "pro": "up-pro", "enterprise": "up-ent"}


def _error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Op")


class StrictApiGateway:
    """Usage-plan membership with AWS's one-plan-per-stage rule (all plans on one stage)."""

    def __init__(self, fail_on: tuple[str, str] | None = None) -> None:
        self.members: dict[str, set[str]] = {plan_id: set() for plan_id in PLANS.values()}
        self.fail_on = fail_on  # (usage plan id, key id) whose create_usage_plan_key fails
        self.calls: list[tuple[str, str, str]] = []

    def get_paginator(self, name: str) -> Any:
        assert name == "get_usage_plans"
        items = [{"id": i, "name": usage_plan_name("dev", p)} for p, i in PLANS.items()]

        class Pages:
            def paginate(self) -> list[dict[str, Any]]:
                return [{"items": items}]

        return Pages()

    def create_usage_plan_key(self, *, usagePlanId: str, keyId: str, keyType: str) -> None:
        self.calls.append(("add", usagePlanId, keyId))
        if (usagePlanId, keyId) == self.fail_on:
            self.fail_on = None
            raise _error("TooManyRequestsException", "Rate exceeded")
        if any(keyId in keys for keys in self.members.values()):
            raise _error(
                "ConflictException",
                f"Usage Plan {usagePlanId} cannot be added because API Key {keyId} cannot "
                "reference multiple Usage Plans with the same API Stage",
            )
        self.members[usagePlanId].add(keyId)

    def delete_usage_plan_key(self, *, usagePlanId: str, keyId: str) -> None:
        self.calls.append(("remove", usagePlanId, keyId))
        if keyId not in self.members[usagePlanId]:
            raise _error("NotFoundException", "Invalid API Key identifier specified")
        self.members[usagePlanId].discard(keyId)


def test_plan_change_leaves_the_old_plan_before_joining_the_new() -> None:
    gateway = StrictApiGateway()
    gateway.members["up-free"] = {"k1", "k2"}
    ApiGatewayProvisioner("dev", client=gateway).plan_changed(["k1", "k2"], "free", "pro")
    assert gateway.members == {"up-free": set(), "up-pro": {"k1", "k2"}, "up-ent": set()}
    assert gateway.calls[:2] == [("remove", "up-free", "k1"), ("add", "up-pro", "k1")]


def test_a_failed_move_puts_every_key_back_on_the_old_plan() -> None:
    gateway = StrictApiGateway(fail_on=("up-pro", "k2"))
    gateway.members["up-free"] = {"k1", "k2", "k3"}
    with pytest.raises(ClientError, match="Rate exceeded"):
        ApiGatewayProvisioner("dev", client=gateway).plan_changed(["k1", "k2", "k3"], "free", "pro")
    assert gateway.members == {"up-free": {"k1", "k2", "k3"}, "up-pro": set(), "up-ent": set()}


def test_a_key_already_out_of_the_old_plan_still_moves() -> None:
    gateway = StrictApiGateway()
    ApiGatewayProvisioner("dev", client=gateway).plan_changed(["k1"], "free", "enterprise")
    assert gateway.members["up-ent"] == {"k1"}
