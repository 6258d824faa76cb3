"""The public face: a REST API with API keys, one usage plan per plan in ``aimaas/data/plans.toml``,
JSON access logs, default throttling, binary media types and an optional WAF.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from aimaas.console_policy import (
    CORS_ALLOW_HEADERS,
    CORS_ALLOW_METHODS,
    CORS_EXPOSE_HEADERS,
    CORS_MAX_AGE_S,
)
from aimaas.plans import Plan
from infra.integrations import ApiBackend, Route
from infra.nag import acknowledge
from infra.retention import retention
from infra.stacks.stage import StageStack

BINARY_MEDIA_TYPES = ("image/*", "audio/*", "application/octet-stream", "multipart/form-data")
# Account-wide defaults per method; plans throttle per key below these.
DEFAULT_RATE_LIMIT = 1000
DEFAULT_BURST_LIMIT = 2000
#: WAF rate rules count requests per source IP over this window.
WAF_WINDOW_S = 300
#: Requests with no credential header, per IP and window (~6.7/s: health checks, docs).
WAF_ANONYMOUS_LIMIT = 2000
#: The headers a key may come in (functions/authorizer/handler.py).
CREDENTIAL_HEADERS = ("x-api-key", "authorization")
#: The per-IP ceiling for keyed traffic is this many times the fastest plan's rate.
WAF_KEYED_HEADROOM = 2


def waf_keyed_limit(plans: Sequence[Plan]) -> int:
    """Requests per IP and window that keyed traffic may send before WAF blocks it.

    Above every plan's steady rate over the window (``WAF_KEYED_HEADROOM`` times the fastest),
    so a paying tenant's calls from one egress IP meet their usage plan's throttle first.
    """
    fastest = max((plan.throttle.rate_limit for plan in plans), default=1.0)
    return math.ceil(fastest * WAF_WINDOW_S * WAF_KEYED_HEADROOM)


# Lenient on purpose: customers post JSON without a Content-Type header, and API Gateway then
# applies the application/json model, so the schema must accept every body the app accepts.
_JSON_OBJECT_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT
)


#: ``$context.error.messageString`` is already a quoted JSON string.
ERROR_TEMPLATE = '{"error": {"code": "%s", "message": %s, "request_id": "$context.requestId"}}'


@dataclass(frozen=True)
class GatewayError:
    """One gateway response: its type, the status to answer (its own if None), code, message."""

    response_type: apigw.ResponseType
    code: str
    status: int | None = None
    message: str | None = None  # API Gateway's own message if None


#: Every error API Gateway answers by itself, before or instead of the code. DEFAULT_4XX and
#: DEFAULT_5XX cover the types not listed (and any AWS adds later).
GATEWAY_ERRORS: tuple[GatewayError, ...] = (
    GatewayError(apigw.ResponseType.DEFAULT_4_XX, "bad_request"),
    GatewayError(apigw.ResponseType.DEFAULT_5_XX, "internal_error"),
    GatewayError(apigw.ResponseType.BAD_REQUEST_BODY, "malformed_request"),
    GatewayError(apigw.ResponseType.BAD_REQUEST_PARAMETERS, "malformed_request"),
    GatewayError(apigw.ResponseType.UNAUTHORIZED, "unauthorized"),
    GatewayError(apigw.ResponseType.ACCESS_DENIED, "forbidden"),
    GatewayError(apigw.ResponseType.INVALID_API_KEY, "forbidden"),
    # A REST API answers an unknown route or method with 403 "Missing Authentication Token".
    GatewayError(
        apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        "not_found",
        404,
        "No route matches this method and path.",
    ),
    GatewayError(apigw.ResponseType.RESOURCE_NOT_FOUND, "not_found"),
    GatewayError(apigw.ResponseType.REQUEST_TOO_LARGE, "payload_too_large"),
    GatewayError(apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    GatewayError(apigw.ResponseType.QUOTA_EXCEEDED, "quota_exceeded"),
    GatewayError(apigw.ResponseType.THROTTLED, "rate_limited"),
    GatewayError(apigw.ResponseType.WAF_FILTERED, "forbidden", message="The request was blocked."),
    # The authorizer could not answer (its store throttled or down): retryable, like the app's
    # own 503s; a misconfigured one is the platform's fault.
    GatewayError(apigw.ResponseType.AUTHORIZER_FAILURE, "backend_unavailable", 503),
    GatewayError(apigw.ResponseType.AUTHORIZER_CONFIGURATION_ERROR, "internal_error"),
    GatewayError(apigw.ResponseType.INTEGRATION_FAILURE, "internal_error"),
    GatewayError(
        apigw.ResponseType.INTEGRATION_TIMEOUT,
        "timeout",
        message="The request did not complete within the gateway's time limit.",
    ),
)


#: Access log lines: who called (tenant and key id, from the authorizer's context) and what
#: happened. Never the key: no header is logged, and not ``$context.identity.apiKey`` either (the
#: usage identifier behind an authorizer; the caller's own key where API Gateway reads the
#: x-api-key header itself).
ACCESS_LOG_FIELDS: dict[str, str] = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "tenantId": "$context.authorizer.tenant_id",
    "keyId": "$context.authorizer.key_id",
    "plan": "$context.authorizer.plan",
    "errorMessage": "$context.error.message",
    "wafStatus": "$context.waf.status",
}


def _output_id(name: str) -> str:
    return "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


class ApiStack(StageStack):
    """REST API + usage plans (+ WAF). The backend decides integrations and authentication.

    Attributes
    ----------
    api
        The REST API.
    usage_plans
        ``{plan name: usage plan}``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        backend: ApiBackend,
        **kwargs: object,
    ) -> None:
        # settings= and storage= are StageStack's (self.settings, self.storage).
        super().__init__(scope, construct_id, **kwargs)
        settings, storage = self.settings, self.storage
        self._log_removal = (
            cdk.RemovalPolicy.RETAIN if settings.retain_data else cdk.RemovalPolicy.DESTROY
        )
        logs_on = settings.features.cloudwatch

        stage_options: dict[str, object] = {
            "stage_name": settings.stage,
            "metrics_enabled": True,
            "throttling_rate_limit": DEFAULT_RATE_LIMIT,
            "throttling_burst_limit": DEFAULT_BURST_LIMIT,
            # Bodies and keys must never land in execution logs.
            "data_trace_enabled": False,
        }
        if logs_on:
            access_logs = logs.LogGroup(
                self,
                "AccessLogs",
                retention=retention(settings.log_retention_days),
                encryption_key=storage.key,
                removal_policy=self._log_removal,
            )
            stage_options |= {
                "access_log_destination": apigw.LogGroupLogDestination(access_logs),
                "access_log_format": apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                "logging_level": apigw.MethodLoggingLevel.ERROR,
                "tracing_enabled": True,
            }

        self.api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{settings.prefix}-api",
            description=f"aimaas {settings.stage}: AI models as a service",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            api_key_source_type=backend.key_source,
            binary_media_types=list(BINARY_MEDIA_TYPES),
            deploy_options=apigw.StageOptions(**stage_options),
            # The account-level role API Gateway needs to write execution logs.
            cloud_watch_role=logs_on,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN if logs_on else None,
        )
        if logs_on:
            self._execution_logs()
        if logs_on:
            acknowledge(
                self.api.node.find_child("CloudWatchRole"),
                {
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]": "The policy AWS documents for the "
                    "account-wide API Gateway logging role."
                },
            )
        self._error_responses()

        backend.attach(self)
        authorizer = backend.authorizer(self)
        # Body validation only where a model exists: AWS skips bodies without a model anyway,
        # and LocalStack would check them against the Empty model (binary bodies fail there).
        validators: dict[bool, apigw.RequestValidator] = {}

        def validator(body: bool) -> apigw.RequestValidator:
            if body not in validators:
                validators[body] = self.api.add_request_validator(
                    "BodyAndParams" if body else "ParamsOnly",
                    validate_request_body=body,
                    validate_request_parameters=True,
                )
            return validators[body]

        models: dict[str, apigw.Model] = {}

        def json_model() -> dict[str, apigw.IModel]:
            if "json" not in models:
                models["json"] = self.api.add_model(
                    "JsonObject", content_type="application/json", schema=_JSON_OBJECT_SCHEMA
                )
            return {"application/json": models["json"]}

        for route in backend.open_routes():
            open_method = self._resource(route.path).add_method(
                "GET",
                backend.integration(route.target, route.path),
                authorization_type=apigw.AuthorizationType.NONE,
                api_key_required=False,
                request_parameters=(
                    {"method.request.path.proxy": True} if "{proxy+}" in route.path else None
                ),
            )
            acknowledge(
                open_method,
                {
                    "AwsSolutions-APIG4": "Public by design: the health check (load balancers "
                    "and uptime probes call it without credentials) and the API's contract "
                    "(OpenAPI document and its docs page); none returns tenant data.",
                    "AwsSolutions-COG4": "Public by design (no Cognito, no key): health check "
                    "and API documentation.",
                },
            )

        self.prediction_methods: list[apigw.Method] = []
        keyed_resources: list[apigw.IResource] = []
        for route in backend.routes():
            resource = self._resource(route.path)
            keyed_resources.append(resource)
            for http_method in route.methods:
                method = resource.add_method(
                    http_method,
                    backend.integration(route.target, route.path),
                    api_key_required=True,
                    authorizer=authorizer,
                    authorization_type=(
                        apigw.AuthorizationType.CUSTOM
                        if authorizer
                        else apigw.AuthorizationType.NONE
                    ),
                    request_validator=validator(route.json_body),
                    request_models=json_model() if route.json_body else None,
                    request_parameters=(
                        {"method.request.path.proxy": True} if "{proxy+}" in route.path else None
                    ),
                )
                reasons = {
                    "AwsSolutions-COG4": "Callers are API customers authenticated by API key "
                    "(usage plans); there is no Cognito user pool by design."
                }
                if authorizer is None:
                    reasons["AwsSolutions-APIG4"] = (
                        f"{settings.profile} profile: API Gateway checks the x-api-key header "
                        "itself."
                    )
                acknowledge(method, reasons)
                self.prediction_methods.append(method)

        if settings.console_origin:
            self._console_preflight(keyed_resources, settings.console_origin)

        self.usage_plans: dict[str, apigw.UsagePlan] = {}
        for plan in settings.plans:
            self.usage_plans[plan.name] = self.api.add_usage_plan(
                f"Plan{_output_id(plan.name)}",
                name=settings.usage_plan_name(plan.name),
                description=plan.description,
                throttle=apigw.ThrottleSettings(
                    rate_limit=plan.throttle.rate_limit, burst_limit=plan.throttle.burst_limit
                ),
                quota=apigw.QuotaSettings(
                    limit=plan.quota.limit, period=apigw.Period[plan.quota.period.upper()]
                ),
                api_stages=[
                    apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)
                ],
            )

        if settings.waf:
            self._waf()
        else:
            acknowledge(
                self.api.deployment_stage,
                {
                    "AwsSolutions-APIG3": f"WAF is off for stage {settings.stage!r} (cost; "
                    "enable with -c waf=true). Usage-plan throttles and quotas still apply."
                },
            )
        if True not in validators:
            acknowledge(
                self.api,
                {
                    "AwsSolutions-APIG2": "Only the catch-all proxy route exists here; its bodies "
                    "may be binary (no JSON model applies), so API Gateway checks parameters and "
                    "the upstream app validates every body (Pydantic models)."
                },
            )
        if not logs_on:
            acknowledge(
                self.api.deployment_stage,
                {
                    "AwsSolutions-APIG1": f"{settings.profile} profile: no CloudWatch Logs there "
                    "for access logs.",
                    "AwsSolutions-APIG6": f"{settings.profile} profile: no CloudWatch Logs there "
                    "for execution logs.",
                },
            )
        self._outputs()

    # -- pieces ---------------------------------------------------------------------------------

    def _resource(self, path: str) -> apigw.IResource:
        resource: apigw.IResource = self.api.root
        for part in path.split("/"):
            resource = resource.get_resource(part) or resource.add_resource(part)
        return resource

    def _console_preflight(self, resources: Sequence[apigw.IResource], origin: str) -> None:
        """The gateway answers the console's CORS preflights itself.

        A browser sends ``OPTIONS`` without the key, so the keyed methods (authorizer, API key
        required) would refuse it before the app's CORS middleware could answer; a mock
        ``OPTIONS`` per keyed resource answers with the app's own rules
        (:mod:`aimaas.console_policy`) for the one console origin.
        """
        for resource in resources:
            preflight = resource.add_cors_preflight(
                allow_origins=[origin],
                allow_methods=list(CORS_ALLOW_METHODS),
                allow_headers=list(CORS_ALLOW_HEADERS),
                expose_headers=list(CORS_EXPOSE_HEADERS),
                allow_credentials=False,
                max_age=cdk.Duration.seconds(CORS_MAX_AGE_S),
            )
            acknowledge(
                preflight,
                {
                    "AwsSolutions-APIG4": "CORS preflight (OPTIONS): browsers send it without "
                    "credentials; a mock integration answers it with headers only.",
                    "AwsSolutions-COG4": "CORS preflight (OPTIONS): browsers send it without "
                    "credentials; no Cognito by design.",
                },
            )

    def _execution_logs(self) -> None:
        """The stage's execution log group, made here so it has a retention and the stage's key.

        API Gateway would create ``API-Gateway-Execution-Logs_<api id>/<stage>`` itself on the
        first logged error, unencrypted and kept forever; the stage waits for this one instead.
        """
        group = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=cdk.Fn.join(
                "",
                ["API-Gateway-Execution-Logs_", self.api.rest_api_id, f"/{self.settings.stage}"],
            ),
            retention=retention(self.settings.log_retention_days),
            encryption_key=self.storage.key,
            removal_policy=self._log_removal,
        )
        self.api.deployment_stage.node.add_dependency(group)

    def _error_responses(self) -> None:
        """Gateway-made errors in the platform's one error shape (``aimaas.errors``)."""
        headers = {"X-Request-Id": "context.requestId"}
        if self.settings.console_origin:
            # The console must read the gateway's own errors too (a bad key, a quota, a
            # throttle): without these a browser hides them behind a CORS failure.
            headers |= {
                "Access-Control-Allow-Origin": f"'{self.settings.console_origin}'",
                "Access-Control-Expose-Headers": f"'{','.join(CORS_EXPOSE_HEADERS)}'",
                "Vary": "'Origin'",
            }
        for error in GATEWAY_ERRORS:
            message = json.dumps(error.message) if error.message else "$context.error.messageString"
            self.api.add_gateway_response(
                f"Response{error.response_type.response_type}",
                type=error.response_type,
                status_code=str(error.status) if error.status else None,
                response_headers=headers,
                templates={"application/json": ERROR_TEMPLATE % (error.code, message)},
            )

    def _waf(self) -> None:
        def managed(name: str, priority: int) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=name,
                        # Image/audio uploads exceed the body-size rule; bodies are bounded by
                        # the API (10 MB) and the app's own limit instead.
                        excluded_rules=(
                            [wafv2.CfnWebACL.ExcludedRuleProperty(name="SizeRestrictions_BODY")]
                            if name == "AWSManagedRulesCommonRuleSet"
                            else None
                        ),
                    )
                ),
                visibility_config=self._visibility(name),
            )

        def rate_rule(
            name: str, priority: int, limit: int, scope: wafv2.CfnWebACL.StatementProperty | None
        ) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=limit,
                        aggregate_key_type="IP",
                        evaluation_window_sec=WAF_WINDOW_S,
                        scope_down_statement=scope,
                    )
                ),
                visibility_config=self._visibility(name),
            )

        def has_header(name: str) -> wafv2.CfnWebACL.StatementProperty:
            return wafv2.CfnWebACL.StatementProperty(
                size_constraint_statement=wafv2.CfnWebACL.SizeConstraintStatementProperty(
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                        single_header={"Name": name}
                    ),
                    comparison_operator="GT",
                    size=0,
                    text_transformations=[
                        wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                    ],
                )
            )

        # Requests without any credential header: a tight per-IP limit (nothing but /health and
        # the docs answers them). Requests with one: a per-IP ceiling above every plan's rate,
        # so a paying tenant behind one egress IP is throttled by its usage plan, not blocked
        # here, while one source cannot flood the authorizer with made-up keys.
        anonymous = wafv2.CfnWebACL.StatementProperty(
            not_statement=wafv2.CfnWebACL.NotStatementProperty(
                statement=wafv2.CfnWebACL.StatementProperty(
                    or_statement=wafv2.CfnWebACL.OrStatementProperty(
                        statements=[has_header(h) for h in CREDENTIAL_HEADERS]
                    )
                )
            )
        )
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=self._visibility(f"{self.settings.prefix}-waf"),
            rules=[
                rate_rule("RateAnonymousPerIp", 0, WAF_ANONYMOUS_LIMIT, anonymous),
                rate_rule("RatePerIp", 1, waf_keyed_limit(self.settings.plans), None),
                managed("AWSManagedRulesAmazonIpReputationList", 2),
                managed("AWSManagedRulesCommonRuleSet", 3),
                managed("AWSManagedRulesKnownBadInputsRuleSet", 4),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=acl.attr_arn,
        )
        # WAF delivers only to log groups whose name starts with aws-waf-logs-. Keys never
        # reach the log: both credential headers are redacted.
        log_name = f"aws-waf-logs-{self.settings.prefix}"
        waf_logs = logs.LogGroup(
            self,
            "WafLogs",
            log_group_name=log_name,
            retention=retention(self.settings.log_retention_days),
            encryption_key=self.storage.key,
            removal_policy=self._log_removal,
        )
        logging = wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            log_destination_configs=[
                self.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=log_name,
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": h})
                for h in CREDENTIAL_HEADERS
            ],
        )
        logging.node.add_dependency(waf_logs)

    @staticmethod
    def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
        return wafv2.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
        )

    def _outputs(self) -> None:
        cdk.CfnOutput(self, "RestApiId", value=self.api.rest_api_id)
        cdk.CfnOutput(self, "StageName", value=self.api.deployment_stage.stage_name)
        cdk.CfnOutput(self, "ApiUrl", value=self.api.url)
        cdk.CfnOutput(
            self,
            "MaxBodyBytes",
            description="The raw request body limit of this target (AIMAAS_MAX_BODY_BYTES)",
            value=str(self.settings.features.max_body_bytes),
        )
        for name, plan in self.usage_plans.items():
            cdk.CfnOutput(self, f"UsagePlanId{_output_id(name)}", value=plan.usage_plan_id)
        cdk.CfnOutput(
            self,
            "UsagePlanIds",
            description="JSON {plan name: usage plan id}",
            value=self.to_json_string({n: p.usage_plan_id for n, p in self.usage_plans.items()}),
        )


__all__ = ["ApiStack", "Route"]
