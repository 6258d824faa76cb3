"""Deploy the CDK app's LocalStack profile into a running LocalStack, ready for the e2e suite.

What it does, in order (each step prints how long it took):

1. Synthesises the CDK app in-process-free (``python app.py`` with the context in
   ``CDK_CONTEXT_JSON``, as the CDK CLI passes it): ``profile=localstack``,
   ``upstream_url=<the local server>``. The profile uses a bootstrap-free synthesizer, so the
   templates deploy with plain CloudFormation calls.
2. Creates every stack of the assembly, in dependency order, with boto3 CloudFormation against
   LocalStack, and collects the outputs (REST API id, stage, bucket, KMS key, usage plans).
3. Works around two LocalStack gaps, so the deployment behaves as on AWS: re-applies the
   bucket's SSE-KMS default encryption (LocalStack's CloudFormation ignores
   ``BucketEncryption``), and gives methods without request models a parameters-only validator
   (LocalStack validates their binary bodies against the Empty model and fails with 500).
4. Creates the DynamoDB tables the LocalStack profile leaves out (LocalStack community cannot
   run DynamoDB without Docker) in moto_server, with the key schemas of ``aimaas.auth`` and
   ``aimaas.metering``, and the stage's key pepper in SSM (as ``make deploy`` does on AWS).
5. Publishes the model registry to the bucket: ``python -m model_export publish``.
6. Optionally creates a demo tenant and key with the admin CLI (``--store aws``: DynamoDB in
   moto_server, the API key and usage-plan key in LocalStack's API Gateway).
7. Writes a shell env file: the server's ``AIMAAS_*`` settings (S3 model store, DynamoDB keys
   and ledger, the stack's body limit) and the e2e suite's ``AIMAAS_E2E_*`` variables.

Endpoints come from ``AWS_ENDPOINT_URL`` (LocalStack) and ``AWS_ENDPOINT_URL_DYNAMODB``
(moto_server), as written by ``scripts/localstack.sh start`` to ``build/emulators/env``.

Usage::

    source build/emulators/env
    .venv/bin/python scripts/deploy_localstack.py --upstream-url http://127.0.0.1:8123 \\
        --registry build/registry --env-out build/e2e/localstack.env
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from aimaas.auth.pepper import create_pepper
from aimaas.plans import load_catalog

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
_BOTO = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60)


def log(message: str) -> None:
    print(f"[deploy_localstack] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Log a step with its wall time, so slow steps show up in CI output."""
    start = time.monotonic()
    log(f"{title} ...")
    yield
    log(f"{title}: done in {time.monotonic() - start:.1f} s")


# --- 1. synth --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackArtifact:
    """One CloudFormation stack of a cloud assembly."""

    artifact_id: str
    stack_name: str
    template: Path
    depends_on: tuple[str, ...] = ()


def synth(outdir: Path, context: Mapping[str, str]) -> list[StackArtifact]:
    """Synthesise ``app.py`` into ``outdir`` and return its stacks in deployment order.

    Parameters
    ----------
    outdir
        The cloud assembly folder (emptied first).
    context
        CDK context values, as ``-c key=value`` would give them.

    Returns
    -------
    list[StackArtifact]
        Stacks, each after the stacks it depends on.
    """
    subprocess.run(["rm", "-rf", str(outdir)], check=True)
    env = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps(dict(context)),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    subprocess.run([PYTHON, "app.py"], cwd=REPO, env=env, check=True)
    return read_assembly(outdir)


def read_assembly(outdir: Path) -> list[StackArtifact]:
    """Stacks of the cloud assembly in ``outdir``, in dependency order."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    stacks: dict[str, StackArtifact] = {}
    for artifact_id, artifact in manifest["artifacts"].items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        properties = artifact["properties"]
        stacks[artifact_id] = StackArtifact(
            artifact_id=artifact_id,
            stack_name=properties.get("stackName", artifact_id),
            template=outdir / properties["templateFile"],
            depends_on=tuple(artifact.get("dependencies", ())),
        )
    ordered: list[StackArtifact] = []
    seen: set[str] = set()

    def visit(artifact_id: str) -> None:
        if artifact_id in seen or artifact_id not in stacks:
            return
        seen.add(artifact_id)
        for dependency in stacks[artifact_id].depends_on:
            visit(dependency)
        ordered.append(stacks[artifact_id])

    for artifact_id in sorted(stacks):
        visit(artifact_id)
    return ordered


# --- 2. deploy -------------------------------------------------------------------------------


def deploy_stack(cfn: Any, stack: StackArtifact) -> dict[str, str]:
    """Create one stack and wait for it; return its outputs by output key.

    LocalStack keeps no state between runs (a fresh one per run), so this only ever creates.
    """
    cfn.create_stack(
        StackName=stack.stack_name,
        TemplateBody=stack.template.read_text(),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    waiter = cfn.get_waiter("stack_create_complete")
    try:
        waiter.wait(StackName=stack.stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 180})
    except Exception:
        events = cfn.describe_stack_events(StackName=stack.stack_name)["StackEvents"]
        for event in events[:15]:
            log(
                f"  {event['LogicalResourceId']} {event['ResourceStatus']} "
                f"{event.get('ResourceStatusReason', '')}"
            )
        raise
    description = cfn.describe_stacks(StackName=stack.stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}


@dataclass
class Deployment:
    """What the deployed stacks expose, found in their outputs."""

    rest_api_id: str
    stage: str
    bucket: str
    kms_key_id: str
    usage_plans: dict[str, str] = field(default_factory=dict)
    max_body_bytes: int = 0
    outputs: dict[str, str] = field(default_factory=dict)

    def base_url(self, endpoint: str) -> str:
        """The stage URL in LocalStack's path form (no DNS needed)."""
        return f"{endpoint.rstrip('/')}/_aws/execute-api/{self.rest_api_id}/{self.stage}"


#: The stack outputs this script reads (set by infra/stacks/api.py and storage.py).
OUTPUTS = {
    "rest_api_id": "RestApiId",
    "stage": "StageName",
    "bucket": "ModelBucketName",
    "kms_key_id": "KmsKeyId",
    "usage_plans": "UsagePlanIds",  # JSON {plan name: usage plan id}
    "max_body_bytes": "MaxBodyBytes",  # this target's raw body limit
}


def parse_outputs(outputs: Mapping[str, str]) -> Deployment:
    """Build a :class:`Deployment` from the merged outputs of every stack.

    Raises
    ------
    KeyError
        An expected output is missing (the message lists the outputs there are).
    """
    missing = sorted(key for key in OUTPUTS.values() if key not in outputs)
    if missing:
        raise KeyError(f"stack outputs {missing} missing; the stacks output {sorted(outputs)}")
    return Deployment(
        rest_api_id=outputs[OUTPUTS["rest_api_id"]],
        stage=outputs[OUTPUTS["stage"]],
        bucket=outputs[OUTPUTS["bucket"]],
        kms_key_id=outputs[OUTPUTS["kms_key_id"]],
        usage_plans=json.loads(outputs[OUTPUTS["usage_plans"]]),
        max_body_bytes=int(outputs[OUTPUTS["max_body_bytes"]]),
        outputs=dict(outputs),
    )


# --- 3. bucket encryption ---------------------------------------------------------------------


def enforce_bucket_kms(s3: Any, bucket: str, kms_key_id: str) -> None:
    """Set SSE-KMS default encryption (LocalStack's CloudFormation drops it)."""
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": kms_key_id,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )


def skip_body_validation_without_models(apigw: Any, rest_api_id: str, stage: str) -> list[str]:
    """Give methods without request models a validator that checks parameters only.

    AWS validates a body only against a model for its content type and skips validation when
    there is none. LocalStack 2026.3 validates such bodies against the ``Empty`` model instead:
    ``json.loads`` on an image or WAV raises and the call fails with 500 (LocalStack discussion
    #65). A methods-with-no-models validator changes nothing on AWS, so this brings LocalStack
    to AWS's behaviour without touching the template. Returns the patched ``METHOD path``s.
    """
    validators = {v["id"]: v for v in apigw.get_request_validators(restApiId=rest_api_id)["items"]}
    resources = apigw.get_resources(restApiId=rest_api_id, embed=["methods"], limit=500)["items"]
    affected = [
        (resource, http_method, validators[method["requestValidatorId"]])
        for resource in resources
        for http_method, method in (resource.get("resourceMethods") or {}).items()
        if method.get("requestValidatorId") in validators
        and validators[method["requestValidatorId"]].get("validateRequestBody")
        and not method.get("requestModels")
    ]
    if not affected:
        return []
    params_only = apigw.create_request_validator(
        restApiId=rest_api_id,
        name="params-only-localstack",
        validateRequestBody=False,
        validateRequestParameters=True,
    )["id"]
    for resource, http_method, _ in affected:
        apigw.update_method(
            restApiId=rest_api_id,
            resourceId=resource["id"],
            httpMethod=http_method,
            patchOperations=[
                {"op": "replace", "path": "/requestValidatorId", "value": params_only}
            ],
        )
    apigw.create_deployment(restApiId=rest_api_id, stageName=stage)
    return [f"{http_method} {resource['path']}" for resource, http_method, _ in affected]


# --- 4. DynamoDB tables in moto_server ---------------------------------------------------------


def create_tables(dynamodb: Any, prefix: str) -> dict[str, str]:
    """Create the tenants, usage and audit tables; return their names by role.

    The schemas are the storage kit's one definition (:data:`aimaas.storage.tables.TABLES`),
    the same the CDK app's AWS profile builds and the tests create in moto.
    """
    from aimaas.storage.dynamodb import create_tables as create_kit_tables
    from aimaas.storage.tables import TABLES

    names = {role: f"{prefix}-{role}" for role in TABLES}
    create_kit_tables(dynamodb, names)
    return names


# --- 5. publish, 6. demo key --------------------------------------------------------------------


def publish(registry: Path, deployment: Deployment, endpoint: str, prefix: str) -> None:
    """Upload the registry to the model bucket with the pipeline's own publish command."""
    subprocess.run(
        [
            PYTHON,
            "-m",
            "model_export",
            "publish",
            "--registry",
            str(registry),
            "--bucket",
            deployment.bucket,
            "--prefix",
            prefix,
            "--kms-key-id",
            deployment.kms_key_id,
            "--endpoint-url",
            endpoint,
        ],
        cwd=REPO,
        check=True,
    )


def check_published(s3: Any, deployment: Deployment, prefix: str) -> int:
    """Every published object is SSE-KMS with the stack's key; return how many there are.

    Raises
    ------
    RuntimeError
        An object is not encrypted with that key, or nothing was published.
    """
    checked = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=deployment.bucket, Prefix=prefix
    ):
        for item in page.get("Contents", []):
            head = s3.head_object(Bucket=deployment.bucket, Key=item["Key"])
            key_id = head.get("SSEKMSKeyId", "")
            if head.get("ServerSideEncryption") != "aws:kms" or not key_id.endswith(
                deployment.kms_key_id
            ):
                raise RuntimeError(f"s3://{deployment.bucket}/{item['Key']} is not SSE-KMS: {head}")
            checked += 1
    if not checked:
        raise RuntimeError(f"nothing published under s3://{deployment.bucket}/{prefix}")
    return checked


def admin(*args: str, env: Mapping[str, str]) -> str:
    """Run ``python -m aimaas_admin --store aws ...`` and return what it printed."""
    command = [PYTHON, "-m", "aimaas_admin", "--store", "aws", *args]
    done = subprocess.run(
        command, cwd=REPO, env=dict(env), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command[3:])} failed: {done.stderr[-2000:]}")
    return done.stdout


def demo_key(apigw: Any, deployment: Deployment, env: Mapping[str, str], plan: str) -> str:
    """A demo tenant and key made with the admin CLI, usable through the LocalStack gateway.

    The admin CLI stores the key (hashed) in DynamoDB and provisions its API Gateway usage
    identifier, as on AWS. The LocalStack profile has no authorizer to map one to the other, so
    its gateway must also know the customer's key itself: it is added as an API key with the
    same value to the plan's usage plan (the e2e suite does the same for its keys).
    """
    tenant = json.loads(admin("tenant", "create", "demo", "--plan", plan, env=env))
    printed = dict(
        line.split(":", 1)
        for line in admin("key", "create", tenant["tenant_id"], env=env).splitlines()
        if ":" in line
    )
    key = printed["key"].strip()
    created = apigw.create_api_key(
        name=f"demo-header-{printed['key_id'].strip()}", enabled=True, value=key
    )
    apigw.create_usage_plan_key(
        usagePlanId=deployment.usage_plans[plan], keyId=created["id"], keyType="API_KEY"
    )
    return key


# --- 7. env file --------------------------------------------------------------------------------


def env_lines(values: Mapping[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upstream-url", required=True, help="the local server API Gateway proxies to"
    )
    parser.add_argument("--registry", type=Path, default=REPO / "build" / "registry")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--outdir", type=Path, default=REPO / "build" / "cdk.localstack")
    parser.add_argument("--env-out", type=Path, help="write the server and e2e settings here")
    parser.add_argument("--model-prefix", default="models/")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "build" / "e2e" / "model-cache")
    parser.add_argument("--demo-key", action="store_true", help="create a demo tenant and key")
    args = parser.parse_args(argv)

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    dynamodb_endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", "")
    if not endpoint.startswith("http://127.0.0.1") or not dynamodb_endpoint:
        parser.error("source build/emulators/env first (AWS_ENDPOINT_URL[_DYNAMODB] not local)")
    session = boto3.session.Session()  # endpoints and test credentials from the environment
    started = time.monotonic()

    with step("synth (profile=localstack)"):
        stacks = synth(
            args.outdir,
            {"profile": "localstack", "upstream_url": args.upstream_url, "stage": args.stage},
        )
    outputs: dict[str, str] = {}
    cfn = session.client("cloudformation", config=_BOTO)
    for stack in stacks:
        with step(f"create stack {stack.stack_name}"):
            outputs.update(deploy_stack(cfn, stack))
    plans = list(load_catalog().plans)
    deployment = parse_outputs(outputs)
    log(f"REST API {deployment.rest_api_id}, stage {deployment.stage}, bucket {deployment.bucket}")
    missing = sorted(set(plans) - set(deployment.usage_plans))
    if missing:
        log(f"warning: no usage plan output for {missing}")

    with step("bucket SSE-KMS"):
        enforce_bucket_kms(
            session.client("s3", config=_BOTO), deployment.bucket, deployment.kms_key_id
        )
    with step("LocalStack body-validation gap"):
        patched = skip_body_validation_without_models(
            session.client("apigateway", config=_BOTO), deployment.rest_api_id, deployment.stage
        )
        if patched:
            log(f"parameters-only validator on {patched} (no model: AWS skips body validation)")
    with step("DynamoDB tables in moto_server"):
        tables = create_tables(session.client("dynamodb", config=_BOTO), f"aimaas-{args.stage}")
    with step("key pepper in SSM"):
        # As `make deploy` does on AWS: the server and the admin CLI (a DynamoDB key store)
        # read the stage's SecureString and refuse to run on the local default pepper.
        create_pepper(session.client("ssm", config=_BOTO), args.stage)
    with step(f"publish {args.registry}"):
        publish(args.registry, deployment, endpoint, args.model_prefix)
        count = check_published(session.client("s3", config=_BOTO), deployment, args.model_prefix)
        log(f"{count} objects, each SSE-KMS with key {deployment.kms_key_id}")

    server = {
        "AIMAAS_STAGE": args.stage,
        "AIMAAS_MODEL_STORE": "s3",
        "AIMAAS_MODEL_BUCKET": deployment.bucket,
        "AIMAAS_MODEL_PREFIX": args.model_prefix,
        "AIMAAS_MODEL_CACHE_DIR": str(args.cache_dir),
        "AIMAAS_KEY_STORE": "dynamodb",
        "AIMAAS_LEDGER": "dynamodb",
        "AIMAAS_TENANTS_TABLE": tables["tenants"],
        "AIMAAS_USAGE_TABLE": tables["usage"],
        "AIMAAS_AUDIT_TABLE": tables["audit"],
        # The limit the stack sets for this target (the HTTP proxy carries bodies unencoded).
        "AIMAAS_MAX_BODY_BYTES": str(deployment.max_body_bytes),
        # No Lambda reads moto_server's stream: the server counts each record itself.
        "AIMAAS_LEDGER_AGGREGATION": "inline",
    }
    e2e = {
        "AIMAAS_E2E_TARGET": "localstack",
        "AIMAAS_E2E_BASE_URL": deployment.base_url(endpoint),
        "AIMAAS_E2E_ADMIN": "--store aws",
        "AIMAAS_E2E_REGISTRY": str(args.registry.resolve()),
        # No Lambda authorizer here: the gateway compares x-api-key with its usage-plan keys.
        "AIMAAS_E2E_HEADER_KEY_PLANS": json.dumps(deployment.usage_plans),
    }
    if args.demo_key:
        with step("demo tenant and key (admin CLI, --store aws)"):
            apigw = session.client("apigateway", config=_BOTO)
            key = demo_key(apigw, deployment, {**os.environ, **server}, "free")
            log(f"demo key (shown once): {key}")
            log(f"try: curl -s {deployment.base_url(endpoint)}/v1/models -H 'x-api-key: {key}'")
    if args.env_out:
        args.env_out.parent.mkdir(parents=True, exist_ok=True)
        args.env_out.write_text(env_lines({**server, **e2e}))
        log(f"settings written to {args.env_out}")
    log(f"deployed in {time.monotonic() - started:.1f} s; stage URL {e2e['AIMAAS_E2E_BASE_URL']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
