"""The admin tooling against AWS (moto): DynamoDB tables, API Gateway keys, audit, reconcile."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from aimaas.config import Settings
from aimaas.plans import load_catalog, usage_plan_name
from aimaas_admin import AdminService
from aimaas_admin.cli import app
from aimaas_testing.metering import moto_tables, sample_record

DAY = date(2026, 5, 10)


@pytest.fixture
def aws():
    with moto_tables() as env, mock.patch.dict(os.environ, {**env, "AIMAAS_STAGE": "dev"}):
        gateway = boto3.client("apigateway")
        for plan in load_catalog().plans:
            gateway.create_usage_plan(name=usage_plan_name("dev", plan))
        yield gateway


def test_cli_store_aws_creates_gateway_keys_and_audits(aws) -> None:
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["--store", "aws", "--actor", "ops-bob", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    run("tenant", "create", "Acme", "--plan", "pro", "--id", "t_acme")
    issued = run("key", "create", "t_acme")
    key_id = issued.split("key_id: ")[1].split()[0]
    listed = json.loads(run("key", "list", "t_acme"))
    apigw_key_id = listed["apigw_key_id"]
    gateway_key = aws.get_api_key(apiKey=apigw_key_id, includeValue=True)
    assert gateway_key["enabled"] and gateway_key["tags"]["aimaas:key_id"] == key_id
    run("key", "revoke", key_id)
    assert apigw_key_id not in [k["id"] for k in aws.get_api_keys()["items"]]
    events = [json.loads(line) for line in run("audit", "list").splitlines()]
    assert [e["action"] for e in events][:4] == [
        "tenant.create",
        "key.create",
        "key.list",
        "key.revoke",
    ]
    assert {e["actor"] for e in events} == {"ops-bob"}
    # The audit table refuses overwrites: the adapter's condition holds.
    items = boto3.client("dynamodb").scan(TableName=os.environ["AIMAAS_AUDIT_TABLE"])["Items"]
    assert all(item["pk"]["S"].startswith("AUDIT#") for item in items)


def test_missing_usage_plan_is_a_clear_error_and_leaves_no_usable_key(aws) -> None:
    admin = AdminService(Settings.from_env(), actor="pytest")
    admin.create_tenant("Acme", plan="pro", tenant_id="t_x")
    admin.provisioner.stage = "prod"  # no usage plans named aimaas-prod-*
    admin.provisioner._plan_ids.clear()
    with pytest.raises(LookupError, match="aimaas-prod-pro"):
        admin.create_key("t_x")
    assert all(k.status == "revoked" for k in admin.store.list_keys("t_x"))


def test_reconcile_ledger_against_get_usage(aws) -> None:
    admin = AdminService(Settings.from_env(), actor="pytest")
    admin.create_tenant("Acme", plan="pro", tenant_id="t_acme")
    key_id, _ = admin.create_key("t_acme")
    other_key, _ = admin.create_key("t_acme")
    record = admin.store.get_key(key_id)
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC)
    for i in range(5):
        admin.ledger.put(
            sample_record(
                f"d0-{i}", tenant_id="t_acme", key_id=key_id, timestamp=start + timedelta(hours=i)
            )
        )
    for i in range(2):
        admin.ledger.put(
            sample_record(
                f"d1-{i}",
                tenant_id="t_acme",
                key_id=key_id,
                timestamp=start + timedelta(days=1, hours=i),
            )
        )
    admin.ledger.put(
        sample_record("other", tenant_id="t_acme", key_id=other_key, timestamp=start)
    )  # another key: not counted
    plan_id = admin.provisioner.usage_plan_id("pro")
    client = boto3.client("apigateway")
    stub = Stubber(client)
    params = {
        "usagePlanId": plan_id,
        "keyId": record.apigw_key_id,
        "startDate": "2026-05-10",
        "endDate": "2026-05-12",
    }
    # Page 1 ends mid-range; page 2 continues (GetUsage paginates with "position").
    stub.add_response(
        "get_usage",
        {
            "usagePlanId": plan_id,
            "startDate": "2026-05-10",
            "endDate": "2026-05-12",
            "position": "p2",
            "items": {record.apigw_key_id: [[6, 99994], [2, 99998]]},
        },
        params,
    )
    stub.add_response(
        "get_usage",
        {
            "usagePlanId": plan_id,
            "startDate": "2026-05-12",
            "endDate": "2026-05-12",
            "items": {record.apigw_key_id: [[0, 100000]]},
        },
        {**params, "position": "p2"},
    )
    with stub:
        report = admin.reconcile(key_id, DAY, DAY + timedelta(days=2), apigateway=client)
    stub.assert_no_pending_responses()
    assert [(d.day, d.ledger_calls, d.gateway_calls) for d in report.days] == [
        ("2026-05-10", 5, 6),
        ("2026-05-11", 2, 2),
        ("2026-05-12", 0, 0),
    ]
    assert not report.matched and report.over_billed_days == []
    assert report.days[0].difference == 1  # one request passed the gateway but was not billed

    stub = Stubber(client)
    stub.add_response(
        "get_usage",
        {
            "usagePlanId": plan_id,
            "startDate": "2026-05-10",
            "endDate": "2026-05-10",
            "items": {record.apigw_key_id: [[4, 99996]]},
        },
        {**params, "endDate": "2026-05-10"},
    )
    with stub:
        over = admin.reconcile(key_id, DAY, DAY, apigateway=client)
    assert over.over_billed_days == ["2026-05-10"]
    assert [
        e.action
        for e in admin.audit_events(
            start - timedelta(days=400), datetime.now(UTC) + timedelta(seconds=5)
        )
    ].count("reconcile") == 2


def test_reconcile_needs_the_aws_store(tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "--db",
            str(tmp_path / "x.db"),
            "reconcile",
            "nokey",
            "--start",
            "2026-05-01",
            "--end",
            "2026-05-02",
        ],
    )
    assert result.exit_code == 1 and "unknown key" in result.output
