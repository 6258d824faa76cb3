"""The REST API: keys on every prediction route, plans from plans.toml, logs, binary types."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from aimaas.plans import usage_plan_name

PLANS_TOML = Path(__file__).resolve().parents[3] / "src" / "aimaas" / "data" / "plans.toml"
PLANS = tomllib.loads(PLANS_TOML.read_text())["plans"]
PERIODS = {"DAY": "DAY", "WEEK": "WEEK", "MONTH": "MONTH"}
#: Open without a key: the health check and the API's contract (README: "open").
OPEN_PATHS = ("/health", "/openapi.json", "/docs", "/docs-static/{proxy+}")


@pytest.fixture(scope="module")
def aws(synth: Any) -> Any:
    return synth(stage="dev")


@pytest.fixture(scope="module")
def localstack(synth: Any) -> Any:
    return synth(profile="localstack", upstream_url="http://127.0.0.1:8000")


def _paths(template: dict[str, Any]) -> dict[str, str]:
    """``{resource logical id: full path}`` rebuilt from the Resource tree."""
    resources = {
        k: v["Properties"]
        for k, v in template["Resources"].items()
        if v["Type"] == "AWS::ApiGateway::Resource"
    }

    def path(logical_id: str) -> str:
        props = resources[logical_id]
        parent = props["ParentId"]
        prefix = path(parent["Ref"]) if isinstance(parent, dict) and "Ref" in parent else ""
        return f"{prefix}/{props['PathPart']}"

    return {k: path(k) for k in resources}


def _methods(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    paths = _paths(template)
    methods = {}
    for value in template["Resources"].values():
        if value["Type"] != "AWS::ApiGateway::Method":
            continue
        props = value["Properties"]
        resource = props["ResourceId"]
        path = paths[resource["Ref"]] if "Ref" in resource else "/"
        methods[(path, props["HttpMethod"])] = props
    return methods


@pytest.mark.parametrize("profile", ["aws", "localstack"])
def test_every_prediction_route_requires_a_key_and_health_does_not(
    profile: str, request: pytest.FixtureRequest
) -> None:
    methods = _methods(request.getfixturevalue(profile).json("api"))
    for path in OPEN_PATHS:
        public = methods.pop((path, "GET"))
        assert public.get("ApiKeyRequired", False) is False, path
        assert public["AuthorizationType"] == "NONE", path
    assert ("/v1/{proxy+}", "ANY") in methods
    for (path, verb), props in methods.items():
        assert path.startswith("/v1/"), path
        assert props["ApiKeyRequired"] is True, (path, verb)
        if profile == "aws":
            assert props["AuthorizationType"] == "CUSTOM", (path, verb)
            assert "AuthorizerId" in props


def test_aws_profile_uses_the_request_authorizer_as_key_source(aws: Any) -> None:
    template = aws.json("api")
    api = aws.resources("api", "AWS::ApiGateway::RestApi")
    (props,) = (v["Properties"] for v in api.values())
    assert props["ApiKeySourceType"] == "AUTHORIZER"
    (authorizer,) = aws.resources("api", "AWS::ApiGateway::Authorizer").values()
    auth = authorizer["Properties"]
    assert auth["Type"] == "REQUEST"
    # No identity source: x-api-key or Bearer may come alone (see the authorizer handler).
    assert "IdentitySource" not in auth
    assert auth["AuthorizerResultTtlInSeconds"] == 0
    methods = _methods(template)
    assert methods[("/v1/image-classification", "POST")]["Integration"]["Type"] == "AWS_PROXY"


def test_binary_media_types_and_regional_endpoint(aws: Any) -> None:
    (api,) = aws.resources("api", "AWS::ApiGateway::RestApi").values()
    assert set(api["Properties"]["BinaryMediaTypes"]) == {
        "image/*",
        "audio/*",
        "application/octet-stream",
        "multipart/form-data",
    }
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


@pytest.mark.parametrize("profile", ["aws", "localstack"])
def test_one_usage_plan_per_plan_with_its_throttle_and_quota(
    profile: str, request: pytest.FixtureRequest
) -> None:
    synth = request.getfixturevalue(profile)
    plans = {
        p["Properties"]["UsagePlanName"]: p["Properties"]
        for p in synth.resources("api", "AWS::ApiGateway::UsagePlan").values()
    }
    assert set(plans) == {usage_plan_name("dev", name) for name in PLANS}
    for name, plan in PLANS.items():
        props = plans[usage_plan_name("dev", name)]
        assert props["Throttle"] == {
            "RateLimit": plan["throttle"]["rate_limit"],
            "BurstLimit": plan["throttle"]["burst_limit"],
        }
        assert props["Quota"] == {
            "Limit": plan["quota"]["limit"],
            "Period": plan["quota"]["period"],
        }
        assert len(props["ApiStages"]) == 1
    outputs = synth.json("api")["Outputs"]
    for name in PLANS:
        assert f"UsagePlanId{name.title()}" in outputs


def test_stage_logs_json_access_logs_metrics_and_default_throttle(aws: Any) -> None:
    (stage,) = aws.resources("api", "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "dev"
    assert props["AccessLogSetting"]["Format"].startswith("{")
    assert props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert settings["MetricsEnabled"] is True
    assert settings["DataTraceEnabled"] is False  # bodies and keys never reach logs
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    (access_log_group,) = (
        part["Ref"]
        for part in props["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1]
        if isinstance(part, dict) and not part.get("Ref", "").startswith("AWS::")
    )
    log_group = aws.resources("api", "AWS::Logs::LogGroup")[access_log_group]
    assert "KmsKeyId" in log_group["Properties"]
    assert log_group["Properties"]["RetentionInDays"] == 14


def test_json_body_validation_is_lenient_and_only_on_json_routes(aws: Any) -> None:
    methods = _methods(aws.json("api"))
    (model,) = aws.resources("api", "AWS::ApiGateway::Model").values()
    # Any JSON object passes: a customer's JSON without Content-Type must never be rejected
    # for the model's sake.
    assert model["Properties"]["Schema"] == {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
    }
    assert "RequestModels" in methods[("/v1/embeddings", "POST")]
    for binary in ("/v1/image-classification", "/v1/audio-classification"):
        assert "RequestModels" not in methods[(binary, "POST")]


def test_waf_only_when_asked(synth: Any, aws: Any) -> None:
    assert aws.resources("api", "AWS::WAFv2::WebACL") == {}
    with_waf = synth(stage="dev", waf="true")
    (acl,) = with_waf.resources("api", "AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert "AWSManagedRulesCommonRuleSet" in rules
    assert len(with_waf.resources("api", "AWS::WAFv2::WebACLAssociation")) == 1


def test_waf_never_blocks_a_paying_tenant_below_its_plan_rate(synth: Any) -> None:
    """One egress IP may carry a whole plan's rate: every IP rate rule that counts keyed
    requests sits above the fastest plan's rate over the rule's window; the tight per-IP
    limit applies only to requests without a credential header."""
    (acl,) = synth(stage="prod").resources("api", "AWS::WAFv2::WebACL").values()
    fastest = max(plan["throttle"]["rate_limit"] for plan in PLANS.values())
    rate_rules = [r for r in acl["Properties"]["Rules"] if "RateBasedStatement" in r["Statement"]]
    assert rate_rules
    anonymous = 0
    for rule in rate_rules:
        statement = rule["Statement"]["RateBasedStatement"]
        window = statement.get("EvaluationWindowSec", 300)
        scope = json.dumps(statement.get("ScopeDownStatement", {}))
        keyless_only = (
            scope.startswith('{"NotStatement"')
            and "x-api-key" in scope
            and "authorization" in scope
        )
        if keyless_only:
            anonymous += 1
        else:
            assert statement["Limit"] >= fastest * window, rule["Name"]
    assert anonymous == 1  # unauthenticated traffic is still limited per IP


def test_prod_waf_logs_redact_keys_into_an_encrypted_retained_group(synth: Any) -> None:
    prod = synth(stage="prod")
    (logging,) = prod.resources("api", "AWS::WAFv2::LoggingConfiguration").values()
    redacted = {f["SingleHeader"]["Name"] for f in logging["Properties"]["RedactedFields"]}
    assert redacted == {"x-api-key", "authorization"}
    (waf,) = (
        g["Properties"]
        for g in prod.resources("api", "AWS::Logs::LogGroup").values()
        if g["Properties"].get("LogGroupName") == "aws-waf-logs-aimaas-prod"
    )
    assert waf["RetentionInDays"] == 365 and "KmsKeyId" in waf
    assert "aws-waf-logs-aimaas-prod" in json.dumps(logging["Properties"]["LogDestinationConfigs"])


@pytest.mark.parametrize("profile", ["aws", "localstack"])
def test_bodies_are_validated_only_where_a_model_exists(
    profile: str, request: pytest.FixtureRequest
) -> None:
    synth = request.getfixturevalue(profile)
    validators = {
        k: v["Properties"]
        for k, v in synth.resources("api", "AWS::ApiGateway::RequestValidator").items()
    }
    for props in _methods(synth.json("api")).values():
        if "RequestValidatorId" not in props:
            continue
        validator = validators[props["RequestValidatorId"]["Ref"]]
        assert validator["ValidateRequestBody"] is ("RequestModels" in props)


@pytest.mark.parametrize("profile", ["aws", "localstack"])
def test_the_contract_the_readme_calls_open_is_routed(
    profile: str, request: pytest.FixtureRequest
) -> None:
    synth = request.getfixturevalue(profile)
    methods = _methods(synth.json("api"))
    for path in OPEN_PATHS:
        integration = methods[(path, "GET")]["Integration"]
        if profile == "localstack":
            upstream = path.replace("{proxy+}", "{proxy}")
            assert integration["Uri"] == f"http://127.0.0.1:8000{upstream}", path


def _render(template: str) -> dict[str, Any]:
    """A gateway response template as API Gateway fills it in."""
    filled = template.replace("$context.error.messageString", '"Gateway said \\"no\\""')
    return json.loads(filled.replace("$context.requestId", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"))


@pytest.mark.parametrize("profile", ["aws", "localstack"])
def test_every_error_the_gateway_makes_has_the_platform_shape(
    profile: str, request: pytest.FixtureRequest
) -> None:
    synth = request.getfixturevalue(profile)
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.resources("api", "AWS::ApiGateway::GatewayResponse").values()
    }
    # Unknown route, body too large, authorizer failure, timeout, WAF block, throttling, and
    # the catch-alls for every other 4xx and 5xx.
    for response_type in (
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "MISSING_AUTHENTICATION_TOKEN",
        "REQUEST_TOO_LARGE",
        "AUTHORIZER_FAILURE",
        "AUTHORIZER_CONFIGURATION_ERROR",
        "INTEGRATION_TIMEOUT",
        "WAF_FILTERED",
        "THROTTLED",
        "QUOTA_EXCEEDED",
        "UNAUTHORIZED",
        "ACCESS_DENIED",
    ):
        assert response_type in responses, response_type
    for response_type, props in responses.items():
        body = _render(props["ResponseTemplates"]["application/json"])
        assert set(body) == {"error"}, response_type
        assert set(body["error"]) == {"code", "message", "request_id"}, response_type
        assert body["error"]["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
        assert body["error"]["code"] and body["error"]["message"], response_type
        assert props["ResponseParameters"] == {
            "gatewayresponse.header.X-Request-Id": "context.requestId"
        }
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
