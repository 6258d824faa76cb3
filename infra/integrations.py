"""What API Gateway forwards prediction requests to, by the profile's ``integration`` feature.

- ``lambda`` (the ``aws`` profile): Lambda proxy integrations on the inference aliases, behind
  the Lambda REQUEST authorizer, which turns ``x-api-key`` or ``Authorization: Bearer`` into a
  tenant and returns the usage-plan key (``apiKeySource = AUTHORIZER``).
- ``http_proxy`` (the ``localstack`` profile): one HTTP proxy to an upstream server (the local
  FastAPI app); API Gateway checks the ``x-api-key`` header itself (``apiKeySource = HEADER``);
  no Lambda anywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.settings import InfraSettings
from infra.stacks.serving import GATEWAY_TIMEOUT_S, MODEL_GROUPS, ServingStack


@dataclass(frozen=True)
class Route:
    """A resource path under the API root, the methods on it, and the target group."""

    path: str
    methods: tuple[str, ...]
    target: str  # "text" | "media" | "upstream"
    json_body: bool = False  # body validated against a (lenient) JSON model


class ApiBackend(ABC):
    """How the REST API reaches the code, and how it authenticates callers."""

    key_source: apigw.ApiKeySourceType

    def attach(self, scope: Construct) -> None:  # noqa: B027 - optional hook
        """Create what the backend needs inside the API stack (called once, first)."""

    @abstractmethod
    def routes(self) -> tuple[Route, ...]:
        """Prediction routes (all API-key protected) in creation order."""

    @abstractmethod
    def integration(self, target: str, path: str) -> apigw.Integration:
        """The integration for ``target`` on resource ``path``."""

    @abstractmethod
    def authorizer(self, scope: Construct) -> apigw.IAuthorizer | None:
        """The authorizer for prediction routes (``None``: API keys checked by API Gateway)."""

    def open_routes(self) -> tuple[Route, ...]:
        """Routes without key or authorizer: health, the OpenAPI contract and its docs page."""
        return tuple(
            Route(path, ("GET",), self.open_target)
            for path in ("health", "openapi.json", "docs", "docs-static/{proxy+}")
        )

    #: Where :meth:`open_routes` go.
    open_target: str = "text"


class LambdaBackend(ApiBackend):
    """Lambda proxy integrations and the REQUEST authorizer (the ``aws`` profile)."""

    key_source = apigw.ApiKeySourceType.AUTHORIZER

    def __init__(self, serving: ServingStack | None) -> None:
        if serving is None:
            raise TypeError("Lambda integrations need the serving stack")
        self.serving = serving
        self._groups = MODEL_GROUPS
        self._integrations: dict[str, apigw.LambdaIntegration] = {}
        self._targets: dict[str, lambda_.IFunction] = {}

    def attach(self, scope: Construct) -> None:
        # Invoke permissions are created beside the function construct. Referencing the
        # functions by ARN from inside the API stack puts those permissions here, so the serving
        # stack never refers back to the API (which would be a cross-stack cycle).
        for name, alias in (
            *self.serving.aliases.items(),
            ("authorizer", self.serving.authorizer),
        ):
            self._targets[name] = lambda_.Function.from_function_attributes(
                scope,
                f"{name.title()}Target",
                function_arn=alias.function_arn,
                same_environment=True,
            )

    def routes(self) -> tuple[Route, ...]:
        explicit = tuple(
            Route(
                f"v1/{task}",
                ("POST",),
                group.name,
                json_body=task in {"embeddings", "text-classification"},
            )
            for group in self._groups
            for task in group.tasks
        )
        # Everything else under /v1 (catalogue, generic predict, usage) goes to the text group.
        return (*explicit, Route("v1/{proxy+}", ("ANY",), "text"))

    def integration(self, target: str, path: str) -> apigw.Integration:
        if target not in self._integrations:
            self._integrations[target] = apigw.LambdaIntegration(
                self._targets[target],
                proxy=True,
                # One resource-wide invoke permission instead of one per method keeps the
                # function policy under its 20 kB limit as routes grow.
                scope_permission_to_method=False,
                timeout=cdk.Duration.seconds(GATEWAY_TIMEOUT_S),
            )
        return self._integrations[target]

    def authorizer(self, scope: Construct) -> apigw.IAuthorizer:
        authorizer = apigw.RequestAuthorizer(
            scope,
            "ApiKeyAuthorizer",
            handler=self._targets["authorizer"],
            # The key may come as x-api-key or as Authorization: Bearer, so no single header can
            # be required: no identity sources, and with them no result caching (see
            # functions/authorizer/handler.py: revocation and hard limits stay exact).
            identity_sources=[],
            results_cache_ttl=cdk.Duration.seconds(0),
        )
        # CDK renders an empty list as IdentitySource "", which API Gateway reads as a source.
        cfn = authorizer.node.default_child
        if isinstance(cfn, cdk.CfnResource):
            cfn.add_property_deletion_override("IdentitySource")
        return authorizer


class HttpProxyBackend(ApiBackend):
    """One HTTP proxy to an upstream server (the ``localstack`` profile)."""

    key_source = apigw.ApiKeySourceType.HEADER
    open_target = "upstream"

    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url.rstrip("/")

    def routes(self) -> tuple[Route, ...]:
        return (Route("v1/{proxy+}", ("ANY",), "upstream"),)

    def integration(self, target: str, path: str) -> apigw.Integration:
        # The same path upstream; a greedy {proxy+} becomes the {proxy} the method captured.
        if "{proxy+}" not in path:
            return apigw.HttpIntegration(f"{self.upstream_url}/{path}", proxy=True)
        return apigw.HttpIntegration(
            f"{self.upstream_url}/{path.replace('{proxy+}', '{proxy}')}",
            http_method="ANY",
            proxy=True,
            options=apigw.IntegrationOptions(
                request_parameters={"integration.request.path.proxy": "method.request.path.proxy"}
            ),
        )

    def authorizer(self, scope: Construct) -> None:
        return None


#: Integrations by the profile's ``integration`` feature (:data:`infra.settings.PROFILES`).
BACKENDS: Mapping[str, Callable[[InfraSettings, ServingStack | None], ApiBackend]] = {
    "lambda": lambda settings, serving: LambdaBackend(serving),
    "http_proxy": lambda settings, serving: HttpProxyBackend(settings.upstream_url or ""),
}


def build_backend(settings: InfraSettings, serving: ServingStack | None) -> ApiBackend:
    """The backend for ``settings.profile``.

    Parameters
    ----------
    settings
        The resolved settings (the profile's ``integration`` feature picks the backend).
    serving
        The serving stack (``aws`` profile) or ``None``.

    Returns
    -------
    ApiBackend
        The profile's backend.
    """
    return BACKENDS[settings.features.integration](settings, serving)
