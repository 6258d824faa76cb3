"""Stage configuration and context parsing (no synthesis)."""

from __future__ import annotations

import pytest

from infra.settings import InfraSettings


def test_stage_files_drive_the_defaults() -> None:
    dev = InfraSettings.from_context({})
    assert (dev.stage, dev.profile, dev.prefix) == ("dev", "aws", "aimaas-dev")
    assert not dev.gpu_enabled and not dev.retain_data and not dev.waf
    prod = InfraSettings.from_context({"stage": "prod"})
    assert prod.gpu_enabled and prod.retain_data and prod.backup and prod.cloudtrail
    assert prod.gpu_instance_type == "ml.g5.xlarge"
    assert prod.log_retention_days == 365
    assert [p.name for p in prod.plans] == ["free", "pro", "enterprise"]
    free = prod.plans[0]
    throttle, quota = free.throttle, free.quota
    assert (throttle.rate_limit, throttle.burst_limit, quota.limit, quota.period) == (
        5.0,
        10,
        1000,
        "DAY",
    )


def test_cli_context_strings_override_the_stage() -> None:
    prod = InfraSettings.from_context(
        {"stage": "prod", "gpu_enabled": "false", "waf": "0", "provisioned_concurrency": "3"}
    )
    assert not prod.gpu_enabled and not prod.waf
    assert prod.provisioned_concurrency == 3
    dev = InfraSettings.from_context({"waf": "true", "backup": "yes"})
    assert dev.waf and dev.backup


def test_localstack_never_gets_a_gpu() -> None:
    settings = InfraSettings.from_context(
        {"stage": "prod", "profile": "localstack", "upstream_url": "http://127.0.0.1:1"}
    )
    assert settings.features.name == "localstack" and not settings.gpu_enabled


@pytest.mark.parametrize(
    "context",
    [{"stage": "local"}, {"stage": "staging"}, {"profile": "azure"}],
)
def test_unknown_or_local_stage_and_profile_are_refused(context: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        InfraSettings.from_context(context)


def test_acknowledgements_need_a_resource_and_a_reason() -> None:
    import aws_cdk as cdk

    from infra.nag import acknowledge

    app = cdk.App()
    stack = cdk.Stack(app, "S")
    with pytest.raises(ValueError, match="per resource"):
        acknowledge(stack, {"AwsSolutions-S1": "a long enough reason"})
    topic = cdk.CfnResource(stack, "R", type="AWS::SNS::Topic")
    with pytest.raises(ValueError, match="real reason"):
        acknowledge(topic, {"AwsSolutions-SNS2": "ok"})


def test_plans_stages_and_plan_names_are_the_runtimes_own() -> None:
    from aimaas.config import StageConfig
    from aimaas.plans import load_catalog, usage_plan_name

    prod = InfraSettings.from_context({"stage": "prod"})
    assert prod.plans == tuple(load_catalog().plans.values())
    assert prod.gpu_models == StageConfig.load("prod").gpu_models
    assert prod.usage_plan_name("pro") == usage_plan_name("prod", "pro")


def test_every_profile_feature_is_read_from_the_one_table() -> None:
    from infra.settings import PROFILES

    for name, features in PROFILES.items():
        settings = InfraSettings.from_context(
            {"profile": name, "stage": "prod", "upstream_url": "http://127.0.0.1:1"}
        )
        assert settings.features is features
        assert settings.gpu_enabled == features.sagemaker  # prod asks for the GPU
        assert settings.waf == features.waf and settings.backup == features.dynamodb
