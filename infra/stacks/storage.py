"""The stateful stack: the KMS key, the model bucket (+ its access-log bucket), the DynamoDB tables,
and the optional data-protection extras (AWS Backup plan, CloudTrail trail).

Everything here outlives a code deploy, so it sits apart from the stateless stacks; in a stage
whose ``removal_policy`` is ``retain`` nothing here is deleted with the stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_backup as backup
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from aimaas.metering.aggregator import STREAM_FILTER
from aimaas.storage.tables import TABLES as SCHEMAS
from aimaas.storage.tables import TableSchema
from infra.assets import stage_core_layer
from infra.buckets import access_log_bucket
from infra.grants import BATCH_PREFIX, BATCH_RETENTION_DAYS, classifier_bucket_name
from infra.nag import acknowledge
from infra.retention import retention
from infra.settings import REPO_ROOT, InfraSettings

AGGREGATOR_DIR = REPO_ROOT / "functions" / "aggregator"

_S = dynamodb.AttributeType.STRING


@dataclass(frozen=True)
class TableSpec:
    """One table of the storage kit's definition (:data:`aimaas.storage.tables.TABLES`), with
    the logical id and physical name it gets in this app."""

    schema: TableSchema

    @property
    def logical_id(self) -> str:
        return f"{self.schema.role.title()}Table"

    @property
    def suffix(self) -> str:
        return self.schema.role

    @property
    def env_var(self) -> str:
        return self.schema.env_var

    @property
    def ttl_attribute(self) -> str | None:
        return self.schema.ttl_attribute

    @property
    def gsis(self) -> tuple[str, ...]:
        return self.schema.gsis

    def name(self, settings: InfraSettings) -> str:
        """The physical table name, e.g. ``aimaas-dev-tenants``."""
        return f"{settings.prefix}-{self.suffix}"


#: The runtime's tables as the storage kit defines them (one definition: CDK, tests, LocalStack).
TABLES: tuple[TableSpec, ...] = tuple(TableSpec(schema) for schema in SCHEMAS.values())


def model_bucket_name(settings: InfraSettings, stack: cdk.Stack) -> str:
    """The model bucket's name, built from ``stack``'s own account and region.

    Deterministic names let the stateless stacks address the bucket and tables without
    cross-stack exports (which pin the storage stack) and give IAM statements readable ARNs.
    """
    return f"{settings.prefix}-models-{stack.account}-{stack.region}"


class StorageStack(cdk.Stack):
    """KMS key, model bucket, tables (AWS profile only), optional backup plan and trail.

    Attributes
    ----------
    key
        The customer-managed key encrypting the bucket, tables, logs and the alarm topic.
    model_bucket
        Versioned, KMS-encrypted bucket holding published models (``models/`` prefix).
    classifier_bucket
        Unversioned, KMS-encrypted bucket of tenants' classifier heads and examples.
    tables
        ``{env var name: table}``; empty in the LocalStack profile.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: InfraSettings, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = cdk.RemovalPolicy.RETAIN if settings.retain_data else cdk.RemovalPolicy.DESTROY
        self.settings = settings

        self.key = kms.Key(
            self,
            "DataKey",
            alias=f"alias/{settings.prefix}-data",
            description=f"aimaas {settings.stage}: models, tables, logs, alarm topic",
            enable_key_rotation=True,
            removal_policy=removal,
            pending_window=cdk.Duration.days(7 if not settings.retain_data else 30),
        )
        self._allow_service_principals()

        access_logs = access_log_bucket(
            self, "AccessLogBucket", removal=removal, auto_delete=self._auto_delete()
        )

        self.model_bucket = s3.Bucket(
            self,
            "ModelBucket",
            bucket_name=model_bucket_name(settings, self),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,  # one KMS call per object per session, not per request
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="model-bucket/",
            lifecycle_rules=[
                # Old model versions stay recoverable for a while, then stop costing storage.
                s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(90))
            ],
            removal_policy=removal,
            auto_delete_objects=self._auto_delete(),
        )

        # Unversioned on purpose: deleting a classifier must remove its examples for good.
        self.classifier_bucket = s3.Bucket(
            self,
            "ClassifierBucket",
            bucket_name=classifier_bucket_name(settings, self),
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=False,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="classifier-bucket/",
            # Batch files (inputs, partial results, outputs) expire with their batch records
            # (aimaas.batch.jobs.RETENTION, the batches table's TTL).
            lifecycle_rules=[
                s3.LifecycleRule(
                    prefix=BATCH_PREFIX, expiration=cdk.Duration.days(BATCH_RETENTION_DAYS)
                )
            ],
            removal_policy=removal,
            auto_delete_objects=self._auto_delete(),
        )

        self.tables: dict[str, dynamodb.Table] = {}
        self.table_specs: dict[str, TableSpec] = {}
        if settings.features.dynamodb:
            # Where DynamoDB does not run (LocalStack community), the ledger is moto's.
            for spec in TABLES:
                self.tables[spec.env_var] = self._table(spec, removal)
                self.table_specs[spec.env_var] = spec
            self.aggregator = self._aggregator(removal)
        if settings.backup:
            self._backup_plan(removal)
        if settings.cloudtrail:
            self._trail(access_logs, removal)

        self._auto_delete_logs(removal)
        self._outputs()

    # -- pieces ---------------------------------------------------------------------------------

    def _auto_delete(self) -> bool:
        # A disposable stage empties its buckets on delete; that needs a Lambda-backed custom
        # resource (not every target runs one), and a retained stage must never do it.
        return not self.settings.retain_data and self.settings.features.custom_resources

    def _auto_delete_logs(self, removal: cdk.RemovalPolicy) -> None:
        """A log group with retention and the stage's key for CDK's bucket-emptying function.

        Lambda would otherwise create ``/aws/lambda/<function>`` on its first run, unencrypted and
        kept forever. The custom resources wait for the group, so on stack deletion it outlives
        their last run.
        """
        provider = self.node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
        if provider is None:
            return
        handler = provider.node.find_child("Handler")
        assert isinstance(handler, cdk.CfnResource)
        group = logs.LogGroup(
            self,
            "AutoDeleteObjectsLogs",
            log_group_name=cdk.Fn.join("", ["/aws/lambda/", handler.ref]),
            retention=retention(self.settings.log_retention_days),
            encryption_key=self.key,
            removal_policy=removal,
        )
        for child in self.node.find_all():
            if isinstance(child, cdk.CfnResource) and child.cfn_resource_type == (
                "Custom::S3AutoDeleteObjects"
            ):
                child.node.add_dependency(group)

    def _allow_service_principals(self) -> None:
        """Let CloudWatch Logs and CloudWatch alarms (via SNS) use the key, scoped by condition."""
        logs_principal = iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[logs_principal],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": self.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublishToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )

    def _table(self, spec: TableSpec, removal: cdk.RemovalPolicy) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            spec.logical_id,
            table_name=spec.name(self.settings),
            partition_key=dynamodb.Attribute(name="pk", type=_S),
            sort_key=dynamodb.Attribute(name="sk", type=_S),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=spec.ttl_attribute,
            stream=(dynamodb.StreamViewType[spec.schema.stream] if spec.schema.stream else None),
            deletion_protection=self.settings.retain_data,
            removal_policy=removal,
        )
        for index in spec.gsis:
            table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=f"{index}pk", type=_S),
                sort_key=dynamodb.Attribute(name=f"{index}sk", type=_S),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table

    def _aggregator(self, removal: cdk.RemovalPolicy) -> lambda_.Function:
        """The usage ledger's stream aggregator (``functions/aggregator``): counters and the
        time-ordered copies of records, off the request path (see its module docstring)."""

        spec = self.table_specs["AIMAAS_USAGE_TABLE"]
        table = self.tables["AIMAAS_USAGE_TABLE"]
        role = iam.Role(
            self,
            "AggregatorRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"aimaas {self.settings.stage} usage stream aggregator",
        )
        log_group = logs.LogGroup(
            self,
            "AggregatorLogs",
            retention=retention(self.settings.log_retention_days),
            encryption_key=self.key,
            removal_policy=removal,
        )
        log_group.grant_write(role)
        layer = lambda_.LayerVersion(
            self,
            "AggregatorCoreLayer",
            code=lambda_.Code.from_asset(str(stage_core_layer())),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="aimaas runtime core (python/aimaas)",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        function = lambda_.Function(
            self,
            "AggregatorFunction",
            description=f"aimaas {self.settings.stage} usage ledger stream aggregator",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="aggregator_handler.handler",
            code=lambda_.Code.from_asset(str(AGGREGATOR_DIR), exclude=["__pycache__", "*.pyc"]),
            layers=[layer],
            memory_size=256,
            timeout=cdk.Duration.seconds(60),
            environment={"AIMAAS_USAGE_TABLE": spec.name(self.settings)},
            role=role,
            log_group=log_group,
        )
        # The transaction's Put (copies) and Update (counters); nothing else, on this table only.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:UpdateItem"], resources=[table.table_arn]
            )
        )
        function.add_event_source(
            event_sources.DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=100,
                max_batching_window=cdk.Duration.seconds(1),
                parallelization_factor=1,
                # A failed batch is delivered again until it succeeds: the aggregator is
                # idempotent, and dropping a batch would lose billed calls.
                retry_attempts=-1,
                bisect_batch_on_error=False,
                filters=[lambda_.FilterCriteria.filter(dict(STREAM_FILTER))],
            )
        )
        acknowledge(
            role.node.find_child("DefaultPolicy"),
            {
                "AwsSolutions-IAM5[Resource::*]": "dynamodb:ListStreams, added by the event "
                "source mapping, supports no resource-level scoping.",
            },
        )
        acknowledge(
            function,
            {
                "AwsSolutions-L1": "Pinned to python3.12 on purpose, like the authorizer: the "
                "core layer is built and tested for 3.12."
            },
        )
        return function

    def _backup_plan(self, removal: cdk.RemovalPolicy) -> None:
        vault = backup.BackupVault(
            self,
            "BackupVault",
            encryption_key=self.key,
            removal_policy=removal,
        )
        plan = backup.BackupPlan(self, "BackupPlan", backup_vault=vault)
        plan.add_rule(
            backup.BackupPlanRule(
                rule_name="Daily35Days",
                schedule_expression=events.Schedule.cron(hour="3", minute="0"),
                delete_after=cdk.Duration.days(35),
            )
        )
        selection = plan.add_selection(
            "Tables",
            resources=[backup.BackupResource.from_dynamo_db_table(t) for t in self.tables.values()],
        )
        acknowledge(
            selection.node.find_child("Role"),
            {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSBackupServiceRolePolicyForBackup]": "The AWS Backup service role policy "
                "AWS documents for backup selections; it acts only on selected resources."
            },
        )

    def _trail(self, access_logs: s3.IBucket, removal: cdk.RemovalPolicy) -> None:
        trail_bucket = s3.Bucket(
            self,
            "TrailBucket",
            # CloudTrail writes KMS-encrypted log files itself (the trail's key); SSE-S3 at rest
            # keeps the bucket policy CloudTrail needs simple.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="trail-bucket/",
            lifecycle_rules=[
                # The trail's log files are evidence for as long as the stage keeps its logs;
                # versions replaced or deleted stop costing storage after 30 days.
                s3.LifecycleRule(
                    expiration=cdk.Duration.days(self.settings.log_retention_days),
                    noncurrent_version_expiration=cdk.Duration.days(30),
                )
            ],
            removal_policy=removal,
            auto_delete_objects=self._auto_delete(),
        )
        trail_name = f"{self.settings.prefix}-trail"
        trail_arn = self.format_arn(
            service="cloudtrail", resource="trail", resource_name=trail_name
        )
        # CloudTrail encrypts log files with the key only if the key policy lets it (CDK adds
        # nothing for a key passed in): the documented statements, scoped to this trail.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudTrailToEncryptLogs",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceArn": trail_arn},
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": self.format_arn(
                            service="cloudtrail", region="*", resource="trail", resource_name="*"
                        )
                    },
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudTrailToDescribeKey",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:DescribeKey"],
                resources=["*"],
            )
        )
        trail = cloudtrail.Trail(
            self,
            "Trail",
            trail_name=trail_name,
            bucket=trail_bucket,
            encryption_key=self.key,
            enable_file_validation=True,
            include_global_service_events=True,
            is_multi_region_trail=False,
        )
        # S3 data events on the model bucket: who read or replaced which model file.
        trail.add_s3_event_selector([cloudtrail.S3EventSelector(bucket=self.model_bucket)])

    def _outputs(self) -> None:
        cdk.CfnOutput(self, "ModelBucketName", value=self.model_bucket.bucket_name)
        cdk.CfnOutput(self, "ClassifierBucketName", value=self.classifier_bucket.bucket_name)
        cdk.CfnOutput(self, "KmsKeyId", value=self.key.key_id)
        cdk.CfnOutput(self, "KmsKeyArn", value=self.key.key_arn)
        for env_var, table in self.tables.items():
            name = env_var.removeprefix("AIMAAS_").title().replace("_", "")
            cdk.CfnOutput(self, f"{name}Name", value=table.table_name)
