"""No issued key ever reaches a log line, stdout or stderr: every flow that touches keys runs
with all loggers at DEBUG (botocore included) and file-descriptor capture, then we search."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from types import SimpleNamespace
from unittest import mock

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aimaas.errors import ApiError
from aimaas.metering import Meter
from aimaas_admin.cli import app as cli_app
from aimaas_testing.metering import FlakyLedger, sample_record


def test_keys_never_logged(world, caplog, capfd, tmp_path) -> None:
    caplog.set_level(logging.DEBUG)  # root and every library logger
    issued: list[str] = []
    tenant = world.admin.create_tenant("Leaky?", plan="free")
    for _ in range(3):
        issued.append(world.admin.create_key(tenant.tenant_id)[1])
    revoked_id, revoked = world.admin.create_key(tenant.tenant_id)
    issued.append(revoked)
    world.admin.revoke_key(revoked_id)
    rotated_id, rotated = world.admin.create_key(tenant.tenant_id)
    issued.append(rotated)
    issued.append(world.admin.rotate_key(rotated_id, grace_seconds=60)[1])
    forged = issued[0][:-3] + "xyz"
    other_tenant = world.admin.create_tenant("Other")
    other = world.admin.create_key(other_tenant.tenant_id)[1]
    issued.append(other)

    # The authenticator: success, every failure kind, both headers.
    attempts = (
        [{"x-api-key": k} for k in issued]
        + [{"Authorization": f"Bearer {k}"} for k in issued]
        + [
            {"x-api-key": forged},
            {"x-api-key": issued[0], "Authorization": f"Bearer {other}"},
            {"Authorization": f"Token {issued[1]}"},
        ]
    )
    for headers in attempts:
        try:
            world.authenticator.authenticate(headers)
        except ApiError as error:
            assert all(k not in error.message for k in issued)

    # Through the real app (its middleware and error handlers log too).
    client = TestClient(world.app())
    for headers in attempts:
        client.get("/v1/usage", headers=headers)
        client.get("/v1/usage", params={"tenant_id": "t_someone"}, headers=headers)

    # The meter under faults (logs retries and the not-served error).
    meter = Meter(
        FlakyLedger(world.ledger, fail_before=0.5, seed=3), attempts=2, sleep=lambda _: None
    )
    for i in range(20):
        with contextlib.suppress(ApiError):
            meter.record(sample_record(f"log-{i}", tenant_id=tenant.tenant_id))

    # The Lambda authorizer (Powertools logs JSON to stdout), DynamoDB back end only.
    if world.name == "dynamodb":
        env = {
            "AIMAAS_KEY_STORE": "dynamodb",
            "AIMAAS_LEDGER": "dynamodb",
            "AIMAAS_TENANTS_TABLE": world.settings.tenants_table,
            "AIMAAS_USAGE_TABLE": world.settings.usage_table,
            "AIMAAS_KEY_PEPPER": "test-pepper",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
        }
        with mock.patch.dict(os.environ, env):
            module = importlib.import_module("functions.authorizer.handler")
            module.authenticator.cache_clear()
            module.logger.setLevel("DEBUG")
            context = SimpleNamespace(
                function_name="f",
                memory_limit_in_mb=128,
                invoked_function_arn="arn:aws:lambda:us-east-1:1:function:f",
                aws_request_id="r",
            )
            for headers in attempts:
                event = {
                    "type": "REQUEST",
                    "methodArn": "arn:aws:execute-api:us-east-1:1:a/s/GET/x",
                    "headers": headers,
                    "path": "/x",
                }
                try:
                    module.handler(event, context)
                except Exception as error:
                    assert str(error) == "Unauthorized"
            module.authenticator.cache_clear()

    # The CLI shows a new key once, on its own output; it must not log it.
    db = tmp_path / "cli.db"
    runner = CliRunner()
    runner.invoke(cli_app, ["--db", str(db), "tenant", "create", "T", "--id", "t_cli"])
    shown = runner.invoke(cli_app, ["--db", str(db), "key", "create", "t_cli"])
    cli_key = shown.stdout.split("key:    ")[1].split()[0]
    assert shown.stdout.count(cli_key) == 1
    issued.append(cli_key)
    for args in (
        ["key", "list", "t_cli"],
        ["audit", "list"],
        ["audit", "export", "--format", "csv"],
    ):
        result = runner.invoke(cli_app, ["--db", str(db), *args])
        assert cli_key not in result.output

    captured = capfd.readouterr()
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert len(caplog.records) > 50  # the flows really logged
    for key in issued:
        secret = key.split("_", 2)[2]
        for where, text in (("logs", logged), ("stdout", captured.out), ("stderr", captured.err)):
            assert key not in text, f"an issued key appeared in {where}"
            assert secret not in text, f"the secret part of a key appeared in {where}"
