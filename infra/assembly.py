"""Assemble the stacks for one stage and profile."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aws_cdk as cdk

from infra.assets import require_models
from infra.integrations import build_backend
from infra.nag import add_nag_checks
from infra.settings import REPO_ROOT, InfraSettings
from infra.stacks.api import ApiStack
from infra.stacks.console import ConsoleStack
from infra.stacks.gpu import GpuStack
from infra.stacks.observability import ObservabilityStack
from infra.stacks.serving import ServingStack
from infra.stacks.storage import StorageStack

#: The feature flags: cdk.json's ``context`` (every flag the CDK release recommends, so the CLI has
#: none to warn about, plus the project's deliberate choices, see :data:`FLAG_CHOICES`). Read
#: here too, so pure-Python synthesis (tests, ``scripts/deploy_localstack.py``) builds the same
#: templates as the CLI.
FEATURE_FLAGS: Mapping[str, Any] = MappingProxyType(
    json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
)

#: Flags set against the CDK release's recommendation, and why.
FLAG_CHOICES: Mapping[str, tuple[Any, str]] = MappingProxyType(
    {
        "@aws-cdk/core:defaultCrossStackReferences": (
            "strong",
            "exports keep protecting their producer (the storage stack) until a consumer drops "
            "them; weak references would let a storage update delete what serving still uses",
        ),
    }
)


@dataclass
class Stacks:
    """The stacks of one synthesis (absent ones are ``None``)."""

    settings: InfraSettings
    storage: StorageStack
    api: ApiStack
    serving: ServingStack | None = None
    gpu: GpuStack | None = None
    observability: ObservabilityStack | None = None
    console: ConsoleStack | None = None
    all: list[cdk.Stack] = field(default_factory=list)


def _context(app: cdk.App) -> dict[str, Any]:
    keys = (
        "stage",
        "profile",
        "upstream_url",
        "gpu_enabled",
        "gpu_instance_type",
        "gpu_min_instances",
        "gpu_max_instances",
        "gpu_target_invocations",
        "removal_policy",
        "log_retention_days",
        "waf",
        "backup",
        "cloudtrail",
        "provisioned_concurrency",
        "text_reserved_concurrency",
        "media_reserved_concurrency",
        "alarm_email",
        "registry",
        "console_origin",
        "console_domain",
        "console_certificate_arn",
    )
    return {key: app.node.try_get_context(key) for key in keys}


def build_app(app: cdk.App, *, nag: bool = True) -> Stacks:
    """Add the stage's stacks to ``app``.

    Parameters
    ----------
    app
        The CDK app; its context selects ``stage`` (dev|prod), ``profile`` (aws|localstack) and
        options (see ``infra/README.md``).
    nag
        Run cdk-nag's AwsSolutions pack at synthesis (findings fail it).

    Returns
    -------
    Stacks
        The stacks created.
    """
    settings = InfraSettings.from_context(_context(app))
    env = None  # account-agnostic: the deploy credentials decide
    account, region = app.node.try_get_context("account"), app.node.try_get_context("region")
    if account or region:
        env = cdk.Environment(account=account, region=region)
    features = settings.features
    synthesizer_factory = (
        # Unbootstrapped targets get templates that boto3 create_stack deploys: no assets.
        cdk.DefaultStackSynthesizer if features.bootstrapped else cdk.BootstraplessSynthesizer
    )

    def props(name: str) -> dict[str, Any]:
        return {
            "stack_name": f"{settings.prefix}-{name}",
            "env": env,
            "synthesizer": synthesizer_factory(),
            "description": f"aimaas {settings.stage} {name} ({settings.profile})",
            "termination_protection": settings.retain_data and features.termination_protection,
        }

    if features.lambda_functions:
        # The serving image bakes the stage's models in; the GPU endpoint's are published.
        require_models(settings.registry, settings.served_models, settings.stage)
    p = settings.prefix
    storage = StorageStack(app, f"{p}-storage", settings=settings, **props("storage"))
    gpu = serving = observability = None
    if features.lambda_functions:
        if settings.gpu_enabled:
            gpu = GpuStack(app, f"{p}-gpu", settings=settings, storage=storage, **props("gpu"))
        serving = ServingStack(
            app, f"{p}-serving", settings=settings, storage=storage, gpu=gpu, **props("serving")
        )
    api = ApiStack(
        app,
        f"{p}-api",
        settings=settings,
        storage=storage,
        backend=build_backend(settings, serving),
        **props("api"),
    )
    if serving is not None:
        observability = ObservabilityStack(
            app,
            f"{p}-observability",
            settings=settings,
            storage=storage,
            api=api.api,
            functions=serving.functions,
            gpu=gpu,
            batch_dead_letters=serving.batch_dead_letters,
            **props("observability"),
        )
    console = None
    if features.console_cdn:
        # After the API: the console's CSP and config.json name the API's URL.
        api_base = (
            f"https://{api.api.rest_api_id}.execute-api.{api.region}.{api.url_suffix}"
            f"/{settings.stage}"
        )
        console = ConsoleStack(
            app,
            f"{p}-console",
            settings=settings,
            storage=storage,
            api_base=api_base,
            **props("console"),
        )
    stacks = [s for s in (storage, gpu, serving, api, observability, console) if s is not None]
    for stack in stacks:
        cdk.Tags.of(stack).add("project", "aimaas")
        cdk.Tags.of(stack).add("stage", settings.stage)
        cdk.Tags.of(stack).add("profile", settings.profile)
    if nag:
        add_nag_checks(app)
    return Stacks(settings, storage, api, serving, gpu, observability, console, stacks)
