"""``make deploy STAGE=dev`` and ``make destroy STAGE=dev``: the whole deploy as one command.

Deploy, after ``make`` has built the models (synthesis refuses a stage whose models are
missing) and installed the pinned CDK CLI:

1. preflight (:mod:`infra.preflight`); a blocker (a quota only AWS can raise) stops here;
2. what preflight found missing and can be created: ``cdk bootstrap``, the key pepper
   (a random SecureString; CloudFormation cannot create one);
3. ``cdk deploy --all``; a stage with the GPU first deploys its storage stack and publishes the
   models to the bucket, because the endpoint loads them when it starts;
4. the console's origin: the API lets only the console's origin call it from a browser (CORS),
   and that is the CloudFront distribution's domain, known once the console stack exists (it
   comes after the API, whose URL its CSP names). A stage without a custom ``console_domain``
   therefore takes ``console_origin`` from the deployed console stack's ``ConsoleUrl``: read
   before the deploy when the stack exists, else read after it and the serving and API stacks
   deployed again with it (the first deploy of a stage only).

Destroy: ``cdk destroy --all`` (a stage whose ``removal_policy`` is ``retain`` keeps its data
and has termination protection: AWS refuses to delete it until that is lifted by hand).

Usage: ``python -m infra.deploy --stage dev [--destroy] [-c key=value ...]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aimaas.auth.pepper import create_pepper, default_parameter
from infra.preflight import (
    TODO,
    Check,
    Clients,
    PreflightError,
    blocked,
    parse_context,
    report,
    run_checks,
)
from infra.settings import REPO_ROOT, InfraSettings

CDK = str(REPO_ROOT / "node_modules" / ".bin" / "cdk")
PYTHON = sys.executable
MODEL_PREFIX = "models/"
NO_PROMPT = ("--require-approval", "never")


def cdk_context(stage: str, extra: dict[str, str]) -> tuple[str, ...]:
    """``-c key=value`` arguments for the CDK CLI: the stage and any other context given."""
    return tuple(arg for k, v in {**extra, "stage": stage}.items() for arg in ("-c", f"{k}={v}"))


@dataclass(frozen=True)
class Step:
    """One deploy step: a command to run, or an action on the account."""

    title: str
    command: tuple[str, ...] | None = None
    action: Callable[[], None] | None = None


def stack_output(cloudformation: Any, stack: str, key: str) -> str:
    """One output of a deployed stack (KeyError naming the outputs there are)."""
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    }
    if key not in outputs:
        raise KeyError(f"{stack} has no output {key!r}; it has {sorted(outputs)}")
    return outputs[key]


def deploy_steps(
    settings: InfraSettings,
    checks: Sequence[Check],
    context: Sequence[str],
    clients: Clients,
    cloudformation: Any,
    run: Callable[[Sequence[str]], None],
) -> list[Step]:
    """The steps that deploy ``settings``' stage, given what preflight found."""
    todo = {check.name for check in checks if check.outcome == TODO}
    steps: list[Step] = []
    if "cdk bootstrap" in todo:
        steps.append(Step("cdk bootstrap", (CDK, "bootstrap", *context)))
    if "key pepper" in todo:
        steps.append(
            Step(
                f"create {default_parameter(settings.stage)}",
                action=lambda: create_pepper(clients.ssm, settings.stage),
            )
        )
    if settings.gpu_enabled:
        storage = f"{settings.prefix}-storage"

        def publish() -> None:
            bucket = stack_output(cloudformation, storage, "ModelBucketName")
            run(
                (
                    *(PYTHON, "-m", "model_export", "publish"),
                    *("--registry", str(settings.registry)),
                    *("--bucket", bucket, "--prefix", MODEL_PREFIX),
                )
            )

        steps.append(Step(f"deploy {storage}", (CDK, "deploy", storage, *context, *NO_PROMPT)))
        steps.append(Step("publish the models for the GPU endpoint", action=publish))
    steps.append(Step("deploy every stack", (CDK, "deploy", "--all", *context, *NO_PROMPT)))
    if settings.features.console_cdn and not settings.console_origin:
        console = f"{settings.prefix}-console"

        def allow_console() -> None:
            origin = stack_output(cloudformation, console, "ConsoleUrl")
            run(
                (
                    *(CDK, "deploy", f"{settings.prefix}-serving", f"{settings.prefix}-api"),
                    *context,
                    *("-c", f"console_origin={origin}"),
                    *NO_PROMPT,
                )
            )

        steps.append(Step("let the console's origin call the API (CORS)", action=allow_console))
    return steps


def deployed_console_origin(cloudformation: Any, settings: InfraSettings) -> str | None:
    """The deployed console stack's ``ConsoleUrl``, or None where it is not deployed yet."""
    from botocore.exceptions import ClientError

    if not settings.features.console_cdn:
        return None
    try:
        return stack_output(cloudformation, f"{settings.prefix}-console", "ConsoleUrl")
    except ClientError as error:  # "Stack with id ... does not exist"
        if error.response.get("Error", {}).get("Code") == "ValidationError":
            return None
        raise
    except KeyError:
        return None


def destroy_steps(context: Sequence[str]) -> list[Step]:
    """The steps that tear a stage down."""
    return [Step("destroy every stack", (CDK, "destroy", "--all", *context, "--force"))]


def _run(command: Sequence[str]) -> None:
    subprocess.run(list(command), cwd=REPO_ROOT, check=True)  # noqa: S603 - our own argv


def execute(steps: Sequence[Step], run: Callable[[Sequence[str]], None] = _run) -> None:
    """Run the steps in order; the first failure stops the rest."""
    for number, step in enumerate(steps, 1):
        print(f"[deploy {number}/{len(steps)}] {step.title}", flush=True)
        if step.command is not None:
            run(step.command)
        if step.action is not None:
            step.action()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--destroy", action="store_true", help="tear the stage down")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    extra = parse_context(args.context)
    context = cdk_context(args.stage, extra)
    if args.destroy:
        execute(destroy_steps(context))
        return 0
    import boto3

    settings = InfraSettings.from_context({**extra, "stage": args.stage})
    session = boto3.session.Session()
    if not session.region_name:
        print("deploy: no AWS region configured (AWS_REGION or a profile's region)")
        return 1
    clients = Clients.from_session(session)
    try:
        checks = run_checks(settings, clients, session.region_name)
    except PreflightError as error:
        print(f"deploy: {error}")
        return 2
    print(report(checks), flush=True)
    if blocked(checks):
        return 1
    cloudformation = session.client("cloudformation")
    if not settings.console_origin:
        # Keep the API's CORS origin on a redeploy: the console's domain does not change.
        origin = deployed_console_origin(cloudformation, settings)
        if origin:
            extra["console_origin"] = origin
            context = cdk_context(args.stage, extra)
            settings = InfraSettings.from_context({**extra, "stage": args.stage})
    steps = deploy_steps(settings, checks, context, clients, cloudformation, _run)
    execute(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
