"""What one synthesis deploys: the stage, the profile and their options, resolved once.

The stage and the plans are the runtime's own (``aimaas.config`` reads ``stages.toml``,
``aimaas.plans`` reads ``plans.toml``, both standard library only); CDK context (``-c key=value``)
overrides a stage's defaults. Context values from the CLI arrive as strings, so every flag and
number is parsed here and nowhere else. What a deployment target can run is one row of
:data:`PROFILES`: the stacks read its features, never the profile's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aimaas.config import StageConfig, load_toml
from aimaas.plans import Plan, load_catalog, usage_plan_name

REPO_ROOT = Path(__file__).resolve().parents[1]

# Stage options that are not (yet) in stages.toml get these defaults; prod turns on what costs
# money but protects data or users, dev keeps the idle bill near zero.
_STAGE_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "prod": {"waf": True, "backup": True, "cloudtrail": True, "provisioned_concurrency": 0},
    "dev": {"waf": False, "backup": False, "cloudtrail": False, "provisioned_concurrency": 0},
}


#: Lambda's limit on a synchronous invocation's payload: the whole event, 6 MB.
LAMBDA_EVENT_LIMIT_BYTES = 6 * 1024 * 1024
#: API Gateway (REST) refuses larger request payloads with 413.
GATEWAY_PAYLOAD_LIMIT_BYTES = 10 * 1024 * 1024
#: The raw body limit behind API Gateway + Lambda. A binary body reaches the function
#: base64-encoded (4 bytes per 3) inside the 6 MB event, next to the headers (twice: ``headers``
#: and ``multiValueHeaders``, up to 10 KB each) and the request context: 4.4 MB of body is
#: 5.89 MB in an event with the largest headers (tests/unit/infra/test_body_limit.py), ~400 kB
#: under the limit. A larger body would fail in Lambda with a 502 instead of the app's 413.
LAMBDA_PROXY_MAX_BODY_BYTES = 4_400_000
#: The app's own default limit, for targets where the body travels unencoded (HTTP proxy).
HTTP_PROXY_MAX_BODY_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Profile:
    """What one deployment target can run (one row of :data:`PROFILES`).

    Attributes
    ----------
    name
        ``aws`` or ``localstack``.
    integration
        How API Gateway reaches the code: ``lambda`` (functions behind the REQUEST authorizer) or
        ``http_proxy`` (one HTTP proxy to ``upstream_url``); see :mod:`infra.integrations`.
    lambda_functions
        Lambda runs here: the serving and observability stacks exist.
    sagemaker
        SageMaker runs here: a stage's ``gpu_enabled`` can take effect.
    dynamodb
        DynamoDB tables (and the backup plan that protects them) are deployed.
    custom_resources
        Lambda-backed custom resources may be used (emptying buckets on delete).
    cloudwatch
        CloudWatch Logs and X-Ray exist: access logs, execution logs, tracing, WAF logs.
    waf
        A web ACL can be attached to the stage.
    cloudtrail
        A CloudTrail trail can be created.
    bootstrapped
        Templates use the bootstrapped synthesizer (``cdk bootstrap``, assets); otherwise they are
        self-contained and deploy with a plain ``create_stack``.
    termination_protection
        Retained stages get stack termination protection.
    max_body_bytes
        The largest raw request body the target can carry to the code; the stacks pass it to the
        runtime as ``AIMAAS_MAX_BODY_BYTES`` (413 above it) and output it as ``MaxBodyBytes``.
    console_cdn
        The browser console is hosted here (S3 behind CloudFront, deployed by a Lambda-backed
        custom resource): the console stack exists.
    """

    name: str
    integration: str
    lambda_functions: bool
    sagemaker: bool
    dynamodb: bool
    custom_resources: bool
    cloudwatch: bool
    waf: bool
    cloudtrail: bool
    bootstrapped: bool
    termination_protection: bool
    max_body_bytes: int
    console_cdn: bool = False


#: The deployment targets. LocalStack community (no Docker) runs API Gateway with API keys, S3,
#: KMS, SSM and CloudFormation, but no Lambda, DynamoDB or SageMaker (shared/notes/emulators.md).
PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "aws": Profile(
            name="aws",
            integration="lambda",
            lambda_functions=True,
            sagemaker=True,
            dynamodb=True,
            custom_resources=True,
            cloudwatch=True,
            waf=True,
            cloudtrail=True,
            bootstrapped=True,
            termination_protection=True,
            max_body_bytes=LAMBDA_PROXY_MAX_BODY_BYTES,
            console_cdn=True,
        ),
        "localstack": Profile(
            name="localstack",
            integration="http_proxy",
            lambda_functions=False,
            sagemaker=False,
            dynamodb=False,
            custom_resources=False,
            cloudwatch=False,
            waf=False,
            cloudtrail=False,
            bootstrapped=False,
            termination_protection=False,
            max_body_bytes=HTTP_PROXY_MAX_BODY_BYTES,
        ),
    }
)


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    return int(value)


@dataclass(frozen=True)
class InfraSettings:
    """Everything the stacks need to know, for one stage and one profile."""

    stage: str
    profile: str = "aws"
    gpu_enabled: bool = False
    gpu_instance_type: str = "ml.g5.xlarge"
    # The GPU image is CUDA 13; the newest SageMaker inference AMI has driver 550 and leaves
    # CUDA forward compatibility to the container (which `serve` switches on).
    gpu_inference_ami_version: str = "al2-ami-sagemaker-inference-gpu-3-1"
    gpu_models: tuple[str, ...] = ()
    #: The models the stage serves on CPU (its default model per task), baked into the image.
    cpu_models: tuple[str, ...] = ()
    #: The exported model registry the image and the GPU endpoint's models come from.
    registry: Path = REPO_ROOT / "build" / "registry"
    gpu_min_instances: int = 1
    gpu_max_instances: int = 2
    gpu_target_invocations: int = 100
    retain_data: bool = False
    log_retention_days: int = 14
    plans: tuple[Plan, ...] = ()
    upstream_url: str | None = None
    waf: bool = False
    backup: bool = False
    cloudtrail: bool = False
    provisioned_concurrency: int = 0
    # 0 = no reservation. A reservation must leave the account 100 unreserved executions, and
    # new accounts start at a limit of 10: only stages that set one in stages.toml get one.
    text_reserved_concurrency: int = 0
    media_reserved_concurrency: int = 0
    alarm_email: str | None = None
    #: The browser console's origin (``https://host``) the API lets call it (CORS), or None
    #: (no cross-origin calls). Known before a deploy only with a custom domain; otherwise the
    #: distribution's domain, which ``make deploy`` reads from the console stack's output.
    console_origin: str | None = None
    #: A custom domain for the console and its ACM certificate (us-east-1), both or neither:
    #: only a custom certificate lets CloudFront refuse TLS below 1.2.
    console_domain: str | None = None
    console_certificate_arn: str | None = None
    raw_stage: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """Stack and resource name prefix: ``aimaas-dev``, ``aimaas-prod``."""
        return f"aimaas-{self.stage}"

    @property
    def served_models(self) -> tuple[str, ...]:
        """Every model this deployment serves: its CPU models, and its GPU models if it has one."""
        return tuple(sorted({*self.cpu_models, *(self.gpu_models if self.gpu_enabled else ())}))

    @property
    def reserved_concurrency(self) -> int:
        """Concurrent executions the stage's functions reserve out of the account's limit."""
        return self.text_reserved_concurrency + self.media_reserved_concurrency

    @property
    def features(self) -> Profile:
        """What this deployment target can run."""
        return PROFILES[self.profile]

    def usage_plan_name(self, plan: str) -> str:
        """The API Gateway usage plan of ``plan`` (the admin tooling finds it by this name)."""
        return usage_plan_name(self.stage, plan)

    @classmethod
    def from_context(
        cls, context: Mapping[str, Any], config_dir: Path | None = None
    ) -> InfraSettings:
        """Resolve the settings from CDK context values (``node.try_get_context``) and config files.

        Parameters
        ----------
        context
            Context values by key; missing keys take the stage's defaults.
        config_dir
            Where ``stages.toml`` and ``plans.toml`` live (default: the runtime's config folder).

        Returns
        -------
        InfraSettings
            The resolved settings.

        Raises
        ------
        ValueError
            For an unknown stage or profile, or a LocalStack profile without ``upstream_url``.
        """
        stage = str(context.get("stage") or "dev")
        profile = str(context.get("profile") or "aws")
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {tuple(PROFILES)}")
        features = PROFILES[profile]
        stages = load_toml("stages.toml", config_dir)["stages"]
        if stage not in stages or stage == "local":
            deployable = sorted(s for s in stages if s != "local")
            raise ValueError(f"unknown or non-deployable stage {stage!r}; known: {deployable}")
        stage_config = StageConfig.load(stage, config_dir)
        data: dict[str, Any] = dict(_STAGE_DEFAULTS.get(stage, _STAGE_DEFAULTS["dev"]))
        data.update(stage_config.raw)

        def pick(key: str, default: Any = None) -> Any:
            value = context.get(key)
            return data.get(key, default) if value is None or value == "" else value

        console_domain = pick("console_domain") or None
        console_certificate_arn = pick("console_certificate_arn") or None
        if bool(console_domain) != bool(console_certificate_arn):
            raise ValueError("console_domain and console_certificate_arn go together")
        console_origin = pick("console_origin") or (
            f"https://{console_domain}" if console_domain else None
        )
        if console_origin and not re.fullmatch(r"https://[a-z0-9.-]+(:[0-9]+)?", console_origin):
            raise ValueError(f"console_origin must be https://host, not {console_origin!r}")

        upstream_url = context.get("upstream_url")
        if features.integration == "http_proxy" and not upstream_url:
            raise ValueError(f"the {profile} profile needs -c upstream_url=http://127.0.0.1:PORT")
        return cls(
            stage=stage,
            profile=profile,
            # The GPU stack is a SageMaker endpoint: only where SageMaker runs.
            gpu_enabled=_flag(pick("gpu_enabled"), stage_config.gpu_enabled) and features.sagemaker,
            gpu_instance_type=str(pick("gpu_instance_type", "ml.g5.xlarge")),
            gpu_inference_ami_version=str(
                pick("gpu_inference_ami_version", "al2-ami-sagemaker-inference-gpu-3-1")
            ),
            gpu_models=stage_config.gpu_models,
            cpu_models=tuple(sorted(set(stage_config.default_models.values()))),
            registry=Path(context.get("registry") or REPO_ROOT / "build" / "registry"),
            gpu_min_instances=_int(pick("gpu_min_instances"), 1),
            gpu_max_instances=_int(pick("gpu_max_instances"), 2),
            gpu_target_invocations=_int(pick("gpu_target_invocations"), 100),
            retain_data=str(pick("removal_policy", "destroy")) == "retain",
            log_retention_days=_int(pick("log_retention_days"), 14),
            plans=tuple(load_catalog(config_dir).plans.values()),
            upstream_url=str(upstream_url) if upstream_url else None,
            waf=_flag(pick("waf"), False) and features.waf,
            backup=_flag(pick("backup"), False) and features.dynamodb,
            cloudtrail=_flag(pick("cloudtrail"), False) and features.cloudtrail,
            provisioned_concurrency=_int(pick("provisioned_concurrency"), 0),
            text_reserved_concurrency=_int(pick("text_reserved_concurrency"), 0),
            media_reserved_concurrency=_int(pick("media_reserved_concurrency"), 0),
            alarm_email=pick("alarm_email"),
            console_origin=console_origin,
            console_domain=console_domain,
            console_certificate_arn=console_certificate_arn,
            raw_stage=data,
        )
