"""The stateless compute: inference functions (one container image, memory per model group) and
the REQUEST authorizer (a small zip function on the shared-code layer). AWS profile only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from aimaas.auth.pepper import default_parameter
from infra.assets import stage_core_layer
from infra.grants import (
    batch_objects_finding,
    classifier_bucket_name,
    classifier_objects_finding,
    grant_batch_objects,
    grant_classifier_objects,
)
from infra.nag import acknowledge
from infra.retention import retention
from infra.settings import REPO_ROOT
from infra.stacks.gpu import GpuStack
from infra.stacks.stage import StageStack

INFERENCE_DOCKERFILE = "functions/inference/Dockerfile"
AUTHORIZER_DIR = REPO_ROOT / "functions" / "authorizer"
METRICS_NAMESPACE = "aimaas"
INFERENCE_SERVICE = "aimaas-inference"
AUTHORIZER_SERVICE = "aimaas-authorizer"
#: AWS publishes the ARN of each Powertools v3 layer release (python3.12, arm64) in every
#: commercial region under this public SSM parameter; CloudFormation resolves it at deploy time.
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/arm64/python3.12/{version}"


def powertools_version(requirements: Path = AUTHORIZER_DIR / "requirements.txt") -> str:
    """The Powertools release the authorizer pins, so its layer is the library it was tested on.

    Raises
    ------
    ValueError
        ``requirements`` pins no exact ``aws-lambda-powertools`` version.
    """
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(
            r"aws-lambda-powertools(?:\[[^\]]*\])?==([0-9][0-9A-Za-z.]*)", line.strip()
        )
        if match:
            return match.group(1)
    raise ValueError(f"{requirements} pins no exact aws-lambda-powertools version")


#: API Gateway (REST) waits at most this long for an integration, then answers 504.
GATEWAY_TIMEOUT_S = 29
#: The inference functions stop before the gateway gives up: no work goes on for a client that
#: already has its 504.
FUNCTION_TIMEOUT_S = 28
#: Every request's own deadline (``AIMAAS_REQUEST_DEADLINE_S``), below both: GPU and ledger
#: retries are bounded by the time left, so an answer is billed only if it can still be sent.
REQUEST_DEADLINE_S = 25
#: A batch chunk (100 lines by default, ~50 ms a line on CPU) ends well within this.
BATCH_WORKER_TIMEOUT_S = 300
#: At most this many batch workers run at once (the SQS event source's maximum concurrency):
#: batches never take more of the account's concurrent executions, whatever their size, so they
#: cannot starve the synchronous functions. Between tenants, the chunk messages carry the tenant
#: as their MessageGroupId, which makes this standard queue an SQS fair queue: a tenant using a
#: disproportionate share of these workers (over 10 % of their recent processing time) has its
#: messages delivered after those of quiet tenants, so a big batch cannot starve a small one.
BATCH_MAX_CONCURRENCY = 10
BATCH_SERVICE = "aimaas-batch-worker"
#: The tags :class:`aimaas.auth.provisioner.ApiGatewayProvisioner` puts on each API key.
API_KEY_TAGS = ("aimaas:tenant", "aimaas:key_id")


@dataclass(frozen=True)
class ModelGroup:
    """Functions built from the same image, sized for the models they mostly serve."""

    name: str
    memory_mb: int
    tasks: tuple[str, ...]


# Text models are small and tokenise fast; vision/audio decode media and need more memory (and
# with it, proportionally more vCPU).
MODEL_GROUPS: tuple[ModelGroup, ...] = (
    ModelGroup("text", 2048, ("embeddings", "text-classification")),
    ModelGroup(
        "media",
        3008,
        (
            "image-classification",
            "object-detection",
            "audio-classification",
            "voice-activity-detection",
        ),
    ),
)


class ServingStack(StageStack):
    """Inference functions (published ``live`` aliases) and the authorizer.

    Attributes
    ----------
    aliases
        ``{model group name: alias}``: what API Gateway integrates with.
    functions
        ``{model group name: function}`` plus ``"authorizer"``.
    authorizer
        The REQUEST authorizer function.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gpu: GpuStack | None = None,
        **kwargs: object,
    ) -> None:
        # settings= and storage= are StageStack's (self.settings, self.storage).
        super().__init__(scope, construct_id, **kwargs)
        settings, storage = self.settings, self.storage
        dockerfile = REPO_ROOT / INFERENCE_DOCKERFILE
        if not dockerfile.is_file():
            raise FileNotFoundError(
                f"{INFERENCE_DOCKERFILE} is missing: the serving image needs it"
            )
        if not (AUTHORIZER_DIR / "handler.py").is_file():
            raise FileNotFoundError(f"{AUTHORIZER_DIR}/handler.py is missing")

        tables = {env: spec.name(settings) for env, spec in storage.table_specs.items()}
        common_env = {
            "AIMAAS_STAGE": settings.stage,
            "AIMAAS_KEY_STORE": "dynamodb",
            "AIMAAS_LEDGER": "dynamodb",
            **tables,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "AIMAAS_KEY_PEPPER_PARAMETER": self.pepper_parameter,
            "AIMAAS_MAX_BODY_BYTES": str(settings.features.max_body_bytes),
            # Only the functions that serve or run batches get the AWS batch adapters (below);
            # without this one the app would wire the local adapters, whose SQLite file and
            # worker thread have no place in a Lambda (read-only /var/task).
            "AIMAAS_BATCH_QUEUE": "none",
        }
        # One image for every group: synth only copies the build context (filtered by the repo's
        # .dockerignore), the image is built at deploy time.
        image = lambda_.DockerImageCode.from_image_asset(
            str(REPO_ROOT),
            file=INFERENCE_DOCKERFILE,
            # The stage's CPU models go into the image with their weights (the rest keep only
            # their manifests: the catalogue lists them, the GPU serves them).
            build_args={"MODELS": " ".join(settings.cpu_models)},
            platform=ecr_assets.Platform.LINUX_ARM64,
            ignore_mode=cdk.IgnoreMode.DOCKER,
        )

        # The Batch API: served by the text group (the /v1 catch-all route), run by the worker.
        batches = "AIMAAS_BATCHES_TABLE" in tables
        batch_env: dict[str, str] = {}
        self.batch_dead_letters: sqs.Queue | None = None
        if batches:
            self.batch_queue = self._batch_queue()
            batch_env = {
                "AIMAAS_BATCH_FILE_STORE": "s3",
                "AIMAAS_BATCH_JOB_STORE": "dynamodb",
                "AIMAAS_BATCH_QUEUE": "sqs",
                "AIMAAS_BATCH_BUCKET": classifier_bucket_name(settings, self),
                "AIMAAS_BATCH_QUEUE_URL": self.batch_queue.queue_url,
                "AIMAAS_KMS_KEY_ID": storage.key.key_arn,
            }

        self.functions: dict[str, lambda_.Function] = {}
        self.aliases: dict[str, lambda_.Alias] = {}
        for group in MODEL_GROUPS:
            env = {
                **common_env,
                # Models are baked into the image: the functions never read the model bucket.
                "AIMAAS_MODEL_STORE": "folder",
                "AIMAAS_TRUST_AUTHORIZER": "true",
                "AIMAAS_GPU_BACKEND": "sagemaker" if gpu else "none",
                "AIMAAS_MODEL_GROUP": group.name,
                "AIMAAS_REQUEST_DEADLINE_S": str(REQUEST_DEADLINE_S),
                "POWERTOOLS_SERVICE_NAME": INFERENCE_SERVICE,
            }
            if gpu:
                env["AIMAAS_SAGEMAKER_ENDPOINT"] = gpu.endpoint_name
            if settings.console_origin:
                # The browser console's origin (its distribution or custom domain): the one
                # origin whose pages may call the API (the app's CORS middleware).
                env["AIMAAS_CONSOLE_ORIGIN"] = settings.console_origin
            classifiers = group.name == "text" and "AIMAAS_CLASSIFIERS_TABLE" in tables
            if classifiers:  # /v1/classifiers and their predictions reach the text group
                env["AIMAAS_CLASSIFIER_STORE"] = "aws"
                env["AIMAAS_CLASSIFIER_BUCKET"] = classifier_bucket_name(settings, self)
                env["AIMAAS_KMS_KEY_ID"] = storage.key.key_arn
            serves_batches = batches and group.name == "text"
            if serves_batches:
                env.update(batch_env)
            function = lambda_.DockerImageFunction(
                self,
                f"{group.name.title()}Function",
                description=f"aimaas {settings.stage} inference ({', '.join(group.tasks)})",
                code=image,
                architecture=lambda_.Architecture.ARM_64,
                memory_size=group.memory_mb,
                timeout=cdk.Duration.seconds(FUNCTION_TIMEOUT_S),
                # 0 means "no reservation" here; Lambda would read 0 as "always throttle".
                reserved_concurrent_executions=(
                    settings.text_reserved_concurrency
                    if group.name == "text"
                    else settings.media_reserved_concurrency
                )
                or None,
                environment=env,
                **self._role_and_logs(group.name.title()),
                tracing=lambda_.Tracing.ACTIVE,
            )
            # The ledger only adds records and counters (a transaction of conditional puts and
            # updates); the audit log is the admin's, never the internet-facing function's.
            self._grant_tables(
                function,
                read=("AIMAAS_TENANTS_TABLE",),
                write=(
                    "AIMAAS_USAGE_TABLE",
                    *(("AIMAAS_BATCHES_TABLE",) if serves_batches else ()),
                ),
            )
            if serves_batches:  # uploads, outputs and queueing the chunks of a new batch
                grant_batch_objects(function, settings, self)
                function.add_to_role_policy(
                    iam.PolicyStatement(
                        actions=["sqs:SendMessage"], resources=[self.batch_queue.queue_arn]
                    )
                )
            if classifiers:
                self._grant_classifiers(function)
            if group.name == "text" and "AIMAAS_AUDIT_TABLE" in tables:
                # /v1/keys and /v1/audit reach the text group (the /v1 catch-all).
                self._grant_self_service_keys(function)
            # The app builds the same authenticator at start-up (admin routes, local parity).
            self._grant_pepper(function)
            if gpu:
                # A streamed chat completion reads the endpoint's response stream.
                function.add_to_role_policy(
                    iam.PolicyStatement(
                        actions=[
                            "sagemaker:InvokeEndpoint",
                            "sagemaker:InvokeEndpointWithResponseStream",
                        ],
                        resources=[gpu.endpoint_arn],
                    )
                )
            self.functions[group.name] = function
            self.aliases[group.name] = self._alias(group.name, function)

        if batches:
            worker_env = {
                **common_env,
                **batch_env,
                "AIMAAS_MODEL_STORE": "folder",
                "AIMAAS_GPU_BACKEND": "sagemaker" if gpu else "none",
                "POWERTOOLS_SERVICE_NAME": BATCH_SERVICE,
            }
            if gpu:
                worker_env["AIMAAS_SAGEMAKER_ENDPOINT"] = gpu.endpoint_name
            self.batch_worker = self._batch_worker(worker_env, gpu)
            self.functions["batch_worker"] = self.batch_worker

        self.authorizer = self._authorizer(common_env)
        self.functions["authorizer"] = self.authorizer
        self._acknowledge_generated_policies()

    # -- pieces ---------------------------------------------------------------------------------

    def _batch_queue(self) -> sqs.Queue:
        """The chunk queue (KMS, TLS only) and its dead-letter queue: a chunk that fails five
        deliveries is kept there 14 days for an operator instead of retrying for ever."""
        key = self.storage.key
        dead = sqs.Queue(
            self,
            "BatchDeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        acknowledge(dead, {"AwsSolutions-SQS3": "This is the batch queue's dead-letter queue."})
        self.batch_dead_letters = dead  # the observability stack alarms on its depth
        return sqs.Queue(
            self,
            "BatchQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=cdk.Duration.hours(1),  # fewer KMS calls per message
            enforce_ssl=True,
            # Six times the worker's timeout, as AWS advises for a Lambda event source.
            visibility_timeout=cdk.Duration.seconds(6 * BATCH_WORKER_TIMEOUT_S),
            retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead, max_receive_count=5),
        )

    def _batch_worker(self, env: Mapping[str, str], gpu: GpuStack | None) -> lambda_.Function:
        """The batch worker: the inference image with another command, fed by the chunk queue."""
        worker = lambda_.DockerImageFunction(
            self,
            "BatchWorkerFunction",
            description=f"aimaas {self.settings.stage} batch worker (SQS chunks)",
            code=lambda_.DockerImageCode.from_image_asset(
                str(REPO_ROOT),
                file=INFERENCE_DOCKERFILE,
                build_args={"MODELS": " ".join(self.settings.cpu_models)},
                platform=ecr_assets.Platform.LINUX_ARM64,
                ignore_mode=cdk.IgnoreMode.DOCKER,
                cmd=["batch_worker_handler.handler"],
            ),
            architecture=lambda_.Architecture.ARM_64,
            memory_size=max(g.memory_mb for g in MODEL_GROUPS),  # it runs every task's models
            timeout=cdk.Duration.seconds(BATCH_WORKER_TIMEOUT_S),
            environment=dict(env),
            **self._role_and_logs("BatchWorker"),
            tracing=lambda_.Tracing.ACTIVE,
        )
        worker.add_event_source(
            event_sources.SqsEventSource(
                self.batch_queue,
                batch_size=1,  # one chunk per invocation: a failure redelivers only it
                report_batch_item_failures=True,
                max_concurrency=BATCH_MAX_CONCURRENCY,
            )
        )
        # Keys are read for the plan's hard limit, usage recorded once per line, the job's
        # counts updated; the pepper as the inference functions (the same authenticator).
        self._grant_tables(
            worker,
            read=("AIMAAS_TENANTS_TABLE",),
            write=("AIMAAS_USAGE_TABLE", "AIMAAS_BATCHES_TABLE"),
        )
        grant_batch_objects(worker, self.settings, self)
        self._grant_pepper(worker)
        if gpu:
            worker.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["sagemaker:InvokeEndpoint"], resources=[gpu.endpoint_arn]
                )
            )
        return worker

    def _role_and_logs(self, name: str) -> dict[str, iam.Role | logs.LogGroup]:
        """A role of its own and an encrypted log group with the stage's retention.

        No AWSLambdaBasicExecutionRole: the role may write to its own log group only.
        """
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"aimaas {self.settings.stage} {name} function",
        )
        group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=retention(self.settings.log_retention_days),
            encryption_key=self.storage.key,
            removal_policy=(
                cdk.RemovalPolicy.RETAIN if self.settings.retain_data else cdk.RemovalPolicy.DESTROY
            ),
        )
        group.grant_write(role)
        return {"role": role, "log_group": group}

    def _alias(self, name: str, function: lambda_.Function) -> lambda_.Alias:
        provisioned = self.settings.provisioned_concurrency
        alias = lambda_.Alias(
            self,
            f"{name.title()}Live",
            alias_name="live",
            version=function.current_version,
            provisioned_concurrent_executions=provisioned or None,
        )
        return alias

    def _table_arns(self, env_var: str) -> list[str]:
        spec = self.storage.table_specs[env_var]
        table = self.format_arn(
            service="dynamodb", resource="table", resource_name=spec.name(self.settings)
        )
        return [table, *(f"{table}/index/{index}" for index in spec.gsis)]

    def _grant_tables(
        self,
        function: lambda_.IFunction,
        *,
        read: tuple[str, ...] = (),
        write: tuple[str, ...] = (),
        update: tuple[str, ...] = (),
    ) -> None:
        """Item-level DynamoDB access on named tables and indexes; no wildcard actions."""
        read_actions = [
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DescribeTable",
        ]
        write_actions = ["dynamodb:PutItem", "dynamodb:UpdateItem"]
        if read:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=read_actions,
                    resources=[arn for env in read for arn in self._table_arns(env)],
                )
            )
        if write:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=read_actions + write_actions,
                    resources=[arn for env in write for arn in self._table_arns(env)],
                )
            )
        if update:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["dynamodb:UpdateItem"],
                    resources=[self._table_arns(env)[0] for env in update],
                )
            )
        # Tables use the stage's customer-managed key: DynamoDB calls KMS as the caller.
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[self.storage.key.key_arn],
            )
        )

    def _grant_classifiers(self, function: lambda_.IFunction) -> None:
        """The tenants' classifiers: objects under ``classifiers/``, their metadata items
        (created and deleted by their owners through the API), and appending the create/delete
        events to the audit log (PutItem only: the function can neither read nor change it)."""
        grant_classifier_objects(function, self.settings, self)
        (table,) = self._table_arns("AIMAAS_CLASSIFIERS_TABLE")
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[table],
            )
        )
        (audit,) = self._table_arns("AIMAAS_AUDIT_TABLE")
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[audit])
        )

    def _grant_self_service_keys(self, function: lambda_.IFunction) -> None:
        """What :class:`aimaas.auth.lifecycle.KeyLifecycle` does for ``/v1/keys``, and what
        ``/v1/audit`` reads; nothing else.

        - the key store: new key items and revocations, ``PutItem``/``UpdateItem`` only on
          items whose partition key is ``KEY#...`` (``dynamodb:LeadingKeys``), so the function
          can never write a tenant (its plan or status);
        - the audit log: append (``PutItem``) and the console's list (``Query``);
        - API Gateway (:class:`aimaas.auth.provisioner.ApiGatewayProvisioner`): find the usage
          plan by name (``GET /usageplans``), create the key with its two tags, add it to the
          plan; disable, delete and take it out of the plan on revocation. The usage plans are
          the API stack's, made after this one: their ids cannot be named here (a cycle), so
          the plan-key paths take any plan id; the API keys have generated ids.
        """
        (tenants, *_) = self._table_arns("AIMAAS_TENANTS_TABLE")
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[tenants],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["KEY#*"]}},
            )
        )
        (audit,) = self._table_arns("AIMAAS_AUDIT_TABLE")
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:PutItem", "dynamodb:Query"], resources=[audit])
        )
        gateway = f"arn:{self.partition}:apigateway:{self.region}::"
        for actions, paths, conditions in (
            (["apigateway:GET"], ["/usageplans"], None),
            (["apigateway:POST"], ["/apikeys", "/usageplans/*/keys"], None),
            (["apigateway:PATCH", "apigateway:DELETE"], ["/apikeys/*"], None),
            (["apigateway:DELETE"], ["/usageplans/*/keys/*"], None),
            # Tag-on-create (CreateApiKey's tags are a TagResource, PUT /tags/<arn>), limited
            # to the provisioner's two tag keys.
            (
                ["apigateway:PUT"],
                ["/tags/*"],
                {"ForAllValues:StringEquals": {"aws:TagKeys": list(API_KEY_TAGS)}},
            ),
        ):
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=actions,
                    resources=[f"{gateway}{path}" for path in paths],
                    conditions=conditions,
                )
            )

    @property
    def pepper_parameter(self) -> str:
        """The SSM SecureString holding the key-hash pepper (``make deploy`` creates it once);
        the runtime's own default name for the stage, so the admin CLI finds the same one."""
        return default_parameter(self.settings.stage)

    def _grant_pepper(self, function: lambda_.IFunction) -> None:
        # SecureString parameters cannot be created by CloudFormation; the default aws/ssm key
        # lets any principal allowed to read the parameter decrypt it through SSM.
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter"],
                resources=[
                    self.format_arn(
                        service="ssm",
                        resource="parameter",
                        resource_name=self.pepper_parameter.lstrip("/"),
                    )
                ],
            )
        )

    def _authorizer(self, common_env: Mapping[str, str]) -> lambda_.Function:
        layer = lambda_.LayerVersion(
            self,
            "CoreLayer",
            code=lambda_.Code.from_asset(str(stage_core_layer())),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="aimaas runtime core (python/aimaas) with aimaas/data/*.toml",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            ssm.StringParameter.value_for_string_parameter(
                self, POWERTOOLS_LAYER_PARAMETER.format(version=powertools_version())
            ),
        )
        function = lambda_.Function(
            self,
            "AuthorizerFunction",
            description=f"aimaas {self.settings.stage} API key authorizer",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(
                str(AUTHORIZER_DIR), exclude=["__pycache__", "*.pyc", "tests"]
            ),
            layers=[layer, powertools],
            memory_size=512,
            timeout=cdk.Duration.seconds(10),
            environment={**common_env, "POWERTOOLS_SERVICE_NAME": AUTHORIZER_SERVICE},
            **self._role_and_logs("Authorizer"),
            tracing=lambda_.Tracing.ACTIVE,
        )
        # Its contract (functions/authorizer/handler.py): read keys/tenants and stamp a key's
        # last_used_at, read the usage counters for hard limits, read the key pepper. Nothing
        # in API Gateway: usage identifiers are derived from the key id and the pepper.
        self._grant_tables(
            function,
            read=("AIMAAS_TENANTS_TABLE", "AIMAAS_USAGE_TABLE"),
            update=("AIMAAS_TENANTS_TABLE",),
        )
        self._grant_pepper(function)
        acknowledge(
            function,
            {
                "AwsSolutions-L1": "Pinned to python3.12 on purpose: the Powertools v3 layer "
                "and the container image base are built for 3.12; upgrade them together."
            },
        )
        return function

    def _acknowledge_generated_policies(self) -> None:
        reasons = {
            "AwsSolutions-IAM5[Resource::*]": "X-Ray PutTraceSegments/PutTelemetryRecords "
            "(added by active tracing) support no resource-level scoping.",
        }
        batch_roles = (
            ("Text", "BatchWorker") if "AIMAAS_BATCHES_TABLE" in self.storage.table_specs else ()
        )
        for name in (*(g.name.title() for g in MODEL_GROUPS), "Authorizer", *batch_roles[1:]):
            role = self.node.find_child(f"{name}Role")
            extra = {}
            if name in batch_roles:
                extra[batch_objects_finding(self.settings)] = (
                    "Batch files: under batch/ only, keyed per tenant and batch at run time."
                )
            if name == "Text" and "AIMAAS_CLASSIFIERS_TABLE" in self.storage.table_specs:
                extra[classifier_objects_finding(self.settings)] = (
                    "Tenants' classifier objects: under classifiers/ only, keyed per tenant and "
                    "classifier at run time."
                )
            if name == "Text" and "AIMAAS_AUDIT_TABLE" in self.storage.table_specs:
                gateway = "arn:<AWS::Partition>:apigateway:<AWS::Region>::"
                why = (
                    "Self-service keys (KeyLifecycle): API Gateway API keys get generated ids, "
                    "and the usage plans are made by the API stack after this one, so their "
                    "ids cannot be named here without a cross-stack cycle."
                )
                for path in ("/apikeys/*", "/usageplans/*/keys", "/usageplans/*/keys/*"):
                    extra[f"AwsSolutions-IAM5[Resource::{gateway}{path}]"] = why
                extra[f"AwsSolutions-IAM5[Resource::{gateway}/tags/*]"] = (
                    "Tag-on-create of the self-service API keys; only the provisioner's two tag "
                    "keys (aws:TagKeys condition)."
                )
            acknowledge(role.node.find_child("DefaultPolicy"), {**reasons, **extra})
