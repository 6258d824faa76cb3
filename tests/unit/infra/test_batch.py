"""The Batch API's AWS engine: chunk queue with a dead-letter queue, the worker on the
inference image, least-privilege grants, and batch files that expire."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.infra.test_serving import FORBIDDEN_ACTION


@pytest.fixture(scope="module")
def dev(synth: Any) -> Any:
    return synth(stage="dev")


def _by_service(dev: Any) -> dict[str, dict[str, Any]]:
    functions = dev.resources("serving", "AWS::Lambda::Function").values()
    return {
        p["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        + ("/" + p["Properties"]["Environment"]["Variables"].get("AIMAAS_MODEL_GROUP", "")): p
        for p in functions
    }


def test_the_chunk_queue_is_encrypted_and_dead_letters_after_five_tries(dev: Any) -> None:
    queues = dev.resources("serving", "AWS::SQS::Queue")
    assert len(queues) == 2
    for queue in queues.values():
        assert "KmsMasterKeyId" in queue["Properties"]
    (main,) = (q for q in queues.values() if "RedrivePolicy" in q["Properties"])
    assert main["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5
    assert main["Properties"]["VisibilityTimeout"] == 6 * 300
    policies = dev.resources("serving", "AWS::SQS::QueuePolicy")
    denies = [
        s
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
    ]
    assert denies and all(
        s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies
    )


def test_the_worker_is_the_inference_image_with_its_own_command_and_a_bounded_source(
    dev: Any,
) -> None:
    functions = _by_service(dev)
    worker = functions["aimaas-batch-worker/"]["Properties"]
    text = functions["aimaas-inference/text"]["Properties"]
    media = functions["aimaas-inference/media"]["Properties"]
    assert worker["PackageType"] == "Image"
    assert worker["ImageConfig"]["Command"] == ["batch_worker_handler.handler"]
    assert worker["Code"] == text["Code"]  # one image, built once
    env = worker["Environment"]["Variables"]
    for variables in (env, text["Environment"]["Variables"]):
        assert variables["AIMAAS_BATCH_QUEUE"] == "sqs"
        assert variables["AIMAAS_BATCH_FILE_STORE"] == "s3"
        assert variables["AIMAAS_BATCH_JOB_STORE"] == "dynamodb"
        assert variables["AIMAAS_BATCHES_TABLE"] == "aimaas-dev-batches"
    assert media["Environment"]["Variables"]["AIMAAS_BATCH_QUEUE"] == "none"
    (mapping,) = dev.resources("serving", "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["BatchSize"] == 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"]["MaximumConcurrency"] == 10


def test_batch_grants_name_exact_actions_on_batch_objects_only(dev: Any) -> None:
    policies = dev.resources("serving", "AWS::IAM::Policy")
    statements = [
        s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    for statement in statements:
        actions = statement["Action"]
        for action in actions if isinstance(actions, list) else [actions]:
            assert not FORBIDDEN_ACTION.match(action), statement
    batch_objects = [s for s in statements if "batch/*" in str(s["Resource"])]
    assert len(batch_objects) == 2  # the text function and the worker
    for statement in batch_objects:
        assert sorted(statement["Action"]) == ["s3:GetObject", "s3:PutObject"]
    senders = [s for s in statements if s["Action"] == "sqs:SendMessage"]
    assert len(senders) == 1


def test_batch_files_expire_with_their_records(dev: Any) -> None:
    from aimaas.batch.jobs import RETENTION
    from infra.grants import BATCH_PREFIX, BATCH_RETENTION_DAYS

    assert RETENTION.days == BATCH_RETENTION_DAYS
    buckets = dev.resources("storage", "AWS::S3::Bucket").values()
    rules = [
        rule
        for b in buckets
        for rule in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
        if rule.get("Prefix") == BATCH_PREFIX
    ]
    assert len(rules) == 1 and rules[0]["ExpirationInDays"] == BATCH_RETENTION_DAYS


def test_a_chunk_in_the_dead_letter_queue_raises_an_alarm(dev: Any) -> None:
    alarms = [
        a["Properties"] for a in dev.resources("observability", "AWS::CloudWatch::Alarm").values()
    ]
    (dead,) = (a for a in alarms if a.get("MetricName") == "ApproximateNumberOfMessagesVisible")
    assert dead["Namespace"] == "AWS/SQS" and dead["Threshold"] == 1
    assert dead["AlarmActions"]
