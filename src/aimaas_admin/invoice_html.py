"""The HTML invoice (jinja2 template, daily chart drawn by matplotlib): operator tooling only."""

from __future__ import annotations

import base64
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

from aimaas.metering.invoice import RENDERERS as DATA_RENDERERS
from aimaas.metering.invoice import SHOWN, Invoice


def daily_chart_png(invoice: Invoice) -> bytes:
    """A PNG bar chart of calls per day with the day's cost as a line (matplotlib, no GUI)."""
    from matplotlib.figure import Figure

    labels = [date.fromisoformat(d.day).day for d in invoice.days]
    figure = Figure(figsize=(8, 3), dpi=100)
    calls_axis = figure.add_subplot()
    calls_axis.bar(labels, [d.calls for d in invoice.days], color="#4c78a8", label="calls")
    calls_axis.set_xlabel(f"day of {invoice.month}")
    calls_axis.set_ylabel("calls")
    cost_axis = calls_axis.twinx()
    cost_axis.plot(labels, [float(d.cost) for d in invoice.days], color="#f58518", marker=".")
    cost_axis.set_ylabel(f"cost ({invoice.currency})")
    figure.suptitle("Daily usage and cost")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def render_html(invoice: Invoice) -> str:
    """A self-contained HTML invoice (jinja2 template, chart embedded as base64 PNG)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["money"] = lambda value: f"{Decimal(value).quantize(SHOWN):f}"
    chart = base64.b64encode(daily_chart_png(invoice)).decode("ascii")
    return environment.get_template("invoice.html.j2").render(invoice=invoice, chart=chart)


RENDERERS = {**DATA_RENDERERS, "html": render_html}
