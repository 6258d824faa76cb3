"""``make deploy``: the steps for a stage, from what preflight found (no AWS: the steps are
recorded, not run)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from aimaas.auth.pepper import create_pepper
from infra.deploy import (
    CDK,
    cdk_context,
    deploy_steps,
    deployed_console_origin,
    destroy_steps,
    execute,
)
from infra.preflight import BLOCKER, OK, TODO, Check, Clients
from infra.settings import InfraSettings


def _client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


def _clients() -> Clients:
    return Clients(_client("sts"), _client("lambda"), _client("service-quotas"), _client("ssm"))


def _checks(**outcomes: str) -> list[Check]:
    return [Check(name.replace("_", " "), outcome, "") for name, outcome in outcomes.items()]


def _console_stack(stubber: Stubber, url: str | None, stage: str = "dev") -> None:
    """describe_stacks of the stage's console stack: deployed with ``url``, or not deployed."""
    if url is None:
        stubber.add_client_error(
            "describe_stacks",
            "ValidationError",
            f"Stack with id aimaas-{stage}-console does not exist",
            expected_params={"StackName": f"aimaas-{stage}-console"},
        )
        return
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": f"aimaas-{stage}-console",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Outputs": [{"OutputKey": "ConsoleUrl", "OutputValue": url}],
                }
            ]
        },
        {"StackName": f"aimaas-{stage}-console"},
    )


def test_dev_on_a_fresh_account_bootstraps_makes_the_pepper_and_deploys() -> None:
    dev = InfraSettings.from_context({"stage": "dev"})
    context = cdk_context("dev", {})
    clients = _clients()
    cloudformation = _client("cloudformation")
    ran: list[tuple[str, ...]] = []
    steps = deploy_steps(
        dev,
        _checks(cdk_bootstrap=TODO, key_pepper=TODO, lambda_concurrency=OK),
        context,
        clients,
        cloudformation=cloudformation,
        run=ran.append,
    )
    console = "https://d111111abcdef8.cloudfront.net"
    with Stubber(clients.ssm) as ssm, Stubber(cloudformation) as cfn:
        _console_stack(cfn, console)
        ssm.add_response(
            "put_parameter",
            {"Version": 1, "Tier": "Standard"},
            {
                "Name": "/aimaas/dev/key-pepper",
                "Description": "aimaas dev: HMAC pepper of the API key hashes",
                "Value": ANY,
                "Type": "SecureString",
                "Overwrite": False,
            },
        )
        execute(steps, run=ran.append)
    assert ran == [
        (CDK, "bootstrap", "-c", "stage=dev"),
        (CDK, "deploy", "--all", "-c", "stage=dev", "--require-approval", "never"),
        # The console's domain exists now: the API may let it call (CORS).
        (
            *(CDK, "deploy", "aimaas-dev-serving", "aimaas-dev-api", "-c", "stage=dev"),
            *("-c", f"console_origin={console}", "--require-approval", "never"),
        ),
    ]


def test_a_redeploy_keeps_the_console_origin_and_needs_no_second_pass() -> None:
    cloudformation = _client("cloudformation")
    dev = InfraSettings.from_context({"stage": "dev"})
    with Stubber(cloudformation) as cfn:
        _console_stack(cfn, None)
        assert deployed_console_origin(cloudformation, dev) is None
        _console_stack(cfn, "https://d1.cloudfront.net")
        assert deployed_console_origin(cloudformation, dev) == "https://d1.cloudfront.net"
    known = InfraSettings.from_context(
        {"stage": "dev", "console_origin": "https://d1.cloudfront.net"}
    )
    ran: list[tuple[str, ...]] = []
    steps = deploy_steps(
        known,
        _checks(cdk_bootstrap=OK, key_pepper=OK),
        cdk_context("dev", {"console_origin": "https://d1.cloudfront.net"}),
        _clients(),
        cloudformation=None,  # never asked
        run=ran.append,
    )
    execute(steps, run=ran.append)
    assert ran == [
        (
            *(CDK, "deploy", "--all", "-c", "console_origin=https://d1.cloudfront.net"),
            *("-c", "stage=dev", "--require-approval", "never"),
        )
    ]


def test_a_gpu_stage_publishes_its_models_between_storage_and_the_rest() -> None:
    prod = InfraSettings.from_context({"stage": "prod"})
    context = cdk_context("prod", {"alarm_email": "oncall@example.com"})
    cloudformation = _client("cloudformation")
    ran: list[tuple[str, ...]] = []
    checks = _checks(cdk_bootstrap=OK, key_pepper=OK)
    steps = deploy_steps(prod, checks, context, _clients(), cloudformation, ran.append)
    with Stubber(cloudformation) as cfn:
        cfn.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "aimaas-prod-storage",
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": "ModelBucketName", "OutputValue": "bucket-1"}],
                    }
                ]
            },
            {"StackName": "aimaas-prod-storage"},
        )
        _console_stack(cfn, "https://d2.cloudfront.net", "prod")
        execute(steps, run=ran.append)
    flags = ("-c", "alarm_email=oncall@example.com", "-c", "stage=prod")
    assert ran[0] == (CDK, "deploy", "aimaas-prod-storage", *flags, "--require-approval", "never")
    assert ran[1][1:4] == ("-m", "model_export", "publish")
    assert ran[1][ran[1].index("--bucket") + 1] == "bucket-1"
    assert ran[2] == (CDK, "deploy", "--all", *flags, "--require-approval", "never")
    assert ran[3][-4:] == (
        "-c",
        "console_origin=https://d2.cloudfront.net",
        "--require-approval",
        "never",
    )


def test_destroy_is_one_cdk_command() -> None:
    ran: list[tuple[str, ...]] = []
    execute(destroy_steps(cdk_context("dev", {})), run=ran.append)
    assert ran == [(CDK, "destroy", "--all", "-c", "stage=dev", "--force")]


def test_a_blocker_is_reported_not_deployed(monkeypatch: Any, capsys: Any) -> None:
    import infra.deploy as deploy

    monkeypatch.setattr(
        deploy, "run_checks", lambda *a: [Check("sagemaker quota", BLOCKER, "0", "request")]
    )
    monkeypatch.setattr(deploy, "execute", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(deploy.Clients, "from_session", staticmethod(lambda session: _clients()))
    assert deploy.main(["--stage", "prod"]) == 1
    assert "preflight: blocked" in capsys.readouterr().out


def test_create_pepper_never_overwrites() -> None:
    ssm = _client("ssm")
    with Stubber(ssm) as stub:
        stub.add_client_error("put_parameter", service_error_code="ParameterAlreadyExists")
        with pytest.raises(ClientError, match="ParameterAlreadyExists"):
            create_pepper(ssm, "dev")
