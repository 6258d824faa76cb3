"""The GPU stack exists only where the stage enables it, and only its endpoint may be invoked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.stacks.gpu import supports_volume_kms

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def prod(synth: Any) -> Any:
    if not (REPO / "functions" / "gpu_server" / "Dockerfile").is_file():
        pytest.skip("functions/gpu_server/Dockerfile does not exist yet")
    return synth(stage="prod")


def test_no_gpu_stack_when_disabled(synth: Any) -> None:
    dev = synth(stage="dev")
    assert not any(name.endswith("-gpu") for name in dev.templates)
    assert "sagemaker:InvokeEndpoint" not in json.dumps(dev.json("serving"))


def test_gpu_stack_endpoint_scaling_and_scoped_invoke(prod: Any) -> None:
    gpu = prod.json("gpu")["Resources"]
    types = {r["Type"] for r in gpu.values()}
    assert {
        "AWS::SageMaker::Model",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Endpoint",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
    } <= types
    (config,) = prod.resources("gpu", "AWS::SageMaker::EndpointConfig").values()
    (variant,) = config["Properties"]["ProductionVariants"]
    assert variant["InstanceType"] == "ml.g5.xlarge"
    # The CUDA 13 image needs the AMI that leaves forward compatibility to the container.
    assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-3-1"
    (target,) = prod.resources("gpu", "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in json.dumps(
        target["Properties"]["RoleARN"]
    )
    assert len(prod.resources("gpu", "AWS::IAM::Role")) == 1  # the endpoint's execution role
    (policy,) = prod.resources("gpu", "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    spec = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert spec["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )

    invokes = []
    for policy_resource in prod.resources("serving", "AWS::IAM::Policy").values():
        for statement in policy_resource["Properties"]["PolicyDocument"]["Statement"]:
            if "sagemaker:InvokeEndpoint" in json.dumps(statement["Action"]):
                invokes.append(statement)
    assert len(invokes) == 3  # text and media functions, the batch worker
    streaming = ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"]
    # The serving functions also stream (chat completions); the batch worker never does.
    assert sorted(json.dumps(s["Action"]) for s in invokes) == sorted(
        [json.dumps(streaming)] * 2 + [json.dumps("sagemaker:InvokeEndpoint")]
    )
    for statement in invokes:
        resource = json.dumps(statement["Resource"])
        assert resource.endswith(':endpoint/aimaas-prod-gpu"]]}')
        assert "*" not in resource
    functions = prod.resources("serving", "AWS::Lambda::Function").values()
    images = [f["Properties"] for f in functions if f["Properties"].get("PackageType") == "Image"]
    for props in images:
        env = props["Environment"]["Variables"]
        assert env["AIMAAS_GPU_BACKEND"] == "sagemaker"
        assert env["AIMAAS_SAGEMAKER_ENDPOINT"] == "aimaas-prod-gpu"


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("ml.g5.xlarge", False),
        ("ml.g4dn.xlarge", False),
        ("ml.g4.xlarge", True),
        ("ml.m5.large", True),
    ],
)
def test_volume_kms_only_where_sagemaker_accepts_it(instance_type: str, expected: bool) -> None:
    assert supports_volume_kms(instance_type) is expected
