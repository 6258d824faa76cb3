"""The browser console in AWS: its static files (``console/``) in a private, KMS-encrypted S3
bucket behind a CloudFront distribution that reads it through Origin Access Control.

The distribution sends the same security headers as the local server
(:mod:`aimaas.console_policy`), with ``connect-src`` narrowed to the stage's API URL. The
bucket's key and bucket policies let ``cloudfront.amazonaws.com`` read only on behalf of this
distribution (``AWS:SourceArn``), as AWS documents for OAC with SSE-KMS.

Why this stack comes after the API stack: the CSP names the API's URL, and ``config.json``
tells the console where the API is. The API in turn answers only the console's origin (CORS),
which is the distribution's domain, known only once it exists: the stage's ``console_origin``
setting carries it into the serving and API stacks (a custom domain makes it known up front;
otherwise ``make deploy`` reads it from this stack's ``ConsoleUrl`` output, see
``infra/deploy.py``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from aimaas.console_policy import SECURITY_HEADERS, content_security_policy
from infra.buckets import access_log_bucket
from infra.nag import acknowledge
from infra.retention import retention
from infra.settings import REPO_ROOT
from infra.stacks.stage import StageStack

CONSOLE_DIR = REPO_ROOT / "console"
#: HSTS for two years: the console is HTTPS only, and so is everything it calls.
HSTS_SECONDS = 2 * 365 * 24 * 3600


def console_bucket_name(stack: cdk.Stack, prefix: str) -> str:
    """The console bucket's name, built from ``stack``'s own account and region.

    A deterministic name lets the distribution address the bucket without a reference to it:
    the key policy names the distribution, the bucket uses the key, so a reference from the
    distribution to the bucket would close a loop CloudFormation cannot create.
    """
    return f"{prefix}-console-{stack.account}-{stack.region}"


class ConsoleStack(StageStack):
    """Console bucket (+ access logs), its key, the distribution and the file deployment.

    Parameters
    ----------
    api_base
        The stage's API URL without its trailing slash
        (``https://<id>.execute-api.<region>.amazonaws.com/<stage>``): the console's
        ``config.json``'s ``api_base``, and with a slash its only ``connect-src`` (a CSP source
        ending in ``/`` matches the paths below it).
    **kwargs
        As for :class:`~infra.stacks.stage.StageStack`.

    Attributes
    ----------
    bucket
        The console's files.
    distribution
        The CloudFront distribution serving them.
    origin
        ``https://<domain>``: what the API must allow (CORS).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, api_base: str, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = self.settings
        removal = cdk.RemovalPolicy.RETAIN if settings.retain_data else cdk.RemovalPolicy.DESTROY
        # The files are public by design once served; the bucket is not. Its own key (not the
        # stage's data key) keeps the CloudFront grant off the key that guards tenant data.
        self.key = kms.Key(
            self,
            "ConsoleKey",
            alias=f"alias/{settings.prefix}-console",
            description=f"aimaas {settings.stage}: console files",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        access_logs = access_log_bucket(
            self, "ConsoleAccessLogBucket", removal=removal, auto_delete=not settings.retain_data
        )
        name = console_bucket_name(self, settings.prefix)
        self.bucket = s3.Bucket(
            self,
            "ConsoleBucket",
            bucket_name=name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="console-bucket/",
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(30))],
            # The files are rebuilt from the repository on every deploy: nothing to retain.
            removal_policy=cdk.RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )

        headers = cloudfront.ResponseHeadersPolicy(
            self,
            "ConsoleHeaders",
            response_headers_policy_name=f"{settings.prefix}-console",
            comment=f"aimaas {settings.stage} console: CSP (API only), no framing, HSTS",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy(f"{api_base}/"), override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=cdk.Duration.seconds(HSTS_SECONDS),
                    include_subdomains=True,
                    override=True,
                ),
            ),
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(
                custom_headers=[
                    cloudfront.ResponseCustomHeader(header=header, value=value, override=True)
                    for header, value in SECURITY_HEADERS.items()
                    # Sent by the security-headers behaviour above (CloudFront refuses twins).
                    if header
                    not in {"x-content-type-options", "x-frame-options", "referrer-policy"}
                ]
            ),
        )

        oac = cloudfront.S3OriginAccessControl(
            self,
            "ConsoleOac",
            origin_access_control_name=f"{settings.prefix}-console",
            description="CloudFront signs its reads of the console bucket (SigV4)",
            signing=cloudfront.Signing.SIGV4_ALWAYS,
        )
        # The bucket by name, not by reference (see console_bucket_name); its policies are
        # written below, so the origin must not try to add its own.
        by_name = s3.Bucket.from_bucket_attributes(
            self, "ConsoleBucketByName", bucket_name=name, region=self.region
        )
        origin = origins.S3BucketOrigin.with_origin_access_control(
            by_name,
            origin_access_control=oac,
            origin_access_levels=[cloudfront.AccessLevel.READ],
        )
        domain: dict[str, object] = {}
        if settings.console_domain:
            domain = {
                "domain_names": [settings.console_domain],
                "certificate": acm.Certificate.from_certificate_arn(
                    self, "ConsoleCertificate", settings.console_certificate_arn or ""
                ),
                "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            }
        self.distribution = cloudfront.Distribution(
            self,
            "ConsoleDistribution",
            comment=f"aimaas {settings.stage} console",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
                compress=True,
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=False,
            **domain,
        )
        distribution_arn = self.format_arn(
            service="cloudfront",
            region="",
            resource="distribution",
            resource_name=self.distribution.distribution_id,
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudFrontOacRead",
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects("*")],
                conditions={"StringEquals": {"AWS:SourceArn": distribution_arn}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudFrontOacDecrypt",
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                actions=["kms:Decrypt"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"AWS:SourceArn": distribution_arn}},
            )
        )

        self.origin = (
            f"https://{settings.console_domain}"
            if settings.console_domain
            else f"https://{self.distribution.distribution_domain_name}"
        )
        self._deploy_files(api_base, removal)
        self._acknowledge(access_logs)
        cdk.CfnOutput(
            self,
            "ConsoleUrl",
            description="The console; the stage's console_origin (the API's CORS origin)",
            value=self.origin,
        )
        cdk.CfnOutput(self, "ConsoleBucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(self, "ConsoleDistributionId", value=self.distribution.distribution_id)

    def _deploy_files(self, api_base: str, removal: cdk.RemovalPolicy) -> None:
        """Copy ``console/`` into the bucket, with a ``config.json`` naming this stage's API,
        and invalidate the distribution's cache so the new files are served at once."""
        log_group = logs.LogGroup(
            self,
            "ConsoleDeploymentLogs",
            retention=retention(self.settings.log_retention_days),
            encryption_key=self.storage.key,
            removal_policy=removal,
        )
        self.deployment = s3deploy.BucketDeployment(
            self,
            "ConsoleFiles",
            destination_bucket=self.bucket,
            sources=[
                s3deploy.Source.asset(str(CONSOLE_DIR), exclude=["config.json"]),
                s3deploy.Source.json_data("config.json", {"api_base": api_base}),
            ],
            distribution=self.distribution,
            distribution_paths=["/*"],
            prune=True,
            memory_limit=256,
            log_group=log_group,
        )

    def _acknowledge(self, access_logs: s3.Bucket) -> None:
        acknowledge(
            self.distribution,
            {
                "AwsSolutions-CFR1": "The console is a public sign-in page for customers "
                "anywhere; what it shows needs an API key.",
                "AwsSolutions-CFR2": "Static files only; the API it calls has its own WAF "
                "(stage setting waf) and usage-plan throttles.",
                "AwsSolutions-CFR3": "The bucket's S3 server access logs record every file "
                "CloudFront fetches; CloudFront standard logs would need an ACL-enabled bucket.",
                "AwsSolutions-CFR4": "Without a custom domain CloudFront serves its default "
                "*.cloudfront.net certificate, whose security policy it fixes itself; with "
                "console_domain the distribution requires TLSv1.2_2021.",
            },
        )
        acknowledge(
            self.distribution,
            {
                "Annotation::@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac": (
                    "The origin names the bucket by name on purpose; its bucket and key "
                    "policies for this distribution are written here (AllowCloudFrontOac*)."
                ),
            },
        )
        # BucketDeployment's handler is one function per stack, beside (not below) the
        # deployment construct.
        (handler,) = (
            child
            for child in self.node.children
            if child.node.id.startswith("Custom::CDKBucketDeployment")
        )
        why = "aws-cdk-lib's BucketDeployment handler (a deploy-time custom resource)"
        acknowledge(
            handler,
            {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]": f"{why}: its logs.",
                "AwsSolutions-IAM5[Action::s3:GetBucket*]": f"{why}: reads the staged asset.",
                "AwsSolutions-IAM5[Action::s3:GetObject*]": f"{why}: reads the staged asset.",
                "AwsSolutions-IAM5[Action::s3:List*]": f"{why}: lists asset and console bucket.",
                "AwsSolutions-IAM5[Action::s3:DeleteObject*]": f"{why}: prunes files no longer "
                "in console/.",
                "AwsSolutions-IAM5[Action::s3:Abort*]": f"{why}: writes the console bucket.",
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": f"{why}: writes objects "
                "into the KMS-encrypted console bucket.",
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": f"{why}: writes objects into the "
                "KMS-encrypted console bucket.",
                "AwsSolutions-IAM5[Resource::<ConsoleBucketA1BD9FF9.Arn>/*]": f"{why}: every "
                "file of the console bucket (and only that bucket).",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-"
                "<AWS::AccountId>-<AWS::Region>/*]": f"{why}: the bootstrap asset bucket "
                "holding the zipped console/.",
                "AwsSolutions-IAM5[Resource::*]": f"{why}: CloudFront CreateInvalidation and "
                "GetInvalidation, which it grants on every distribution.",
                "AwsSolutions-L1": f"{why}: aws-cdk-lib pins its runtime.",
            },
        )
