"""The GPU endpoint for heavy models: a SageMaker real-time endpoint running the GPU server image,
with target-tracking auto scaling. Only in stages with ``gpu_enabled``.

Model data is the model bucket's ``models/`` prefix, uncompressed (``S3Prefix``), i.e. the same
registry layout ``model_export publish`` writes and the GPU server reads under ``/opt/ml/model``.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.grants import MODEL_PREFIX, grant_model_read, model_objects_finding
from infra.nag import acknowledge
from infra.retention import retention
from infra.settings import REPO_ROOT
from infra.stacks.stage import StageStack
from infra.stacks.storage import model_bucket_name

GPU_DOCKERFILE = "functions/gpu_server/Dockerfile"
VARIANT = "AllTraffic"
# Instance families with local NVMe storage refuse a KMS key for the ML volume (the instance
# store is hardware-encrypted); SageMaker rejects the endpoint config if one is given.
_INSTANCE_STORE = re.compile(r"^ml\.(g4dn|g5|g6|g6e|p3dn|p4d|p4de|p5|p5e|m5d|c5d|r5d)\.")


def supports_volume_kms(instance_type: str) -> bool:
    """Whether SageMaker accepts ``KmsKeyId`` for the ML storage volume of ``instance_type``."""
    return _INSTANCE_STORE.match(instance_type) is None


class GpuStack(StageStack):
    """SageMaker model, endpoint config, endpoint, and its scaling policy.

    Attributes
    ----------
    endpoint_name
        A plain string (not a token), so the serving stack can name it without a cross-stack export.
    endpoint_arn
        The ARN the serving functions may invoke, and nothing else.
    """

    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        # settings= and storage= are StageStack's (self.settings, self.storage).
        super().__init__(scope, construct_id, **kwargs)
        settings, storage = self.settings, self.storage
        dockerfile = REPO_ROOT / GPU_DOCKERFILE
        if not dockerfile.is_file():
            raise FileNotFoundError(
                f"{GPU_DOCKERFILE} is missing: stage {settings.stage!r} has gpu_enabled, and its "
                "endpoint image is built from that file (or synth with -c gpu_enabled=false)"
            )
        self.endpoint_name = f"{settings.prefix}-gpu"
        # SageMaker ARNs use the lower-cased name.
        self.endpoint_arn = self.format_arn(
            service="sagemaker", resource="endpoint", resource_name=self.endpoint_name.lower()
        )

        image = ecr_assets.DockerImageAsset(
            self,
            "GpuServerImage",
            directory=str(REPO_ROOT),
            file=GPU_DOCKERFILE,
            platform=ecr_assets.Platform.LINUX_AMD64,  # CUDA images for the ml.g* hosts
            ignore_mode=cdk.IgnoreMode.DOCKER,
            # Models come from S3 at endpoint start, not from the image: keep the exported
            # registry out of this context (the repo .dockerignore lets it in for the CPU image).
            exclude=["build", "functions/inference"],
        )
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"aimaas {settings.stage} GPU endpoint",
        )
        image.repository.grant_pull(role)
        grant_model_read(role, settings, self, storage.key)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/Endpoints/*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}},
            )
        )
        acknowledge(
            role.node.find_child("DefaultPolicy"),
            {
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken and "
                "cloudwatch:PutMetricData support no resource scoping (the latter is limited to "
                "the SageMaker namespace by condition).",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
                "<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*]": "SageMaker names its "
                "endpoint log groups itself, under this documented prefix.",
                model_objects_finding(settings): "The model data: objects under models/ only.",
            },
        )

        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.image_uri,
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=f"s3://{model_bucket_name(settings, self)}/{MODEL_PREFIX}",
                        s3_data_type="S3Prefix",
                        compression_type="None",
                    )
                ),
                environment={
                    "AIMAAS_STAGE": settings.stage,
                    "AIMAAS_GPU_MODELS": ",".join(settings.gpu_models),
                },
            ),
        )
        model.node.add_dependency(role)

        volume_kms = supports_volume_kms(settings.gpu_instance_type)
        config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT,
                    model_name=model.attr_model_name,
                    initial_instance_count=settings.gpu_min_instances,
                    instance_type=settings.gpu_instance_type,
                    inference_ami_version=settings.gpu_inference_ami_version,
                    initial_variant_weight=1.0,
                )
            ],
            kms_key_id=storage.key.key_arn if volume_kms else None,
        )
        endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=config.attr_endpoint_config_name,
        )
        # SageMaker would create the endpoint's log group itself, unencrypted and kept forever.
        endpoint_logs = logs.LogGroup(
            self,
            "EndpointLogs",
            log_group_name=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            retention=retention(settings.log_retention_days),
            encryption_key=storage.key,
            removal_policy=(
                cdk.RemovalPolicy.RETAIN if settings.retain_data else cdk.RemovalPolicy.DESTROY
            ),
        )
        endpoint.node.add_dependency(endpoint_logs)

        target = appscaling.ScalableTarget(
            self,
            "ScalableTarget",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint_name}/variant/{VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=settings.gpu_min_instances,
            max_capacity=settings.gpu_max_instances,
            # SageMaker scaling always runs as this service-linked role (created on first use);
            # naming it stops CDK from adding a permission-less role that would go unused.
            role=iam.Role.from_role_arn(
                self,
                "ScalingServiceLinkedRole",
                f"arn:{self.partition}:iam::{self.account}:role/aws-service-role/"
                "sagemaker.application-autoscaling.amazonaws.com/"
                "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
            ),
        )
        target.node.add_dependency(endpoint)
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=settings.gpu_target_invocations,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=cdk.Duration.minutes(5),
            scale_out_cooldown=cdk.Duration.minutes(1),
        )
        cdk.CfnOutput(self, "SageMakerEndpointName", value=self.endpoint_name)
