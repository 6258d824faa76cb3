"""Alarms, their encrypted topic, the dashboard; and cdk-nag acknowledgements with reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(scope="module")
def dev(synth: Any) -> Any:
    return synth(stage="dev")


def test_alarms_cover_errors_latency_throttles_and_the_ledger(dev: Any) -> None:
    alarms = [
        a["Properties"] for a in dev.resources("observability", "AWS::CloudWatch::Alarm").values()
    ]
    by_metric = {(a.get("Namespace"), a.get("MetricName")) for a in alarms}
    assert ("AWS/ApiGateway", "5XXError") in by_metric
    assert ("AWS/ApiGateway", "Latency") in by_metric
    assert ("aimaas", "LedgerWriteFailures") in by_metric
    throttles = [a for a in alarms if a.get("MetricName") == "Throttles"]
    assert len(throttles) == 4  # text, media, authorizer, batch worker
    p99 = next(a for a in alarms if a.get("MetricName") == "Latency")
    assert p99["ExtendedStatistic"] == "p99"
    assert all(a["AlarmActions"] for a in alarms)


def test_topic_is_kms_encrypted_and_tls_only(dev: Any) -> None:
    (topic,) = dev.resources("observability", "AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]
    (policy,) = dev.resources("observability", "AWS::SNS::TopicPolicy").values()
    statement = json.dumps(policy["Properties"]["PolicyDocument"])
    assert "aws:SecureTransport" in statement


def test_dashboard_shows_api_lambda_and_per_model_metrics(dev: Any) -> None:
    (dashboard,) = dev.resources("observability", "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for needle in ("5XXError", "Latency", "ConcurrentExecutions", "Throttles", "ColdStart"):
        assert needle in body, needle
    assert "model" in body


@pytest.mark.parametrize("context", [{"stage": "dev"}, {"stage": "prod", "gpu_enabled": "false"}])
def test_cdk_nag_passes_with_a_reason_for_every_acknowledgement(synth: Any, context: dict) -> None:
    report = synth(**context).report()
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    assert plugin["conclusion"] == "success"
    assert plugin["violations"] == []
    for suppressed in plugin.get("suppressedViolations", []):
        assert len(suppressed["reason"]) > 30, suppressed["ruleName"]
