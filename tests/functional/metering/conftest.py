"""Ledger fixtures: one SQLite file and one moto DynamoDB table, for contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aimaas.metering import UsageLedger
from aimaas.metering.dynamodb import DynamoDbLedger
from aimaas.metering.sqlite import SqliteLedger
from aimaas_testing.metering import MOTO_TABLES, moto_tables


@pytest.fixture(params=["sqlite", "dynamodb"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UsageLedger]:
    """Each test runs against both adapters."""
    if request.param == "sqlite":
        sqlite = SqliteLedger(tmp_path / "ledger.db")
        yield sqlite
        sqlite.close()
    else:
        with moto_tables():
            yield DynamoDbLedger(MOTO_TABLES["usage"])
