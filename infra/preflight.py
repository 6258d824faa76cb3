"""``make preflight STAGE=dev``: what a first deploy of a stage needs from the account, checked
read-only with boto3 before anything is created.

- Lambda concurrency: a reservation must leave 100 executions of the account's limit
  unreserved, and new accounts start at a limit of 10;
- SageMaker (stages with the GPU): the ``<instance type> for endpoint usage`` quota must allow
  the endpoint's maximum instance count (it is often 0 on new accounts);
- the key pepper: the SecureString ``/aimaas/<stage>/key-pepper`` (CloudFormation cannot create
  one; ``make deploy`` does if it is missing);
- CDK bootstrap: version 6 or later in the account and region (``make deploy`` bootstraps if
  it is missing).

It prints one line per check and, for each problem, the command that fixes it (a quota request
for what only AWS can grant). Exit status: 0 when nothing blocks a deploy, 1 when something
does, 2 when AWS could not be asked (credentials, network).

Usage: ``python -m infra.preflight --stage dev [-c key=value ...]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aimaas.auth.pepper import default_parameter
from infra.settings import InfraSettings

#: Lambda keeps this many of the account's concurrent executions unreserved.
LAMBDA_UNRESERVED_MINIMUM = 100
#: What Lambda gives an established account; new accounts start far below it.
LAMBDA_DEFAULT_LIMIT = 1000
#: Service Quotas' code for Lambda "Concurrent executions".
LAMBDA_CONCURRENCY_QUOTA = "L-B99A9384"
#: The version the synthesized templates' CheckBootstrapVersion rule asks for.
MIN_BOOTSTRAP_VERSION = 6
BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"

OK, TODO, BLOCKER, WARNING = "ok", "todo", "blocker", "warning"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, its outcome, and how to fix it.

    ``todo`` is something ``make deploy`` does itself (pepper, bootstrap); ``blocker`` needs
    the operator (usually a quota request); ``warning`` deploys but limits the stage.
    """

    name: str
    outcome: str  # ok | todo | blocker | warning
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Clients:
    """The boto3 clients the checks use (tests pass stubbed ones)."""

    sts: Any
    lambda_: Any
    quotas: Any
    ssm: Any

    @classmethod
    def from_session(cls, session: Any) -> Clients:
        return cls(
            sts=session.client("sts"),
            lambda_=session.client("lambda"),
            quotas=session.client("service-quotas"),
            ssm=session.client("ssm"),
        )


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def check_concurrency(settings: InfraSettings, clients: Clients) -> Check:
    """Whether the stage's reservation fits the account's Lambda concurrency."""
    account = clients.lambda_.get_account_settings()
    limit = int(account["AccountLimit"]["ConcurrentExecutions"])
    unreserved = int(account["AccountLimit"]["UnreservedConcurrentExecutions"])
    reserved = settings.reserved_concurrency
    request = (
        "aws service-quotas request-service-quota-increase --service-code lambda "
        f"--quota-code {LAMBDA_CONCURRENCY_QUOTA} --desired-value {{value}}"
    )
    if reserved and unreserved - reserved < LAMBDA_UNRESERVED_MINIMUM:
        needed = limit - unreserved + reserved + LAMBDA_UNRESERVED_MINIMUM
        return Check(
            "lambda concurrency",
            BLOCKER,
            f"the stage reserves {reserved} of {unreserved} unreserved executions (limit "
            f"{limit}); Lambda must keep {LAMBDA_UNRESERVED_MINIMUM} unreserved",
            request.format(value=max(needed, LAMBDA_DEFAULT_LIMIT))
            + " (or set text/media_reserved_concurrency to 0 in stages.toml)",
        )
    if limit < LAMBDA_DEFAULT_LIMIT:
        return Check(
            "lambda concurrency",
            WARNING,
            f"account limit {limit} concurrent executions (a new account's): the API serves "
            f"at most {limit} requests at once",
            request.format(value=LAMBDA_DEFAULT_LIMIT),
        )
    return Check(
        "lambda concurrency",
        OK,
        f"limit {limit}, {unreserved} unreserved, the stage reserves {reserved}",
    )


def _quotas(clients: Clients, service: str) -> Iterator[dict[str, Any]]:
    for page in clients.quotas.get_paginator("list_service_quotas").paginate(ServiceCode=service):
        yield from page.get("Quotas", [])


def check_gpu_quota(settings: InfraSettings, clients: Clients) -> Check | None:
    """Whether SageMaker may run the endpoint's maximum instance count (GPU stages only)."""
    if not settings.gpu_enabled:
        return None
    wanted = f"{settings.gpu_instance_type} for endpoint usage"
    needed = settings.gpu_max_instances
    for quota in _quotas(clients, "sagemaker"):
        if quota.get("QuotaName") == wanted:
            value = int(quota.get("Value", 0))
            if value >= needed:
                return Check("sagemaker quota", OK, f"{wanted}: {value} (needs {needed})")
            return Check(
                "sagemaker quota",
                BLOCKER,
                f"{wanted}: {value}, the endpoint scales to {needed}",
                "aws service-quotas request-service-quota-increase --service-code sagemaker "
                f"--quota-code {quota['QuotaCode']} --desired-value {needed}",
            )
    return Check(
        "sagemaker quota",
        BLOCKER,
        f"no SageMaker quota named {wanted!r} in this region (is the instance type offered?)",
        "pick another region or gpu_instance_type, or -c gpu_enabled=false",
    )


def check_pepper(settings: InfraSettings, clients: Clients) -> Check:
    """Whether the stage's key pepper exists as a SecureString (its value is never read)."""
    name = default_parameter(settings.stage)
    found = clients.ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    ).get("Parameters", [])
    create = (
        f'aws ssm put-parameter --type SecureString --name {name} --value "$(openssl rand -hex 32)"'
    )
    if not found:
        return Check("key pepper", TODO, f"{name} does not exist (make deploy creates it)", create)
    if found[0].get("Type") != "SecureString":
        return Check(
            "key pepper",
            BLOCKER,
            f"{name} is a {found[0].get('Type')}, not a SecureString",
            f"aws ssm delete-parameter --name {name} && {create}",
        )
    return Check("key pepper", OK, f"{name} (SecureString)")


def check_bootstrap(settings: InfraSettings, clients: Clients, account: str, region: str) -> Check:
    """Whether ``cdk bootstrap`` has run (version 6 or later) in this account and region."""
    bootstrap = f"node_modules/.bin/cdk bootstrap aws://{account}/{region}"
    try:
        value = clients.ssm.get_parameter(Name=BOOTSTRAP_PARAMETER)["Parameter"]["Value"]
    except Exception as error:
        if _code(error) != "ParameterNotFound":
            raise
        return Check("cdk bootstrap", TODO, "not bootstrapped (make deploy bootstraps)", bootstrap)
    if int(value) < MIN_BOOTSTRAP_VERSION:
        return Check(
            "cdk bootstrap",
            TODO,
            f"version {value}, the templates need {MIN_BOOTSTRAP_VERSION} (make deploy upgrades)",
            bootstrap,
        )
    return Check("cdk bootstrap", OK, f"version {value}")


class PreflightError(RuntimeError):
    """AWS could not be asked (no credentials, no network, access denied)."""


def run_checks(settings: InfraSettings, clients: Clients, region: str) -> list[Check]:
    """Every check for ``settings``' stage, in the order they are printed.

    Raises
    ------
    PreflightError
        A call to AWS failed for another reason than what it checks.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _run_checks(settings, clients, region)
    except (BotoCoreError, ClientError) as error:
        raise PreflightError(f"cannot check the account: {error}") from None


def _run_checks(settings: InfraSettings, clients: Clients, region: str) -> list[Check]:
    account = str(clients.sts.get_caller_identity()["Account"])
    checks = [
        Check("account", OK, f"{account} in {region}"),
        check_concurrency(settings, clients),
        check_gpu_quota(settings, clients),
        check_pepper(settings, clients),
        check_bootstrap(settings, clients, account, region),
    ]
    return [check for check in checks if check is not None]


def blocked(checks: Sequence[Check]) -> bool:
    """Whether anything stops a deploy until the operator acts."""
    return any(check.outcome == BLOCKER for check in checks)


def report(checks: Sequence[Check]) -> str:
    """The printed report: one line per check, the fix indented under it."""
    lines = []
    for check in checks:
        lines.append(f"[{check.outcome:>7}] {check.name}: {check.detail}")
        if check.fix and check.outcome != OK:
            lines.append(f"          {check.fix}")
    verdict = "blocked: act on the lines marked blocker" if blocked(checks) else "ready"
    lines.append(f"preflight: {verdict}")
    return "\n".join(lines)


def parse_context(pairs: Sequence[str]) -> dict[str, str]:
    """``-c key=value`` pairs, as the CDK CLI takes them."""
    context = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"-c expects key=value, not {pair!r}")
        context[key] = value
    return context


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.preflight", description=__doc__)
    parser.add_argument("--stage", required=True)
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    import boto3

    settings = InfraSettings.from_context({**parse_context(args.context), "stage": args.stage})
    session = boto3.session.Session()
    if not session.region_name:
        print("preflight: no AWS region configured (AWS_REGION or a profile's region)")
        return 1
    try:
        checks = run_checks(settings, Clients.from_session(session), session.region_name)
    except PreflightError as error:
        print(f"preflight: {error}")
        return 2
    print(report(checks))
    return 1 if blocked(checks) else 0


if __name__ == "__main__":
    sys.exit(main())
