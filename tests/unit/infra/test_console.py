"""The console stack: a private KMS bucket behind CloudFront (OAC), the local server's security
headers with connect-src narrowed to the API, and the API's CORS origin wired to the console."""

from __future__ import annotations

from typing import Any

import pytest

from aimaas.console_policy import content_security_policy
from infra.settings import InfraSettings

ORIGIN = "https://d111111abcdef8.cloudfront.net"


@pytest.fixture(scope="module")
def dev(synth: Any) -> Any:
    # The distribution's domain as make deploy passes it on (infra/deploy.py).
    return synth(stage="dev", console_origin=ORIGIN)


def _one(synth: Any, type_name: str, stack: str = "console") -> dict[str, Any]:
    (resource,) = synth.resources(stack, type_name).values()
    return resource["Properties"]


def _distribution_ref(synth: Any) -> str:
    (logical_id,) = synth.resources("console", "AWS::CloudFront::Distribution")
    return logical_id


def _names_distribution(condition: Any, distribution: str) -> bool:
    """Whether an ``AWS:SourceArn`` value is this distribution's ARN (a Fn::Join on its Ref)."""
    return {"Ref": distribution} in condition["Fn::Join"][1]


def test_bucket_is_private_kms_encrypted_versioned_logged_and_tls_only(dev: Any) -> None:
    buckets = dev.resources("console", "AWS::S3::Bucket")
    (bucket,) = (b["Properties"] for b in buckets.values() if "BucketName" in b["Properties"])
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "console-bucket/"
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    policies = dev.resources("console", "AWS::S3::BucketPolicy")
    statements = [
        s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
    # Nobody but CloudFront (for this distribution) is allowed to read.
    reads = [s for s in statements if s["Effect"] == "Allow" and s["Action"] == "s3:GetObject"]
    assert reads
    for statement in reads:
        assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
        condition = statement["Condition"]["StringEquals"]["AWS:SourceArn"]
        assert _names_distribution(condition, _distribution_ref(dev))


def test_distribution_reads_through_origin_access_control_not_oai(dev: Any) -> None:
    oac = _one(dev, "AWS::CloudFront::OriginAccessControl")["OriginAccessControlConfig"]
    assert oac["OriginAccessControlOriginType"] == "s3"
    assert oac["SigningBehavior"] == "always" and oac["SigningProtocol"] == "sigv4"
    assert not dev.resources("console", "AWS::CloudFront::CloudFrontOriginAccessIdentity")
    config = _one(dev, "AWS::CloudFront::Distribution")["DistributionConfig"]
    (origin,) = config["Origins"]
    assert "OriginAccessControlId" in origin
    assert origin["S3OriginConfig"]["OriginAccessIdentity"] == ""
    assert config["DefaultRootObject"] == "index.html"
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert "ResponseHeadersPolicyId" in behavior


def test_key_lets_cloudfront_decrypt_only_for_this_distribution(dev: Any) -> None:
    key = _one(dev, "AWS::KMS::Key")
    assert key["EnableKeyRotation"] is True
    (statement,) = (
        s
        for s in key["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudfront.amazonaws.com"}
    )
    assert statement["Action"] == "kms:Decrypt"
    condition = statement["Condition"]["StringEquals"]["AWS:SourceArn"]
    assert _names_distribution(condition, _distribution_ref(dev))
    # The ARN is the global CloudFront one: arn:<partition>:cloudfront::<account>:distribution/<id>
    parts = condition["Fn::Join"][1]
    assert ":cloudfront::" in parts and ":distribution/" in parts


def test_response_headers_carry_the_local_csp_with_only_the_api_to_connect_to(dev: Any) -> None:
    config = _one(dev, "AWS::CloudFront::ResponseHeadersPolicy")["ResponseHeadersPolicyConfig"]
    security = config["SecurityHeadersConfig"]
    csp = security["ContentSecurityPolicy"]
    assert csp["Override"] is True
    # connect-src is the stage's API (a token-built URL) and nothing else; the rest is the
    # local server's policy word for word.
    joined = csp["ContentSecurityPolicy"]["Fn::Join"]
    assert joined[0] == ""
    text = "".join(p if isinstance(p, str) else "<token>" for p in joined[1])
    expected = content_security_policy("https://<token>.execute-api.<token>.<token>/dev/")
    assert text == expected
    assert "'self'" not in text.split("connect-src ")[1].split(";")[0]
    assert security["FrameOptions"] == {"FrameOption": "DENY", "Override": True}
    assert security["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert security["ContentTypeOptions"] == {"Override": True}
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    custom = {h["Header"]: h["Value"] for h in config["CustomHeadersConfig"]["Items"]}
    assert custom == {"cache-control": "no-store", "cross-origin-opener-policy": "same-origin"}


def test_files_are_deployed_with_a_config_naming_the_api_and_the_cache_invalidated(
    dev: Any,
) -> None:
    (deployment,) = dev.resources("console", "Custom::CDKBucketDeployment").values()
    props = deployment["Properties"]
    assert props["Prune"] is True
    assert props["DistributionPaths"] == ["/*"]
    assert "DistributionId" in props
    # Two sources: console/ (without its local config.json) and the generated config.json.
    assert len(props["SourceObjectKeys"]) == 2
    markers = props["SourceMarkers"]
    assert any(markers)  # the API URL's tokens, substituted at deploy time


def test_outputs_name_the_console_url(dev: Any) -> None:
    outputs = dev.json("console")["Outputs"]
    assert "ConsoleUrl" in outputs and "ConsoleDistributionId" in outputs


def test_api_cors_origin_is_the_console(dev: Any) -> None:
    functions = dev.resources("serving", "AWS::Lambda::Function").values()
    inference = [
        f["Properties"]["Environment"]["Variables"]
        for f in functions
        if f["Properties"].get("PackageType") == "Image"
        and "AIMAAS_MODEL_GROUP" in f["Properties"]["Environment"]["Variables"]
    ]
    assert len(inference) == 2
    assert all(env["AIMAAS_CONSOLE_ORIGIN"] == ORIGIN for env in inference)
    # The gateway answers the keyless preflight for every keyed resource, for this origin only.
    methods = dev.resources("api", "AWS::ApiGateway::Method").values()
    options = [m["Properties"] for m in methods if m["Properties"]["HttpMethod"] == "OPTIONS"]
    keyed = {
        m["Properties"]["ResourceId"]["Ref"]
        for m in methods
        if m["Properties"].get("ApiKeyRequired") and m["Properties"]["HttpMethod"] != "OPTIONS"
    }
    assert {o["ResourceId"]["Ref"] for o in options} == keyed
    for option in options:
        assert option["AuthorizationType"] == "NONE"
        assert option["Integration"]["Type"] == "MOCK"
        (response,) = option["Integration"]["IntegrationResponses"]
        params = response["ResponseParameters"]
        assert params["method.response.header.Access-Control-Allow-Origin"] == f"'{ORIGIN}'"
    # The gateway's own errors are readable by the console.
    for response in dev.resources("api", "AWS::ApiGateway::GatewayResponse").values():
        headers = response["Properties"]["ResponseParameters"]
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == f"'{ORIGIN}'"


def test_console_origin_needs_https_and_a_domain_needs_its_certificate() -> None:
    with pytest.raises(ValueError, match="https://host"):
        InfraSettings.from_context({"stage": "dev", "console_origin": "http://x.example"})
    with pytest.raises(ValueError, match="go together"):
        InfraSettings.from_context({"stage": "dev", "console_domain": "console.example.com"})
    settings = InfraSettings.from_context(
        {
            "stage": "dev",
            "console_domain": "console.example.com",
            "console_certificate_arn": "arn:aws:acm:us-east-1:111111111111:certificate/x",
        }
    )
    assert settings.console_origin == "https://console.example.com"


def _text_policy(synth: Any) -> list[dict[str, Any]]:
    policies = synth.resources("serving", "AWS::IAM::Policy")
    (text,) = (p for k, p in policies.items() if k.startswith("TextRole"))
    return text["Properties"]["PolicyDocument"]["Statement"]


def _paths(statement: dict[str, Any]) -> list[str]:
    resources = statement["Resource"]
    resources = resources if isinstance(resources, list) else [resources]
    return [r["Fn::Join"][1][-1] for r in resources]


def test_text_function_may_do_exactly_what_key_lifecycle_does_in_api_gateway(dev: Any) -> None:
    statements = _text_policy(dev)
    gateway = {}
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if any(a.startswith("apigateway:") for a in actions):
            for path in _paths(s):
                gateway.setdefault(path, set()).update(actions)
    assert gateway == {
        "::/usageplans": {"apigateway:GET"},  # find the plan by name
        "::/apikeys": {"apigateway:POST"},  # CreateApiKey
        "::/usageplans/*/keys": {"apigateway:POST"},  # CreateUsagePlanKey
        "::/apikeys/*": {"apigateway:PATCH", "apigateway:DELETE"},  # disable, DeleteApiKey
        "::/usageplans/*/keys/*": {"apigateway:DELETE"},  # DeleteUsagePlanKey
        "::/tags/*": {"apigateway:PUT"},  # the key's tags
    }
    (tagging,) = (s for s in statements if s["Action"] == "apigateway:PUT")
    assert tagging["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": ["aimaas:tenant", "aimaas:key_id"]}
    }
    # The media function serves no /v1/keys: no API Gateway actions at all.
    policies = dev.resources("serving", "AWS::IAM::Policy")
    (media,) = (p for k, p in policies.items() if k.startswith("MediaRole"))
    assert "apigateway" not in str(media["Properties"]["PolicyDocument"])


def _table(statement: dict[str, Any]) -> str:
    resources = statement["Resource"]
    resources = resources if isinstance(resources, list) else [resources]
    return " ".join(str(r) for r in resources)


def test_text_function_writes_only_key_items_and_appends_and_lists_the_audit(dev: Any) -> None:
    statements = _text_policy(dev)
    writes = [
        s
        for s in statements
        if "aimaas-dev-tenants" in _table(s)
        and set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    ]
    (write,) = writes  # every tenants-table write is key-items-only
    assert sorted(write["Action"]) == ["dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert write["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["KEY#*"]}}
    audit = {
        a
        for s in statements
        if "aimaas-dev-audit" in _table(s)
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert audit == {"dynamodb:PutItem", "dynamodb:Query"}
