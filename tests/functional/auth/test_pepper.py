"""Where the key pepper comes from (aimaas.auth.pepper), against SSM on moto.

Issue 12, item 1: with a DynamoDB key store the admin CLI used the local default pepper unless an
environment variable was set, while the functions read SSM, so every key it issued was refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from unittest import mock

import boto3
import pytest
from typer.testing import CliRunner

from aimaas.auth.keys import DEFAULT_PEPPER
from aimaas.auth.pepper import (
    PEPPER_MAX_AGE_S,
    PepperError,
    clear_cache,
    default_parameter,
    pepper_source,
    read_pepper,
)
from aimaas.config import Settings
from aimaas.plans import load_catalog, usage_plan_name
from aimaas.wiring import build_authenticator, build_ledger
from aimaas_testing.metering import moto_tables

STAGE_PEPPER = "f" * 64
#: Where Powertools' parameter cache reads the clock.
POWERTOOLS_CACHE = "aws_lambda_powertools.utilities.parameters.base"


class _Later(datetime):
    """The clock one second past the pepper's max age."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return datetime.now(tz) + timedelta(seconds=PEPPER_MAX_AGE_S + 1)


@pytest.fixture
def aws() -> Iterator[dict[str, str]]:
    """moto tables and SSM, the stage's pepper stored as the operator stores it; no pepper in
    the environment (what an operator's shell has)."""
    with moto_tables() as env:
        env = {k: v for k, v in env.items() if k != "AIMAAS_KEY_PEPPER"}
        boto3.client("ssm").put_parameter(
            Name=default_parameter("dev"), Value=STAGE_PEPPER, Type="SecureString"
        )
        clear_cache()
        with mock.patch.dict(os.environ, {**env, "AIMAAS_STAGE": "dev"}):
            os.environ.pop("AIMAAS_KEY_PEPPER", None)
            yield env
        clear_cache()


def test_a_dynamodb_store_reads_the_stages_parameter_by_default(aws: dict[str, str]) -> None:
    settings = Settings.from_env({**aws, "AIMAAS_STAGE": "dev"})
    assert read_pepper(settings) == STAGE_PEPPER


def test_keys_the_admin_cli_issues_are_accepted_by_the_deployed_functions(
    aws: dict[str, str],
) -> None:
    from aimaas_admin.cli import app

    gateway = boto3.client("apigateway")
    for plan in load_catalog().plans:
        gateway.create_usage_plan(name=usage_plan_name("dev", plan))
    runner = CliRunner()
    run = ["--store", "aws", "--stage", "dev", "--actor", "ops"]
    created = runner.invoke(app, [*run, "tenant", "create", "Acme", "--id", "t_acme"])
    assert created.exit_code == 0, created.output
    issued = runner.invoke(app, [*run, "key", "create", "t_acme"])
    assert issued.exit_code == 0, issued.output
    key = issued.stdout.split("key:")[1].split()[0]
    # The functions' environment, as infra/stacks/serving.py sets it.
    lambda_env = {**aws, "AIMAAS_STAGE": "dev"}
    lambda_env["AIMAAS_KEY_PEPPER_PARAMETER"] = default_parameter("dev")
    settings = Settings.from_env(lambda_env)
    principal = build_authenticator(settings, build_ledger(settings)).authenticate(
        {"x-api-key": key}
    )
    assert principal.tenant_id == "t_acme"


def test_the_admin_cli_refuses_a_stage_without_a_pepper(aws: dict[str, str]) -> None:
    from aimaas_admin.cli import app

    result = CliRunner().invoke(app, ["--store", "aws", "--stage", "staging", "tenant", "list"])
    assert result.exit_code == 1
    assert "/aimaas/staging/key-pepper" in result.output
    assert "Traceback" not in result.output


def test_a_shared_store_never_starts_on_the_default_pepper(aws: dict[str, str]) -> None:
    from aimaas_admin import AdminService

    settings = Settings.from_env(
        {**aws, "AIMAAS_STAGE": "dev", "AIMAAS_KEY_PEPPER": DEFAULT_PEPPER}
    )
    with pytest.raises(PepperError, match="local default"):
        pepper_source(settings)
    with pytest.raises(PepperError, match="local default"):
        build_authenticator(settings, build_ledger(settings))  # the runtime, at start-up
    with pytest.raises(PepperError, match="local default"):
        AdminService(settings, actor="t", host="h")  # the admin, at start-up
    # A parameter holding the default is refused when read.
    boto3.client("ssm").put_parameter(
        Name="/aimaas/dev/weak", Value=DEFAULT_PEPPER, Type="SecureString"
    )
    weak = replace(
        settings, extra={**settings.extra, "AIMAAS_KEY_PEPPER_PARAMETER": "/aimaas/dev/weak"}
    )
    with pytest.raises(PepperError, match="local default"):
        read_pepper(weak)


def test_sqlite_keeps_the_local_default(tmp_path) -> None:
    settings = Settings(key_store="sqlite", sqlite_path=tmp_path / "k.db")
    assert read_pepper(settings) == DEFAULT_PEPPER
    assert pepper_source(settings)() == DEFAULT_PEPPER


def test_a_replaced_pepper_is_seen_after_the_max_age(aws: dict[str, str]) -> None:
    settings = Settings.from_env({**aws, "AIMAAS_STAGE": "dev"})
    authenticator = build_authenticator(settings, build_ledger(settings))
    assert authenticator.pepper == STAGE_PEPPER
    boto3.client("ssm").put_parameter(
        Name=default_parameter("dev"), Value="e" * 64, Type="SecureString", Overwrite=True
    )
    assert authenticator.pepper == STAGE_PEPPER  # within the max age: no SSM call
    with mock.patch(f"{POWERTOOLS_CACHE}.datetime", _Later):
        assert authenticator.pepper == "e" * 64  # what a running function sees after it


def test_an_ssm_error_on_refresh_keeps_the_last_pepper(aws: dict[str, str]) -> None:
    settings = Settings.from_env({**aws, "AIMAAS_STAGE": "dev"})
    assert read_pepper(settings) == STAGE_PEPPER
    boto3.client("ssm").delete_parameter(Name=default_parameter("dev"))
    with mock.patch(f"{POWERTOOLS_CACHE}.datetime", _Later):
        assert read_pepper(settings) == STAGE_PEPPER
    clear_cache()
    with pytest.raises(PepperError, match="put-parameter"):
        read_pepper(settings)
