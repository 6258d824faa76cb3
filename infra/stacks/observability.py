"""A dashboard and the alarms that page someone, on a KMS-encrypted SNS topic. AWS profile only.

Application metrics come from the functions' Powertools EMF output in namespace ``aimaas``
(``Latency`` and ``Requests`` with dimensions ``service``, ``model``, ``status_class`` from
functions/inference/inference_handler.py; ``ColdStart``; ``LedgerWriteFailures`` with
``service``); SEARCH expressions pick up whatever dimension values exist, so a new model
needs no dashboard change.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.settings import InfraSettings
from infra.stacks.gpu import VARIANT, GpuStack
from infra.stacks.serving import INFERENCE_SERVICE, METRICS_NAMESPACE
from infra.stacks.stage import StageStack

PERIOD = cdk.Duration.minutes(1)
# Thresholds: a 1 % 5xx rate or a p99 above 10 s for 5 minutes is an incident.
SERVER_ERROR_RATE = 0.01
P99_LATENCY_MS = 10_000


class ObservabilityStack(StageStack):
    """Dashboard, alarms and the alarm topic.

    Attributes
    ----------
    topic
        Where alarms go (subscribe with ``-c alarm_email=...``).
    alarms
        Every alarm, by construct id.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: apigw.RestApi,
        functions: dict[str, lambda_.Function],
        gpu: GpuStack | None = None,
        batch_dead_letters: sqs.IQueue | None = None,
        **kwargs: object,
    ) -> None:
        # settings= and storage= are StageStack's (self.settings, self.storage).
        super().__init__(scope, construct_id, **kwargs)
        settings, storage = self.settings, self.storage
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"aimaas {settings.stage} alarms",
            master_key=storage.key,
            enforce_ssl=True,
        )
        if settings.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(settings.alarm_email))
        self.alarms: dict[str, cw.Alarm] = {}
        action = cw_actions.SnsAction(self.topic)

        def alarm(construct_id: str, metric: cw.IMetric, threshold: float, what: str) -> None:
            created = metric.create_alarm(
                self,
                construct_id,
                alarm_description=f"aimaas {settings.stage}: {what}",
                threshold=threshold,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            self.alarms[construct_id] = created

        # 5XXError is 0/1 per request, so its Average is the error rate.
        alarm(
            "Api5xxRate",
            api.metric_server_error(statistic="Average", period=PERIOD),
            SERVER_ERROR_RATE,
            "API 5xx rate >= 1 %",
        )
        alarm(
            "ApiP99Latency",
            api.metric_latency(statistic="p99", period=PERIOD),
            P99_LATENCY_MS,
            "API p99 latency >= 10 s",
        )
        for name, function in functions.items():
            alarm(
                f"{name.title()}Throttles",
                function.metric_throttles(statistic="Sum", period=PERIOD),
                1,
                f"{name} function throttled (reserved concurrency reached)",
            )
            alarm(
                f"{name.title()}Errors",
                function.metric_errors(statistic="Sum", period=PERIOD),
                5,
                f"{name} function errors",
            )
        # A prediction whose usage could not be recorded is not served (the ledger policy), so
        # any failure is both lost revenue and a customer-visible error.
        alarm(
            "LedgerWriteFailures",
            cw.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name="LedgerWriteFailures",
                dimensions_map={"service": INFERENCE_SERVICE},
                statistic="Sum",
                period=PERIOD,
            ),
            1,
            "usage ledger writes failing",
        )
        if batch_dead_letters is not None:
            # A chunk there failed five deliveries: its batch never ends until someone looks.
            alarm(
                "BatchDeadLetters",
                batch_dead_letters.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=PERIOD
                ),
                1,
                "batch chunks in the dead-letter queue",
            )
        if gpu:
            alarm(
                "GpuInvocationErrors",
                self._sagemaker("Invocation5XXErrors", gpu.endpoint_name, "Sum"),
                5,
                "GPU endpoint 5xx",
            )

        self._dashboard(settings, api, functions, gpu)

    @staticmethod
    def _sagemaker(metric: str, endpoint: str, statistic: str) -> cw.Metric:
        return cw.Metric(
            namespace="AWS/SageMaker",
            metric_name=metric,
            dimensions_map={"EndpointName": endpoint, "VariantName": VARIANT},
            statistic=statistic,
            period=PERIOD,
        )

    def _dashboard(
        self,
        settings: InfraSettings,
        api: apigw.RestApi,
        functions: dict[str, lambda_.Function],
        gpu: GpuStack | None,
    ) -> None:
        def lambda_graph(title: str, metric: str, statistic: str) -> cw.GraphWidget:
            return cw.GraphWidget(
                title=title,
                left=[
                    f.metric(metric, statistic=statistic, period=PERIOD, label=name)
                    for name, f in functions.items()
                ],
                width=6,
            )

        def search(expression: str, label: str, statistic: str) -> cw.MathExpression:
            return cw.MathExpression(
                expression=f"SEARCH('{expression}', '{statistic}', 60)",
                label=label,
                using_metrics={},
                period=PERIOD,
            )

        ns = METRICS_NAMESPACE
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{settings.prefix}-overview")
        dashboard.add_widgets(
            cw.GraphWidget(
                title="API requests and errors",
                left=[
                    api.metric_count(period=PERIOD, statistic="Sum"),
                    api.metric_client_error(period=PERIOD, statistic="Sum"),
                    api.metric_server_error(period=PERIOD, statistic="Sum"),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="API latency (ms)",
                left=[
                    api.metric_latency(period=PERIOD, statistic=s, label=s)
                    for s in ("p50", "p90", "p99")
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            lambda_graph("Lambda errors", "Errors", "Sum"),
            lambda_graph("Lambda duration p99", "Duration", "p99"),
            lambda_graph("Lambda throttles", "Throttles", "Sum"),
            lambda_graph("Lambda concurrent executions", "ConcurrentExecutions", "Maximum"),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Latency by model p90 (EMF)",
                left=[
                    search(f'{{{ns},model,service,status_class}} MetricName="Latency"', "", "p90")
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Cold starts (EMF)",
                left=[search(f'{{{ns},function_name,service}} MetricName="ColdStart"', "", "Sum")],
                width=8,
            ),
            # API Gateway publishes no per-key or per-plan metric; per-tenant and per-plan usage
            # lives in the usage ledger (GET /v1/usage, the admin CLI), not in CloudWatch.
            cw.GraphWidget(
                title="Requests by model and status class (EMF)",
                left=[
                    search(f'{{{ns},model,service,status_class}} MetricName="Requests"', "", "Sum")
                ],
                width=8,
            ),
        )
        alarm_widgets: list[cw.IWidget] = [
            cw.AlarmStatusWidget(alarms=list(self.alarms.values()), title="Alarms", width=24)
        ]
        if gpu:
            alarm_widgets.append(
                cw.GraphWidget(
                    title="SageMaker invocations and model latency",
                    left=[self._sagemaker("Invocations", gpu.endpoint_name, "Sum")],
                    right=[self._sagemaker("ModelLatency", gpu.endpoint_name, "p99")],
                    width=24,
                )
            )
        dashboard.add_widgets(*alarm_widgets)
