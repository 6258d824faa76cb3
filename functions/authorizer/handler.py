"""The API Gateway (REST) REQUEST Lambda authorizer: API key -> tenant, plan and usage identifier.

Deployment contract (for the CDK app)
-------------------------------------
- Type ``REQUEST``, **no identity sources and result caching off** (``resultsCacheTtl`` 0; with
  the L1 ``CfnAuthorizer``: ``identity_source`` unset, ``authorizer_result_ttl_in_seconds=0``).
  Why: callers may send the key as ``x-api-key`` *or* ``Authorization: Bearer``. API Gateway
  answers 401 without calling the authorizer when any listed identity source is missing, and
  it caches only on identity sources, so listing both would refuse Bearer-only callers and
  listing one would refuse the other. With caching off, identity sources are optional and the
  authorizer sees every request, which also keeps revocation and the hard monthly limit exact
  (one consistent key read, one tenant read and one counter read per call).
- The REST API's ``apiKeySource`` is ``AUTHORIZER`` and the methods have ``apiKeyRequired``:
  the usage plans then throttle by the ``usageIdentifierKey`` returned here.
- Environment: ``AIMAAS_KEY_STORE=dynamodb``, ``AIMAAS_LEDGER=dynamodb``,
  ``AIMAAS_TENANTS_TABLE``, ``AIMAAS_USAGE_TABLE``, and the pepper's SSM SecureString as
  ``AIMAAS_KEY_PEPPER_PARAMETER`` (default ``/aimaas/<stage>/key-pepper``; see
  :mod:`aimaas.auth.pepper`). ``plans.toml`` must ship in
  the layer as ``aimaas/aimaas/data/plans.toml`` (or set ``AIMAAS_CONFIG_DIR``).
- IAM: ``dynamodb:GetItem`` + ``dynamodb:UpdateItem`` (``last_used_at``) on the tenants table,
  ``dynamodb:GetItem`` on the usage table, ``ssm:GetParameter`` on the pepper parameter (if
  used). No API Gateway permission: see below.

Usage identifier
----------------
When the admin tooling creates a tenant key it also creates an API Gateway API key whose value
is NOT the customer's key but :func:`aimaas.auth.keys.usage_identifier` (an HMAC of the key id
under the pepper), and keeps only the gateway key's id on the key record. The authenticator
computes the same value for a key that has a gateway key, so this function returns it with no
stored copy and no API call: it needs no ``apigateway:GET`` on the region's API keys. The value
is only a usage-plan bucket name: with key source AUTHORIZER, API Gateway never accepts it from
a client, and this authorizer rejects it (it is not an ``amk_`` key). Records written before
identifiers were derived keep their stored random value, which is returned as it is.

Outcomes
--------
- missing/malformed credentials: ``raise Exception("Unauthorized")`` -> API Gateway 401;
- unknown, revoked or expired key, inactive tenant: an explicit Deny -> 403;
- hard monthly limit reached: Allow with ``quota_retry_after`` in the context, and the
  inference app answers 429 with ``Retry-After`` (an authorizer cannot choose the status code
  of a Deny, and 403 would tell the client the key is bad);
- otherwise Allow on the whole API stage (``<api>/<stage>/*/*``) with context
  ``{tenant_id, key_id, plan, month_calls}`` (the month counter it read, which the app's
  hard-limit admission uses instead of reading it again).

Keys never reach a log line: only key ids are logged.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)

from aimaas.auth import Authenticator
from aimaas.config import Settings
from aimaas.errors import Forbidden, QuotaExceeded, Unauthorized
from aimaas.wiring import build_authenticator, build_ledger

logger = Logger(service="aimaas-authorizer")


@cache
def authenticator() -> Authenticator:
    """Built once per container (cold start) from the environment."""
    settings = Settings.from_env()
    return build_authenticator(settings, build_ledger(settings))


def _response(
    event: APIGatewayAuthorizerRequestEvent,
    principal_id: str,
    *,
    context: dict[str, str] | None = None,
    usage_identifier_key: str | None = None,
) -> APIGatewayAuthorizerResponse:
    """A policy for the request's API and stage (its ARN's partition, region and account)."""
    arn = event.parsed_arn
    return APIGatewayAuthorizerResponse(
        principal_id=principal_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context=context,
        usage_identifier_key=usage_identifier_key,
        partition=arn.partition,
    )


def _headers(event: dict[str, Any]) -> dict[str, str]:
    headers = {k: v for k, v in (event.get("headers") or {}).items() if v is not None}
    # multiValueHeaders: a header sent twice must not slip a second key past the check.
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if name.lower() in {"x-api-key", "authorization"} and values and len(set(values)) > 1:
            raise Unauthorized("The same credential header was sent more than once.")
    return headers


@logger.inject_lambda_context(log_event=False)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: Any) -> dict[str, Any]:
    """Authorize one request (see the module docstring for the outcomes).

    Every policy covers the whole stage (``<api>/<stage>/*/*``), so a cached policy would stay
    valid on every route, should caching ever be turned on.
    """
    auth = authenticator()
    try:
        principal = auth.identify(_headers(event.raw_event))
    except Unauthorized as error:
        logger.info("unauthorized", extra={"reason": error.code})
        raise Exception("Unauthorized") from None  # the contract with API Gateway: 401
    except Forbidden:
        logger.info("denied", extra={"path": event.path})
        denied = _response(event, "anonymous")
        denied.deny_all_routes()
        return denied.asdict()
    claims = {"tenant_id": principal.tenant_id, "key_id": principal.key_id, "plan": principal.plan}
    try:
        # The app admits the call near the limit with the counter read here (no second read).
        claims["month_calls"] = str(auth.enforce_limits(principal))
    except QuotaExceeded as error:
        # The app answers 429 with Retry-After (see "Outcomes" above).
        claims["quota_retry_after"] = str(error.retry_after)
        logger.info("over hard limit", extra={"tenant_id": principal.tenant_id})
    if not principal.usage_identifier:
        logger.warning(
            "key has no API Gateway usage identifier", extra={"key_id": principal.key_id}
        )
    allowed = _response(
        event,
        principal.tenant_id,
        context=claims,
        usage_identifier_key=principal.usage_identifier,
    )
    allowed.allow_all_routes()
    logger.info("allowed", extra={"tenant_id": principal.tenant_id, "key_id": principal.key_id})
    return allowed.asdict()
