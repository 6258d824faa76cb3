"""What one synthesis deploys: the stage, the profile and their options, resolved once.

The data comes from the same files the runtime reads (``aimaas/data/stages.toml`` and
``plans.toml``) plus CDK context (``-c key=value``), which overrides a stage's defaults. Context
values from the CLI arrive as strings, so every flag and number is parsed here and nowhere else.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimaas.config import PACKAGED_CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PACKAGED_CONFIG_DIR

# Stage options that are not (yet) in stages.toml get these defaults; prod turns on what costs
# money but protects data or users, dev keeps the idle bill near zero.
_STAGE_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "prod": {"waf": True, "backup": True, "cloudtrail": True, "provisioned_concurrency": 0},
    "dev": {"waf": False, "backup": False, "cloudtrail": False, "provisioned_concurrency": 0},
}

PROFILES = ("aws", "localstack")


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


def load_toml(name: str, directory: Path = CONFIG_DIR) -> dict[str, Any]:
    """Parse ``<directory>/<name>`` (``stages.toml`` or ``plans.toml``)."""
    with (directory / name).open("rb") as handle:
        return tomllib.load(handle)


@dataclass(frozen=True)
class PlanLimits:
    """The API Gateway side of one plan: best-effort throttle and quota (``plans.toml``)."""

    name: str
    description: str
    rate_limit: float
    burst_limit: int
    quota_limit: int
    quota_period: str  # DAY | WEEK | MONTH


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
    gpu_min_instances: int = 1
    gpu_max_instances: int = 2
    gpu_target_invocations: int = 100
    retain_data: bool = False
    log_retention_days: int = 14
    plans: tuple[PlanLimits, ...] = ()
    upstream_url: str | None = None
    waf: bool = False
    backup: bool = False
    cloudtrail: bool = False
    provisioned_concurrency: int = 0
    text_reserved_concurrency: int = 20
    media_reserved_concurrency: int = 10
    alarm_email: str | None = None
    powertools_layer_version: int = 27
    raw_stage: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """Stack and resource name prefix: ``aimaas-dev``, ``aimaas-prod``."""
        return f"aimaas-{self.stage}"

    @property
    def is_localstack(self) -> bool:
        return self.profile == "localstack"

    @classmethod
    def from_context(
        cls, context: Mapping[str, Any], config_dir: Path = CONFIG_DIR
    ) -> InfraSettings:
        """Resolve the settings from CDK context values (``node.try_get_context``) and config files.

        Parameters
        ----------
        context
            Context values by key; missing keys take the stage's defaults.
        config_dir
            Where ``stages.toml`` and ``plans.toml`` live.

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
            raise ValueError(f"unknown profile {profile!r}; known: {PROFILES}")
        stages = load_toml("stages.toml", config_dir)["stages"]
        if stage not in stages or stage == "local":
            deployable = sorted(s for s in stages if s != "local")
            raise ValueError(f"unknown or non-deployable stage {stage!r}; known: {deployable}")
        data: dict[str, Any] = dict(_STAGE_DEFAULTS.get(stage, _STAGE_DEFAULTS["dev"]))
        data.update(stages[stage])

        def pick(key: str, default: Any = None) -> Any:
            value = context.get(key)
            return data.get(key, default) if value is None or value == "" else value

        upstream_url = context.get("upstream_url")
        if profile == "localstack" and not upstream_url:
            raise ValueError("the localstack profile needs -c upstream_url=http://127.0.0.1:PORT")
        plans = load_toml("plans.toml", config_dir)["plans"]
        return cls(
            stage=stage,
            profile=profile,
            # LocalStack community has no SageMaker: the GPU stack is an AWS-only concern.
            gpu_enabled=_flag(pick("gpu_enabled"), False) and profile == "aws",
            gpu_instance_type=str(pick("gpu_instance_type", "ml.g5.xlarge")),
            gpu_inference_ami_version=str(
                pick("gpu_inference_ami_version", "al2-ami-sagemaker-inference-gpu-3-1")
            ),
            gpu_models=tuple(data.get("gpu_models", ())),
            gpu_min_instances=_int(pick("gpu_min_instances"), 1),
            gpu_max_instances=_int(pick("gpu_max_instances"), 2),
            gpu_target_invocations=_int(pick("gpu_target_invocations"), 100),
            retain_data=str(pick("removal_policy", "destroy")) == "retain",
            log_retention_days=_int(pick("log_retention_days"), 14),
            plans=tuple(
                PlanLimits(
                    name=name,
                    description=str(plan.get("description", name)),
                    rate_limit=float(plan["throttle"]["rate_limit"]),
                    burst_limit=int(plan["throttle"]["burst_limit"]),
                    quota_limit=int(plan["quota"]["limit"]),
                    quota_period=str(plan["quota"]["period"]).upper(),
                )
                for name, plan in plans.items()
            ),
            upstream_url=str(upstream_url) if upstream_url else None,
            waf=_flag(pick("waf"), False),
            backup=_flag(pick("backup"), False),
            cloudtrail=_flag(pick("cloudtrail"), False),
            provisioned_concurrency=_int(pick("provisioned_concurrency"), 0),
            text_reserved_concurrency=_int(pick("text_reserved_concurrency"), 20),
            media_reserved_concurrency=_int(pick("media_reserved_concurrency"), 10),
            alarm_email=pick("alarm_email"),
            powertools_layer_version=_int(pick("powertools_layer_version"), 27),
            raw_stage=data,
        )
