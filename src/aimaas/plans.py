"""Plans and prices: ``aimaas/data/plans.toml`` as typed, immutable data.

The same file is read by the CDK app (API Gateway usage plans from ``throttle`` and ``quota``)
and by the runtime (hard monthly limits, which the platform enforces from its own ledger, and
prices). Standard library only: the authorizer zip imports it.

Money is computed with :class:`decimal.Decimal` so that an invoice total is exactly the sum of
its lines and equals ledger units times list price times the plan's multiplier.

Billing units
-------------
A price is quoted per billing unit (``1k_tokens``, ``image``, ``audio_second``). A usage record
may carry its units in a finer unit; :data:`UNIT_CONVERSIONS` converts ``tokens`` to
``1k_tokens`` and ``audio_ms`` to ``audio_second``. Any other mismatch is an error, never a
silent guess.

Token-priced tasks
------------------
A language model's prompt (input) and completion (output) tokens cost different amounts
(``[prices.tokens]``: USD per 1k tokens of each). One call is still one usage record with one
quantity: its tokens' charge at list price in millionths of a dollar (:data:`MICRO_USD`,
:meth:`Catalog.token_charge`, exact). Priced at ``0.000001`` USD per ``micro_usd`` it goes
through the same multiplier, request fee, usage lines and invoices as every other task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aimaas.config import load_toml

#: Multiply units in the first unit by the factor to get units in the second.
UNIT_CONVERSIONS: Mapping[tuple[str, str], Decimal] = MappingProxyType(
    {
        ("tokens", "1k_tokens"): Decimal("0.001"),
        ("audio_ms", "audio_second"): Decimal("0.001"),
    }
)


#: The billing unit of token-priced tasks: the list-price charge of a call's input and output
#: tokens, in millionths of a US dollar (:meth:`Catalog.token_charge`).
MICRO_USD = "micro_usd"
_MICRO_USD_PRICE = Decimal("0.000001")
_PER_1K_IN_MICRO = Decimal(1000)  # USD per 1k tokens -> micro-USD per token: x 1e6 / 1e3


#: The suffix of the billed task of a batch line (``embeddings+batch``), in the way
#: ``audio-classification+vad`` names a variant: its own price, its own usage and invoice lines.
BATCH_SUFFIX = "+batch"


def batch_task(task: str) -> str:
    """The billed task of ``task`` run as a line of a batch job."""
    return task if task.endswith(BATCH_SUFFIX) else task + BATCH_SUFFIX


@dataclass(frozen=True)
class Throttle:
    """Steady-state requests per second and burst size of an API Gateway usage plan."""

    rate_limit: float
    burst_limit: int


@dataclass(frozen=True)
class Quota:
    """The API Gateway usage-plan quota (best effort; not the billing limit)."""

    limit: int
    period: str  # DAY | WEEK | MONTH, as API Gateway spells it


@dataclass(frozen=True)
class Plan:
    """One subscription plan."""

    name: str
    description: str
    throttle: Throttle
    quota: Quota
    monthly_requests: int  # the hard limit, enforced by the platform from its ledger
    price_multiplier: Decimal
    #: Whether the tenant's own keys may create, revoke and rotate keys (``/v1/keys``).
    self_service_keys: bool = False
    #: Most completion tokens one language-model call may ask for (None: the model's limit).
    max_completion_tokens: int | None = None


@dataclass(frozen=True)
class Price:
    """A list price: ``usd`` per one ``unit``."""

    unit: str
    usd: Decimal


@dataclass(frozen=True)
class TokenPrice:
    """List prices of a token-priced task: USD per 1k input and per 1k output tokens."""

    input_usd: Decimal
    output_usd: Decimal


@dataclass(frozen=True)
class Catalog:
    """All plans and the price list."""

    currency: str
    plans: Mapping[str, Plan]
    task_prices: Mapping[str, Price]
    #: ``(task, model)`` -> price: a model's own price for one task it is billed under.
    model_prices: Mapping[tuple[str, str], Price] = field(default_factory=dict)
    #: A fee per billed call on top of its units (list price; the plan's multiplier applies).
    request_fee_usd: Decimal = Decimal(0)
    #: The fraction taken off the unit price of a batch line (:func:`batch_task`).
    batch_discount: Decimal = Decimal(0)
    #: Tasks whose input and output tokens have prices of their own (language models).
    token_prices: Mapping[str, TokenPrice] = field(default_factory=dict)

    def plan(self, name: str) -> Plan:
        """Return the plan called ``name``.

        Raises
        ------
        KeyError
            If there is no such plan (the message lists the known ones).
        """
        try:
            return self.plans[name]
        except KeyError:
            raise KeyError(f"unknown plan {name!r}; known: {sorted(self.plans)}") from None

    def list_price(self, task: str, model: str | None = None) -> Price:
        """The list price of one call's units: the model's own price for that task, else the
        task's.

        A model's price applies only under the task it is listed for (``[prices.models.<task>]``):
        an embeddings model that scores zero-shot labels is billed as text classification, as
        the default model doing the same work is.

        A batch line's task (:func:`batch_task`) has the price of its task less
        :attr:`batch_discount`.

        Raises
        ------
        KeyError
            If neither the model nor the task has a price.
        """
        if task.endswith(BATCH_SUFFIX):
            base = self.list_price(task.removesuffix(BATCH_SUFFIX), model)
            return Price(unit=base.unit, usd=base.usd * (1 - self.batch_discount))
        if model and (task, model) in self.model_prices:
            return self.model_prices[task, model]
        if task in self.token_prices:  # recorded as its tokens' charge (token_charge)
            return Price(unit=MICRO_USD, usd=_MICRO_USD_PRICE)
        try:
            return self.task_prices[task]
        except KeyError:
            raise KeyError(f"no price for task {task!r} (model {model!r})") from None

    def token_charge(self, task: str, input_tokens: int, output_tokens: int) -> Decimal:
        """The list-price charge of a call's tokens in :data:`MICRO_USD` (exact; the plan's
        multiplier and the request fee are applied later, as for any quantity).

        Raises
        ------
        KeyError
            ``task`` has no token prices.
        """
        try:
            prices = self.token_prices[task]
        except KeyError:
            raise KeyError(f"no token prices for task {task!r}") from None
        usd_1k = input_tokens * prices.input_usd + output_tokens * prices.output_usd
        return usd_1k * _PER_1K_IN_MICRO

    def price(
        self,
        task: str,
        model: str | None,
        units: float | Decimal,
        plan: str,
        unit: str | None = None,
        calls: int = 1,
    ) -> Decimal:
        """The charge for ``calls`` calls that used ``units`` of ``task`` on ``model`` for a
        tenant on ``plan``: the units at their list price plus the request fee per call.

        Parameters
        ----------
        task, model
            What was called; a model's price for that task overrides the task price.
        units
            Quantity consumed, in ``unit`` (the billing unit when ``unit`` is None).
        plan
            The plan name; its ``price_multiplier`` applies.
        unit
            The unit ``units`` is counted in, converted to the billing unit if needed.
        calls
            How many calls ``units`` sums (each pays :attr:`request_fee_usd`).

        Returns
        -------
        Decimal
            The charge in :attr:`currency`, unrounded.

        Raises
        ------
        KeyError
            Unknown plan, or no price for the task/model.
        ValueError
            ``unit`` cannot be converted to the price's unit.
        """
        list_price = self.list_price(task, model)
        quantity = to_billing_units(units, unit or list_price.unit, list_price.unit)
        fees = calls * self.request_fee_usd
        return (quantity * list_price.usd + fees) * self.plan(plan).price_multiplier


def to_billing_units(units: float | Decimal, unit: str, billing_unit: str) -> Decimal:
    """Convert ``units`` counted in ``unit`` to ``billing_unit``.

    Raises
    ------
    ValueError
        The two units are different and no conversion is known.
    """
    quantity = units if isinstance(units, Decimal) else Decimal(str(units))
    if unit == billing_unit:
        return quantity
    factor = UNIT_CONVERSIONS.get((unit, billing_unit))
    if factor is None:
        raise ValueError(f"cannot convert {unit!r} to billing unit {billing_unit!r}")
    return quantity * factor


def usage_plan_name(stage: str, plan: str) -> str:
    """The API Gateway usage plan that holds the API keys of tenants on ``plan``.

    The CDK app names its usage plans with the same rule, so the admin tooling can find them.
    """
    return f"aimaas-{stage}-{plan}"


def _price(data: Mapping[str, Any]) -> Price:
    return Price(unit=str(data["unit"]), usd=Decimal(str(data["usd"])))


def _model_prices(tables: Mapping[str, Any]) -> dict[tuple[str, str], Price]:
    prices = {}
    for task, models in tables.items():
        if not isinstance(models, Mapping) or "usd" in models:
            raise ValueError(
                f"prices.models.{task}: model prices are listed under their task, "
                "[prices.models.<task>] with <model> = { unit, usd }"
            )
        prices.update({(task, model): _price(body) for model, body in models.items()})
    return prices


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Build a :class:`Catalog` from the parsed TOML document.

    Raises
    ------
    ValueError
        A model price not listed under a task.
    """
    plans = {
        name: Plan(
            name=name,
            description=str(body.get("description", "")),
            throttle=Throttle(
                rate_limit=float(body["throttle"]["rate_limit"]),
                burst_limit=int(body["throttle"]["burst_limit"]),
            ),
            quota=Quota(limit=int(body["quota"]["limit"]), period=str(body["quota"]["period"])),
            monthly_requests=int(body["hard_limits"]["monthly_requests"]),
            price_multiplier=Decimal(str(body.get("price_multiplier", 1))),
            self_service_keys=bool(body.get("self_service_keys", False)),
            max_completion_tokens=_optional_int(body.get("max_completion_tokens")),
        )
        for name, body in data["plans"].items()
    }
    prices = data.get("prices", {})
    return Catalog(
        currency=str(data.get("currency", "USD")),
        plans=MappingProxyType(plans),
        task_prices=MappingProxyType({k: _price(v) for k, v in prices.get("tasks", {}).items()}),
        model_prices=MappingProxyType(_model_prices(prices.get("models", {}))),
        request_fee_usd=Decimal(str(prices.get("request_fee_usd", 0))),
        batch_discount=_discount(prices.get("batch_discount", 0)),
        token_prices=MappingProxyType(
            {
                task: TokenPrice(
                    input_usd=Decimal(str(body["input_usd"])),
                    output_usd=Decimal(str(body["output_usd"])),
                )
                for task, body in prices.get("tokens", {}).items()
            }
        ),
    )


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    number = int(value)
    if number < 1:
        raise ValueError(f"max_completion_tokens must be at least 1, not {value!r}")
    return number


def _discount(value: Any) -> Decimal:
    discount = Decimal(str(value))
    if not 0 <= discount < 1:
        raise ValueError(f"prices.batch_discount must be in [0, 1), not {value!r}")
    return discount


@cache
def load_catalog(directory: Path | None = None) -> Catalog:
    """Load ``plans.toml`` from the config folder (once per process)."""
    return parse_catalog(load_toml("plans.toml", directory))


def get_plan(name: str) -> Plan:
    """Shortcut for ``load_catalog().plan(name)``."""
    return load_catalog().plan(name)


def price(
    task: str,
    model: str | None,
    units: float | Decimal,
    plan: str,
    unit: str | None = None,
    calls: int = 1,
) -> Decimal:
    """Shortcut for :meth:`Catalog.price` on the loaded catalog."""
    return load_catalog().price(task, model, units, plan, unit, calls)
