"""Functions: arm64, sizing, env contract, layers, and IAM without wildcard data actions."""

from __future__ import annotations

import re
from typing import Any

import pytest

FORBIDDEN_ACTION = re.compile(r"^(\*|[a-z0-9-]+:\*)$")


@pytest.fixture(scope="module")
def dev(synth: Any) -> Any:
    return synth(stage="dev")


def _functions(dev: Any) -> dict[str, dict[str, Any]]:
    return {
        k: v["Properties"] for k, v in dev.resources("serving", "AWS::Lambda::Function").items()
    }


def _inference_images(synth: Any) -> dict[str, dict[str, Any]]:
    """The model groups' image functions (the batch worker, the same image with its own
    command, is tested in test_batch.py)."""
    return {
        k: p
        for k, p in _functions(synth).items()
        if p.get("PackageType") == "Image" and "ImageConfig" not in p
    }


def test_inference_functions_are_arm64_images_with_the_env_contract(dev: Any) -> None:
    images = _inference_images(dev)
    assert len(images) == 2
    memories = set()
    for props in images.values():
        assert props["Architectures"] == ["arm64"]
        assert props["Timeout"] <= 29
        # No reservation in dev: a new account's limit of 10 could not grant one.
        assert "ReservedConcurrentExecutions" not in props
        env = props["Environment"]["Variables"]
        assert env["AIMAAS_STAGE"] == "dev"
        assert env["AIMAAS_MODEL_STORE"] == "folder"
        assert env["AIMAAS_KEY_STORE"] == env["AIMAAS_LEDGER"] == "dynamodb"
        assert env["AIMAAS_TRUST_AUTHORIZER"] == "true"
        assert env["AIMAAS_GPU_BACKEND"] == "none"
        assert "AIMAAS_SAGEMAKER_ENDPOINT" not in env
        assert env["AIMAAS_TENANTS_TABLE"] == "aimaas-dev-tenants"
        assert env["AIMAAS_USAGE_TABLE"] == "aimaas-dev-usage"
        assert env["AIMAAS_AUDIT_TABLE"] == "aimaas-dev-audit"
        assert env["POWERTOOLS_SERVICE_NAME"] and env["POWERTOOLS_METRICS_NAMESPACE"]
        memories.add(props["MemorySize"])
    assert len(memories) == 2  # sized per model group


def test_authorizer_is_a_python312_arm64_zip_on_two_layers(dev: Any) -> None:
    (auth,) = (p for p in _functions(dev).values() if p.get("Handler") == "handler.handler")
    assert auth["Runtime"] == "python3.12"
    assert auth["Architectures"] == ["arm64"]
    assert len(auth["Layers"]) == 2


def test_powertools_layer_is_the_pinned_release_from_awss_public_parameter(dev: Any) -> None:
    """No hard-coded layer version: the layer ARN is AWS's public SSM parameter for exactly the
    Powertools release the authorizer (and the inference image) pin."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    pins = {
        re.search(r"aws-lambda-powertools(?:\[\w+\])?==([\w.]+)", path.read_text()).group(1)
        for path in (
            root / "functions" / "authorizer" / "requirements.txt",
            root / "functions" / "inference" / "requirements.txt",
        )
    }
    (version,) = pins  # one release for the zip and the image
    (auth,) = (p for p in _functions(dev).values() if p.get("Handler") == "handler.handler")
    refs = [layer["Ref"] for layer in auth["Layers"] if "Ref" in layer]
    parameters = dev.json("serving")["Parameters"]
    (parameter,) = (parameters[r] for r in refs if r in parameters)
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert parameter["Default"] == f"/aws/service/powertools/python/arm64/python3.12/{version}"


def test_aliases_concurrency_and_encrypted_log_groups(dev: Any, synth: Any) -> None:
    aliases = dev.resources("serving", "AWS::Lambda::Alias")
    assert len(aliases) == 2
    assert all("ProvisionedConcurrencyConfig" not in a["Properties"] for a in aliases.values())
    for group in dev.resources("serving", "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 14
        assert "KmsKeyId" in group["Properties"]
    warm = synth(
        stage="dev",
        provisioned_concurrency="2",
        text_reserved_concurrency="0",
        media_reserved_concurrency="0",
    )
    for alias in warm.resources("serving", "AWS::Lambda::Alias").values():
        assert alias["Properties"]["ProvisionedConcurrencyConfig"] == {
            "ProvisionedConcurrentExecutions": 2
        }
    # 0 = no reservation (Lambda itself would read a reservation of 0 as "always throttle").
    for function in warm.resources("serving", "AWS::Lambda::Function").values():
        assert "ReservedConcurrentExecutions" not in function["Properties"]


def test_no_wildcard_actions_and_no_managed_policies_anywhere(dev: Any) -> None:
    for type_name in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for name, policy in dev.all_resources(type_name).items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                for action in [actions] if isinstance(actions, str) else actions:
                    assert not FORBIDDEN_ACTION.match(action), (name, action)
                    assert not action.startswith(("s3:*", "dynamodb:*", "kms:*")), (name, action)
    for name, role in dev.resources("serving", "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name


def test_data_access_is_scoped_to_the_stage_tables(dev: Any) -> None:
    import json

    policies = json.dumps(dev.resources("serving", "AWS::IAM::Policy"))
    assert ":table/aimaas-dev-tenants/index/gsi1" in policies
    assert "/index/*" not in policies
    assert ":table/*" not in policies


def test_inference_functions_cannot_touch_the_audit_log_or_delete_usage(dev: Any) -> None:
    """They add usage; the text function also appends classifier and key events to the audit
    log (and lists them for /v1/audit), deletes its tenants' classifier items and writes key
    items (self-service keys, ``KEY#`` items only), and nothing else is ever deleted or
    rewritten."""
    import json

    for name, policy in dev.resources("serving", "AWS::IAM::Policy").items():
        if name.startswith("AuthorizerRole"):
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = json.dumps(statement["Action"])
            resources = json.dumps(statement["Resource"])
            assert "BatchWriteItem" not in actions, name
            if "DeleteItem" in actions:
                assert name.startswith("TextRole"), name
                assert "aimaas-dev-classifiers" in resources, name
                assert "usage" not in resources and "audit" not in resources, name
            if "aimaas-dev-audit" in resources:
                assert name.startswith("TextRole"), name
                assert set(
                    json.loads(actions) if actions.startswith("[") else [statement["Action"]]
                ) <= {"dynamodb:PutItem", "dynamodb:Query"}
            elif "aimaas-dev-tenants" in resources and ("PutItem" in actions):
                assert name.startswith("TextRole"), name
                assert statement["Condition"] == {
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["KEY#*"]}
                }
            elif "PutItem" in actions or "UpdateItem" in actions:
                assert "aimaas-dev-usage" in resources or "aimaas-dev-classifiers" in resources, (
                    name
                )


def test_only_the_text_function_reaches_the_classifier_store(dev: Any) -> None:
    import json

    texts = {
        k: p
        for k, p in _functions(dev).items()
        if p.get("PackageType") == "Image" and p["MemorySize"] == 2048
    }
    (text,) = texts.values()
    env = text["Environment"]["Variables"]
    assert env["AIMAAS_CLASSIFIER_STORE"] == "aws"
    assert env["AIMAAS_CLASSIFIERS_TABLE"] == "aimaas-dev-classifiers"
    assert "aimaas-dev-classifiers-" in json.dumps(env["AIMAAS_CLASSIFIER_BUCKET"])
    assert env["AIMAAS_KMS_KEY_ID"]
    for name, policy in dev.resources("serving", "AWS::IAM::Policy").items():
        text_role = name.startswith("TextRole")
        document = json.dumps(policy["Properties"]["PolicyDocument"])
        assert ("/classifiers/*" in document) == text_role, name
        if text_role:
            objects = [
                s
                for s in policy["Properties"]["PolicyDocument"]["Statement"]
                if "/classifiers/*" in json.dumps(s["Resource"])
            ]
            assert [sorted(s["Action"]) for s in objects] == [
                ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
            ]


def test_authorizer_permissions_follow_its_contract(dev: Any) -> None:
    """functions/authorizer/handler.py: read keys/usage, stamp last_used_at, read the pepper."""
    import json

    (auth_policy,) = (
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in dev.resources("serving", "AWS::IAM::Policy").items()
        if k.startswith("AuthorizerRole")
    )
    writes = [s for s in auth_policy if "dynamodb:UpdateItem" in json.dumps(s["Action"])]
    (update,) = writes
    assert update["Action"] == "dynamodb:UpdateItem"
    assert json.dumps(update["Resource"]).endswith(':table/aimaas-dev-tenants"]]}')
    actions = json.dumps([s["Action"] for s in auth_policy])
    assert "dynamodb:PutItem" not in actions  # it never writes usage or audit records
    assert "ssm:GetParameter" in actions


def test_every_resource_is_tagged_with_project_and_stage(dev: Any) -> None:
    (bucket, *_) = dev.resources("storage", "AWS::S3::Bucket").values()
    tags = {t["Key"]: t["Value"] for t in bucket["Properties"]["Tags"]}
    assert tags["project"] == "aimaas"
    assert tags["stage"] == "dev"
    for function in dev.resources("serving", "AWS::Lambda::Function").values():
        tags = {t["Key"]: t["Value"] for t in function["Properties"]["Tags"]}
        assert tags["stage"] == "dev"


def test_prod_reserves_concurrency_from_its_stage_file(synth: Any) -> None:
    from aimaas.config import StageConfig

    stage = StageConfig.load("prod").raw
    prod = synth(stage="prod", gpu_enabled="false")
    reserved = {
        props["MemorySize"]: props.get("ReservedConcurrentExecutions")
        for props in _inference_images(prod).values()
    }
    assert reserved == {
        2048: stage["text_reserved_concurrency"],
        3008: stage["media_reserved_concurrency"],
    }


def test_deadline_below_the_function_timeout_below_the_gateway(dev: Any) -> None:
    """A request's deadline (25 s) < the function's timeout (28 s) < the gateway's (29 s), so
    no call can be billed after its client got a 504."""
    images = list(_inference_images(dev).values())
    integrations = [
        m["Properties"]["Integration"]
        for m in dev.resources("api", "AWS::ApiGateway::Method").values()
        if m["Properties"]["Integration"]["Type"] == "AWS_PROXY"
    ]
    assert integrations and {i.get("TimeoutInMillis") for i in integrations} == {29_000}
    for props in images:
        assert props["Timeout"] == 28
        assert props["Environment"]["Variables"]["AIMAAS_REQUEST_DEADLINE_S"] == "25"


def test_inference_functions_never_read_the_model_bucket(dev: Any) -> None:
    """Models are baked into the image (AIMAAS_MODEL_STORE=folder): no model bucket access (the
    text function's only S3 access is the classifier bucket's ``classifiers/`` prefix)."""
    import json

    for name, policy in dev.resources("serving", "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "s3:" in json.dumps(statement["Action"]):
                assert "-classifiers-" in json.dumps(statement["Resource"]), name
        assert "-models-" not in json.dumps(policy["Properties"]["PolicyDocument"]), name
    for props in _functions(dev).values():
        assert "AIMAAS_MODEL_BUCKET" not in props["Environment"]["Variables"]


def test_no_function_may_read_api_gateway_keys(dev: Any) -> None:
    """The authorizer derives usage identifiers (aimaas.auth.keys.usage_identifier): it needs
    no apigateway:GET, which on /apikeys/* would read every API key in the region. Only the
    text function (self-service keys) touches API Gateway, and it reads nothing but the usage
    plan list (tests/unit/infra/test_console.py has its exact grant)."""
    import json

    for name, policy in dev.resources("serving", "AWS::IAM::Policy").items():
        document = json.dumps(policy["Properties"]["PolicyDocument"])
        if not name.startswith("TextRole"):
            assert "apigateway:" not in document, name
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "apigateway:GET" in json.dumps(statement["Action"]):
                assert statement["Action"] == "apigateway:GET", name
                assert json.dumps(statement["Resource"]).endswith('::/usageplans"]]}'), name
