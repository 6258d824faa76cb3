"""The HTML invoice: structure, an embedded PNG chart, and numbers equal to ledger sums x price."""

from __future__ import annotations

import base64
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

from aimaas.config import Settings
from aimaas.metering.invoice import REQUEST_FEE_LINE
from aimaas.plans import load_catalog, to_billing_units
from aimaas_admin import AdminService
from aimaas_admin.invoice_html import render_html
from aimaas_testing.metering import sample_record

START = datetime(2026, 2, 1, tzinfo=UTC)


class Cells(HTMLParser):
    """Collects the text of every element that has an id or a class, by that name."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.rows: list[dict[str, str]] = []
        self.images: list[str] = []
        self._stack: list[tuple[str | None, str | None]] = []

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if tag == "tr" and "line" in (attributes.get("class") or ""):
            self.rows.append({"model": attributes["data-model"], "task": attributes["data-task"]})
        if tag == "img":
            self.images.append(attributes["src"])
            return
        self._stack.append((attributes.get("id"), attributes.get("class")))

    def handle_endtag(self, tag) -> None:
        if self._stack and tag != "img":
            self._stack.pop()

    def handle_data(self, data) -> None:
        if not self._stack or not data.strip():
            return
        element_id, element_class = self._stack[-1]
        if element_id:
            self.by_id[element_id] = self.by_id.get(element_id, "") + data.strip()
        if element_class and self.rows and "num" in element_class:
            self.rows[-1][element_class.split()[-1]] = data.strip()


def test_html_invoice_numbers_equal_ledger_sums_times_price(tmp_path: Path) -> None:
    admin = AdminService(Settings(sqlite_path=tmp_path / "i.db"), actor="pytest")
    tenant = admin.create_tenant("Sample & Sons <Ltd>", plan="pro")
    _, _ = admin.create_key(tenant.tenant_id)
    plan = load_catalog().plan("pro")
    catalog = load_catalog()
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    calls: dict[tuple[str, str], int] = defaultdict(int)
    specs = [
        ("all-minilm-l6-v2", "embeddings", "1k_tokens", 0.75),
        ("all-minilm-l6-v2-int8", "embeddings", "tokens", 1234),
        ("mobilenet-v2", "image-classification", "image", 1),
        ("keyword-spotter", "audio-classification", "audio_second", 1.5),
    ]
    for i in range(40):
        model, task, unit, units = specs[i % len(specs)]
        stamp = START + timedelta(days=i % 20, hours=i % 7)
        admin.ledger.put(
            sample_record(
                f"r{i}",
                tenant_id=tenant.tenant_id,
                model=model,
                task=task,
                unit=unit,
                units=units,
                timestamp=stamp,
            )
        )
        billing_unit = catalog.list_price(task, model).unit
        sums[model, task] += to_billing_units(units, unit, billing_unit)
        calls[model, task] += 1
    admin.ledger.put(
        sample_record(
            "march", tenant_id=tenant.tenant_id, timestamp=datetime(2026, 3, 1, tzinfo=UTC)
        )
    )

    html = render_html(admin.invoice(tenant.tenant_id, "2026-02"))
    assert "Sample &amp; Sons &lt;Ltd&gt;" in html  # escaped
    cells = Cells()
    cells.feed(html)
    assert cells.by_id["invoice-id"] == f"INV-{tenant.tenant_id}-2026-02"
    assert cells.by_id["plan"] == "pro"
    assert len(cells.rows) == len(specs) + 1  # and the request fee's line
    fee = catalog.request_fee_usd * plan.price_multiplier
    sums[REQUEST_FEE_LINE, REQUEST_FEE_LINE] = Decimal(40)
    calls[REQUEST_FEE_LINE, REQUEST_FEE_LINE] = 40
    expected_total = Decimal(0)
    for row in cells.rows:
        key = (row["model"], row["task"])
        if key == (REQUEST_FEE_LINE, REQUEST_FEE_LINE):
            unit_price = fee
        else:
            unit_price = catalog.list_price(*reversed(key)).usd * plan.price_multiplier
        amount = sums[key] * unit_price
        expected_total += amount
        assert int(row["calls"]) == calls[key]
        assert Decimal(row["quantity"]) == sums[key].quantize(Decimal("0.000001"))
        assert Decimal(row["unit-price"]) == unit_price.quantize(Decimal("0.000001"))
        assert Decimal(row["amount"]) == amount.quantize(Decimal("0.000001"))
    assert int(cells.by_id["total-calls"]) == 40  # the March record is not on it
    assert Decimal(cells.by_id["total"]) == expected_total.quantize(Decimal("0.000001"))
    assert Decimal(cells.by_id["amount-due"]) == expected_total.quantize(Decimal("0.01"))
    (chart,) = cells.images
    match = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", chart)
    assert match and base64.b64decode(match.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
