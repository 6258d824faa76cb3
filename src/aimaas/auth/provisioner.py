"""Mirror keys into API Gateway (AWS only): one API key per tenant key, in its plan's usage plan.

With the REST API's key source set to AUTHORIZER, API Gateway meters and throttles by the
``usageIdentifierKey`` the authorizer returns. Each tenant key therefore gets an API Gateway
API key whose *value is unrelated to the customer's key* (the customer never sees it): its
:func:`aimaas.auth.keys.usage_identifier`, which the authorizer computes again from the key id
(no stored copy, no ``apigateway:GET``). The key joins the usage plan named
:func:`aimaas.plans.usage_plan_name` ``(stage, plan)``; its id is kept on the key record.

- revoke: the API key is disabled and deleted (which also removes it from its usage plan);
- plan change: the tenant's API keys leave the old plan's usage plan, then join the new one (AWS
  allows one usage plan per key and API stage), and go back if a move fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from aimaas.plans import usage_plan_name


class KeyProvisioner(ABC):
    """Port: what else must happen when a key is issued, revoked or changes plan."""

    @abstractmethod
    def key_created(
        self, tenant_id: str, key_id: str, plan: str, usage_identifier: str
    ) -> str | None:
        """Give the key its gateway counterpart with value ``usage_identifier``; return its id
        (``None`` when there is no gateway)."""

    @abstractmethod
    def key_revoked(self, apigw_key_id: str | None, plan: str) -> None:
        """Remove the key's gateway counterpart (a member of ``plan``'s usage plan)."""

    @abstractmethod
    def plan_changed(self, apigw_key_ids: list[str], old_plan: str, new_plan: str) -> None:
        """Move keys between usage plans."""


class NoProvisioner(KeyProvisioner):
    """Local mode: there is no gateway."""

    def key_created(
        self, tenant_id: str, key_id: str, plan: str, usage_identifier: str
    ) -> str | None:
        return None

    def key_revoked(self, apigw_key_id: str | None, plan: str) -> None:
        return None

    def plan_changed(self, apigw_key_ids: list[str], old_plan: str, new_plan: str) -> None:
        return None


class ApiGatewayProvisioner(KeyProvisioner):
    """API keys and usage-plan keys in API Gateway (REST).

    Parameters
    ----------
    stage
        The deployment stage; usage plans are found by name ``aimaas-<stage>-<plan>``.
    client
        An ``apigateway`` client (from the default session when omitted).
    """

    def __init__(self, stage: str, *, client: Any = None) -> None:
        import boto3

        self.stage = stage
        self.client = client or boto3.client("apigateway")
        self._plan_ids: dict[str, str] = {}

    def usage_plan_id(self, plan: str) -> str:
        """The id of the usage plan for ``plan`` (LookupError if the CDK app made none)."""
        if plan not in self._plan_ids:
            wanted = usage_plan_name(self.stage, plan)
            for page in self.client.get_paginator("get_usage_plans").paginate():
                for item in page.get("items", []):
                    if item.get("name") == wanted:
                        self._plan_ids[plan] = item["id"]
            if plan not in self._plan_ids:
                raise LookupError(f"no API Gateway usage plan named {wanted!r}")
        return self._plan_ids[plan]

    def key_created(
        self, tenant_id: str, key_id: str, plan: str, usage_identifier: str
    ) -> str | None:
        plan_id = self.usage_plan_id(plan)  # fail before creating anything
        created = self.client.create_api_key(
            name=f"aimaas-{self.stage}-{tenant_id}-{key_id}",
            description=f"usage identifier of aimaas key {key_id} (tenant {tenant_id})",
            enabled=True,
            value=usage_identifier,  # a metering label, not the customer's key
            tags={"aimaas:tenant": tenant_id, "aimaas:key_id": key_id},
        )
        try:
            self.client.create_usage_plan_key(
                usagePlanId=plan_id, keyId=created["id"], keyType="API_KEY"
            )
        except Exception:
            self.client.delete_api_key(apiKey=created["id"])
            raise
        return str(created["id"])

    def key_revoked(self, apigw_key_id: str | None, plan: str) -> None:
        if not apigw_key_id:
            return
        from botocore.exceptions import ClientError

        # Deleting the key removes it from usage plans in AWS; say so explicitly anyway, so a
        # failed delete still leaves the key out of the plan (and disabled).
        self._remove(self.usage_plan_id(plan), apigw_key_id)
        try:
            self.client.update_api_key(
                apiKey=apigw_key_id,
                patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}],
            )
            self.client.delete_api_key(apiKey=apigw_key_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NotFoundException":
                raise

    def plan_changed(self, apigw_key_ids: list[str], old_plan: str, new_plan: str) -> None:
        """Move keys to ``new_plan``'s usage plan: out of the old one first, then into the new.

        AWS lets an API key be in one usage plan per API stage (adding it to a second one is a
        ConflictException), so the old membership must go first. If a move fails, every key
        moved so far (the failing one included) is put back in the old plan and the error is
        raised: the tenant stays wholly on its old plan.
        """
        if not apigw_key_ids or old_plan == new_plan:
            return
        new_id = self.usage_plan_id(new_plan)
        old_id = self.usage_plan_id(old_plan)
        moved: list[str] = []
        try:
            for apigw_key_id in apigw_key_ids:
                self._remove(old_id, apigw_key_id)
                moved.append(apigw_key_id)
                self.client.create_usage_plan_key(
                    usagePlanId=new_id, keyId=apigw_key_id, keyType="API_KEY"
                )
        except Exception:
            for apigw_key_id in reversed(moved):
                self._remove(new_id, apigw_key_id)
                self.client.create_usage_plan_key(
                    usagePlanId=old_id, keyId=apigw_key_id, keyType="API_KEY"
                )
            raise

    def _remove(self, usage_plan_id: str, apigw_key_id: str) -> None:
        """Take a key out of a usage plan; a key that is not there is fine."""
        from botocore.exceptions import ClientError

        try:
            self.client.delete_usage_plan_key(usagePlanId=usage_plan_id, keyId=apigw_key_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
