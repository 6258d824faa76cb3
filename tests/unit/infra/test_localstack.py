"""The LocalStack profile: HTTP proxy to an upstream server, header keys, no Lambda anywhere."""

from __future__ import annotations

from typing import Any

import pytest

UPSTREAM = "http://127.0.0.1:8123"


@pytest.fixture(scope="module")
def ls(synth: Any) -> Any:
    return synth(profile="localstack", upstream_url=UPSTREAM)


def test_only_storage_and_api_stacks(ls: Any) -> None:
    assert sorted(ls.templates) == ["aimaas-dev-api", "aimaas-dev-storage"]


def test_nothing_localstack_community_cannot_run(ls: Any) -> None:
    for forbidden in (
        "AWS::Lambda::Function",
        "AWS::DynamoDB::Table",
        "AWS::SageMaker::Endpoint",
        "Custom::S3AutoDeleteObjects",
        "AWS::CloudFormation::CustomResource",
    ):
        assert ls.all_resources(forbidden) == {}, forbidden
    # Bootstrap-free: no version rule/parameter that needs `cdk bootstrap`.
    for template in ls.templates.values():
        body = template.to_json()
        assert "BootstrapVersion" not in body.get("Parameters", {})
        assert "CheckBootstrapVersion" not in body.get("Rules", {})


def test_proxy_integration_and_header_keys(ls: Any) -> None:
    (api,) = ls.resources("api", "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["ApiKeySourceType"] == "HEADER"
    proxies = [
        m["Properties"]
        for m in ls.resources("api", "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "ANY"
    ]
    (proxy,) = proxies
    assert proxy["ApiKeyRequired"] is True
    integration = proxy["Integration"]
    assert integration["Type"] == "HTTP_PROXY"
    assert integration["Uri"] == f"{UPSTREAM}/v1/{{proxy}}"
    assert integration["RequestParameters"] == {
        "integration.request.path.proxy": "method.request.path.proxy"
    }


def test_outputs_the_deploy_script_needs(ls: Any) -> None:
    api_outputs = ls.json("api")["Outputs"]
    for name in ("RestApiId", "StageName", "UsagePlanIds", "UsagePlanIdFree"):
        assert name in api_outputs
    storage_outputs = ls.json("storage")["Outputs"]
    for name in ("ModelBucketName", "KmsKeyId"):
        assert name in storage_outputs


def test_missing_upstream_is_refused() -> None:
    from infra.settings import InfraSettings

    with pytest.raises(ValueError, match="upstream_url"):
        InfraSettings.from_context({"profile": "localstack"})
