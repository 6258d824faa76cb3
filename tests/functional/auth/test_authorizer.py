"""The REQUEST Lambda authorizer with real event shapes, DynamoDB and API Gateway on moto."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from unittest import mock

import boto3
import pytest

from aimaas.auth.keys import usage_identifier
from aimaas.config import Settings
from aimaas.plans import load_catalog, usage_plan_name
from aimaas_admin import AdminService
from aimaas_admin.provisioner import ApiGatewayProvisioner
from aimaas_testing.metering import moto_tables, sample_record

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123defg/dev/POST/v1/embeddings"


@dataclass
class LambdaContext:
    function_name: str = "aimaas-dev-authorizer"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:authorizer"
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"


def request_event(headers: dict[str, str], multi: dict[str, list[str]] | None = None) -> dict:
    """A REST API REQUEST-authorizer event, as API Gateway sends it."""
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/v1/{proxy+}",
        "path": "/v1/embeddings",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": multi or {k: [v] for k, v in headers.items()},
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "pathParameters": {"proxy": "embeddings"},
        "stageVariables": {},
        "requestContext": {
            "resourceId": "abc1",
            "resourcePath": "/v1/{proxy+}",
            "httpMethod": "POST",
            "extendedRequestId": "xyz=",
            "path": "/dev/v1/embeddings",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "dev",
            "domainPrefix": "abc123defg",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "pytest"},
            "domainName": "abc123defg.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123defg",
        },
    }


@pytest.fixture(scope="module")
def aws():
    """moto tables + usage plans named as the CDK app names them; the authorizer module."""
    with moto_tables() as env:
        full_env = {**env, "AIMAAS_STAGE": "dev", "AIMAAS_KEY_PEPPER": "authorizer-pepper"}
        with mock.patch.dict(os.environ, full_env):
            gateway = boto3.client("apigateway")
            for plan in load_catalog().plans:
                gateway.create_usage_plan(name=usage_plan_name("dev", plan))
            module = importlib.import_module("functions.authorizer.handler")
            module.authenticator.cache_clear()
            admin = AdminService(Settings.from_env(), actor="pytest")
            yield module, admin, gateway


def call(module, headers, multi=None):
    return module.handler(request_event(headers, multi), LambdaContext())


def test_allow_with_context_and_usage_identifier(aws) -> None:
    module, admin, gateway = aws
    tenant = admin.create_tenant("Acme", plan="pro")
    key_id, key = admin.create_key(tenant.tenant_id)
    record = admin.store.get_key(key_id)
    assert record.apigw_key_id and record.usage_identifier is None  # derived, not stored
    identifier = usage_identifier(key_id, "authorizer-pepper")
    api_key = gateway.get_api_key(apiKey=record.apigw_key_id, includeValue=True)
    assert api_key["value"] == identifier != key  # not the customer's key
    plan_id = ApiGatewayProvisioner("dev", client=gateway).usage_plan_id("pro")
    members = gateway.get_usage_plan_keys(usagePlanId=plan_id)["items"]
    assert record.apigw_key_id in [m["id"] for m in members]

    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        response = call(module, headers)
        assert response["principalId"] == tenant.tenant_id
        statement = response["policyDocument"]["Statement"][0]
        assert statement == {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": ["arn:aws:execute-api:us-east-1:123456789012:abc123defg/dev/*/*"],
        }
        assert response["context"] == {
            "tenant_id": tenant.tenant_id,
            "key_id": key_id,
            "plan": "pro",
            "month_calls": "0",  # the counter it read, reused by the app's admission
        }
        assert response["usageIdentifierKey"] == identifier


def test_unauthorized_and_denied(aws) -> None:
    module, admin, _ = aws
    tenant = admin.create_tenant("Beta", plan="free")
    key_id, key = admin.create_key(tenant.tenant_id)
    for headers in ({}, {"x-api-key": "garbage"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            call(module, headers)
    # The same header twice with different values (multiValueHeaders) is refused too.
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        call(module, {"x-api-key": key}, {"x-api-key": [key, "amk_other"]})
    admin.revoke_key(key_id)
    denied = call(module, {"x-api-key": key})
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in denied and "usageIdentifierKey" not in denied


def test_over_the_hard_limit_is_flagged_for_a_429(aws) -> None:
    module, admin, _ = aws
    tenant = admin.create_tenant("Gamma", plan="free")
    key_id, key = admin.create_key(tenant.tenant_id)
    ledger = admin.ledger
    record = sample_record("r1", tenant_id=tenant.tenant_id, key_id=key_id)
    ledger.put(record)
    month = record.timestamp.strftime("%Y-%m")
    ledger.client.update_item(
        TableName=ledger.table,
        Key={"pk": {"S": f"CTR#{tenant.tenant_id}"}, "sk": {"S": f"MONTH#{month}#00"}},
        UpdateExpression="ADD calls :n",
        ExpressionAttributeValues={":n": {"N": str(load_catalog().plan("free").monthly_requests)}},
    )
    response = call(module, {"x-api-key": key})
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert int(response["context"]["quota_retry_after"]) > 0


def test_usage_identifier_needs_no_api_gateway_call(aws) -> None:
    """The authorizer may not read API Gateway keys (no apigateway:GET in its role): the usage
    identifier is derived from the key id and the pepper, and equals the gateway key's value."""
    import botocore.client

    module, admin, gateway = aws
    tenant = admin.create_tenant("Delta", plan="free")
    key_id, key = admin.create_key(tenant.tenant_id)
    record = admin.store.get_key(key_id)
    services: list[str] = []
    real = botocore.client.BaseClient._make_api_call

    def spy(client, operation, params):
        services.append(client.meta.service_model.service_name)
        return real(client, operation, params)

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", spy):
        response = call(module, {"x-api-key": key})
    assert services and "apigateway" not in services
    value = gateway.get_api_key(apiKey=record.apigw_key_id, includeValue=True)["value"]
    assert response["usageIdentifierKey"] == value


def test_a_stored_usage_identifier_from_before_is_still_returned(aws) -> None:
    module, admin, _gateway = aws
    tenant = admin.create_tenant("Legacy", plan="free")
    key_id, key = admin.create_key(tenant.tenant_id)
    record = admin.store.get_key(key_id)
    admin.store.save_key(replace(record, usage_identifier="legacy-random-value-0123456789"))
    response = call(module, {"x-api-key": key})
    assert response["usageIdentifierKey"] == "legacy-random-value-0123456789"


def test_plan_change_moves_gateway_keys(aws) -> None:
    _, admin, gateway = aws
    tenant = admin.create_tenant("Epsilon", plan="free")
    key_id, _ = admin.create_key(tenant.tenant_id)
    apigw_key_id = admin.store.get_key(key_id).apigw_key_id
    provisioner = ApiGatewayProvisioner("dev", client=gateway)
    admin.change_plan(tenant.tenant_id, "enterprise")

    def members(plan: str) -> list[str]:
        plan_id = provisioner.usage_plan_id(plan)
        return [m["id"] for m in gateway.get_usage_plan_keys(usagePlanId=plan_id)["items"]]

    assert apigw_key_id in members("enterprise") and apigw_key_id not in members("free")
    admin.revoke_key(key_id)
    assert apigw_key_id not in members("enterprise")
    assert apigw_key_id not in [k["id"] for k in gateway.get_api_keys()["items"]]


def test_policy_is_built_by_powertools_for_the_requests_partition(aws) -> None:
    module, admin, _ = aws
    tenant = admin.create_tenant("China", plan="free")
    _, key = admin.create_key(tenant.tenant_id)
    event = request_event({"x-api-key": key})
    event["methodArn"] = "arn:aws-cn:execute-api:cn-north-1:123456789012:abc123defg/dev/GET/v1/x"
    response = module.handler(event, LambdaContext())
    (statement,) = response["policyDocument"]["Statement"]
    assert statement["Resource"] == [
        "arn:aws-cn:execute-api:cn-north-1:123456789012:abc123defg/dev/*/*"
    ]
