"""Every log group has a retention and the stage's KMS key, including the ones AWS services would
otherwise create themselves (API Gateway execution logs, the SageMaker endpoint's, the bucket
emptying function's); the trail's bucket expires its files; access logs name the tenant and the
key id, never the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", params=["dev", "prod"])
def stage(request: pytest.FixtureRequest, synth: Any) -> Any:
    if request.param == "prod" and not (REPO / "functions/gpu_server/Dockerfile").is_file():
        pytest.skip("functions/gpu_server/Dockerfile does not exist yet")
    return request.param, synth(stage=request.param)


def test_every_log_group_has_retention_and_the_stage_key(stage: tuple[str, Any]) -> None:
    name, synthesized = stage
    groups = synthesized.all_resources("AWS::Logs::LogGroup")
    days = 14 if name == "dev" else 365
    for logical_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == days, logical_id
        assert "KmsKeyId" in group["Properties"], logical_id
    names = json.dumps([g["Properties"].get("LogGroupName") for g in groups.values()])
    assert "API-Gateway-Execution-Logs_" in names
    if name == "prod":
        assert "/aws/sagemaker/Endpoints/aimaas-prod-gpu" in names
    else:
        assert "/aws/lambda/" in names  # the bucket-emptying function of a disposable stage


def test_services_find_their_log_group_before_they_start(stage: tuple[str, Any]) -> None:
    name, synthesized = stage
    (stage_resource,) = synthesized.resources("api", "AWS::ApiGateway::Stage").values()
    assert any(d.startswith("ExecutionLogs") for d in stage_resource.get("DependsOn", []))
    if name == "prod":
        (endpoint,) = synthesized.resources("gpu", "AWS::SageMaker::Endpoint").values()
        assert any(d.startswith("EndpointLogs") for d in endpoint["DependsOn"])


def test_trail_bucket_expires_its_files(synth: Any) -> None:
    prod = synth(stage="prod", gpu_enabled="false")
    buckets = prod.resources("storage", "AWS::S3::Bucket")
    (trail,) = (b for k, b in buckets.items() if k.startswith("TrailBucket"))
    (rule,) = trail["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 365 and rule["NoncurrentVersionExpiration"]


def test_access_logs_carry_tenant_and_key_id_never_the_key(synth: Any) -> None:
    (stage_resource,) = synth(stage="dev").resources("api", "AWS::ApiGateway::Stage").values()
    line = json.loads(stage_resource["Properties"]["AccessLogSetting"]["Format"])
    assert line["tenantId"] == "$context.authorizer.tenant_id"
    assert line["keyId"] == "$context.authorizer.key_id"
    text = json.dumps(line).lower()
    for secret in ("apikey", "x-api-key", "authorization", "header"):
        assert secret not in text, secret
