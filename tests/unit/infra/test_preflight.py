"""``make preflight``: read-only checks of an account before a first deploy, against botocore's
Stubber (every call and its parameters are what AWS's API models accept; nothing else may be
called, so the checks provably only read)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.preflight import BLOCKER, OK, TODO, WARNING, Clients, blocked, report, run_checks
from infra.settings import InfraSettings

ACCOUNT = "123456789012"
REGION = "us-east-1"


def _client(service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@contextmanager
def stubbed(
    *,
    limit: int,
    unreserved: int,
    gpu_quota: float | None = None,
    pepper_type: str | None = "SecureString",
    bootstrap: str | None = "27",
    stage: str = "dev",
) -> Iterator[Clients]:
    clients = Clients(
        sts=_client("sts"),
        lambda_=_client("lambda"),
        quotas=_client("service-quotas"),
        ssm=_client("ssm"),
    )
    with ExitStack() as stack:
        stubs = {
            name: stack.enter_context(Stubber(getattr(clients, name)))
            for name in ("sts", "lambda_", "quotas", "ssm")
        }
        stubs["sts"].add_response(
            "get_caller_identity",
            {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/ops", "UserId": "AIDA"},
        )
        stubs["lambda_"].add_response(
            "get_account_settings",
            {
                "AccountLimit": {
                    "TotalCodeSize": 80530636800,
                    "CodeSizeUnzipped": 262144000,
                    "CodeSizeZipped": 52428800,
                    "ConcurrentExecutions": limit,
                    "UnreservedConcurrentExecutions": unreserved,
                },
                "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
            },
        )
        if gpu_quota is not None:
            stubs["quotas"].add_response(
                "list_service_quotas",
                {
                    "Quotas": [
                        {
                            "ServiceCode": "sagemaker",
                            "QuotaCode": "L-0000A0A1",
                            "QuotaName": "ml.g4dn.xlarge for endpoint usage",
                            "Value": 4.0,
                        },
                        {
                            "ServiceCode": "sagemaker",
                            "QuotaCode": "L-1928E07B",
                            "QuotaName": "ml.g5.xlarge for endpoint usage",
                            "Value": gpu_quota,
                        },
                    ]
                },
                {"ServiceCode": "sagemaker"},
            )
        name = f"/aimaas/{stage}/key-pepper"
        stubs["ssm"].add_response(
            "describe_parameters",
            {"Parameters": [{"Name": name, "Type": pepper_type}] if pepper_type else []},
            {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": [name]}]},
        )
        if bootstrap is None:
            stubs["ssm"].add_client_error(
                "get_parameter",
                service_error_code="ParameterNotFound",
                expected_params={"Name": "/cdk-bootstrap/hnb659fds/version"},
            )
        else:
            stubs["ssm"].add_response(
                "get_parameter",
                {"Parameter": {"Name": "/cdk-bootstrap/hnb659fds/version", "Value": bootstrap}},
                {"Name": "/cdk-bootstrap/hnb659fds/version"},
            )
        yield clients
        for stub in stubs.values():
            stub.assert_no_pending_responses()


def _outcomes(checks: list[Any]) -> dict[str, str]:
    return {check.name: check.outcome for check in checks}


def test_a_new_account_can_deploy_dev_but_is_told_about_its_limit() -> None:
    dev = InfraSettings.from_context({"stage": "dev"})
    with stubbed(limit=10, unreserved=10, pepper_type=None, bootstrap=None) as clients:
        checks = run_checks(dev, clients, REGION)
    assert _outcomes(checks) == {
        "account": OK,
        "lambda concurrency": WARNING,
        "key pepper": TODO,
        "cdk bootstrap": TODO,
    }
    assert not blocked(checks)
    text = report(checks)
    assert "--quota-code L-B99A9384 --desired-value 1000" in text
    assert "aws ssm put-parameter --type SecureString --name /aimaas/dev/key-pepper" in text
    assert f"cdk bootstrap aws://{ACCOUNT}/{REGION}" in text
    assert text.endswith("preflight: ready")


def test_prod_on_a_new_account_says_which_quotas_to_request() -> None:
    prod = InfraSettings.from_context({"stage": "prod"})
    assert prod.gpu_enabled and prod.reserved_concurrency == 30 and prod.gpu_max_instances == 2
    with stubbed(limit=10, unreserved=10, gpu_quota=0.0, stage="prod") as clients:
        checks = run_checks(prod, clients, REGION)
    outcomes = _outcomes(checks)
    assert outcomes["lambda concurrency"] == BLOCKER
    assert outcomes["sagemaker quota"] == BLOCKER
    assert blocked(checks)
    text = report(checks)
    assert "--service-code lambda --quota-code L-B99A9384 --desired-value 1000" in text
    assert "--service-code sagemaker --quota-code L-1928E07B --desired-value 2" in text
    assert "preflight: blocked" in text


def test_a_ready_prod_account_passes() -> None:
    prod = InfraSettings.from_context({"stage": "prod"})
    with stubbed(limit=1000, unreserved=1000, gpu_quota=2.0, stage="prod") as clients:
        checks = run_checks(prod, clients, REGION)
    assert set(_outcomes(checks).values()) == {OK}


def test_a_reservation_must_leave_100_unreserved() -> None:
    prod = InfraSettings.from_context({"stage": "prod", "gpu_enabled": "false"})
    with stubbed(limit=200, unreserved=120, stage="prod") as clients:
        (concurrency,) = [c for c in run_checks(prod, clients, REGION) if "lambda" in c.name]
    assert concurrency.outcome == BLOCKER  # 120 - 30 leaves 90


def test_a_plain_string_pepper_is_refused() -> None:
    dev = InfraSettings.from_context({"stage": "dev"})
    with stubbed(limit=1000, unreserved=1000, pepper_type="String") as clients:
        checks = run_checks(dev, clients, REGION)
    assert _outcomes(checks)["key pepper"] == BLOCKER


@pytest.mark.parametrize("version", ["5", "6"])
def test_bootstrap_version(version: str) -> None:
    dev = InfraSettings.from_context({"stage": "dev"})
    with stubbed(limit=1000, unreserved=1000, bootstrap=version) as clients:
        checks = run_checks(dev, clients, REGION)
    assert _outcomes(checks)["cdk bootstrap"] == (TODO if version == "5" else OK)


def test_no_credentials_is_one_clear_line(monkeypatch: Any, capsys: Any) -> None:
    from infra import preflight

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert preflight.main(["--stage", "dev"]) == 2
    assert "cannot check the account" in capsys.readouterr().out
