"""What ships is only the runtime: the import graph of ``src/aimaas`` (read from source) has no
cycles, no imports of the operator and test packages, and no third-party import outside the
serving requirements; ports never import their adapters."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from aimaas_testing.imports import cycles, external_imports, import_graph

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src"
NOT_SHIPPED = ("aimaas_admin", "aimaas_local", "aimaas_testing")
#: The ports and the adapter modules they must not import (the wiring module does).
PORTS = {
    "aimaas.auth.keys": ("aimaas.auth.sqlite", "aimaas.auth.dynamodb"),
    "aimaas.metering.ledger": ("aimaas.metering.sqlite", "aimaas.metering.dynamodb"),
    "aimaas.registry.store": ("aimaas.wiring",),
    "aimaas.backends.base": ("aimaas.backends.http", "aimaas.backends.sagemaker"),
}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC, "aimaas")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def serving_distributions() -> set[str]:
    """The serving requirements and everything they require, as installed here."""
    requirements = ROOT / "functions" / "inference" / "requirements.txt"
    todo = [
        re.split(r"[=<>~\[ ;]", line.split("#", 1)[0].strip(), maxsplit=1)[0]
        for line in requirements.read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    seen: set[str] = set()
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_the_runtime_import_graph_has_no_cycles(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 40  # the tree was really read
    assert cycles(graph) == []


def test_ports_never_import_their_adapters(graph: dict[str, set[str]]) -> None:
    for port, adapters in PORTS.items():
        assert port in graph
        assert not graph[port] & set(adapters), port


def test_the_runtime_imports_no_operator_test_or_export_code() -> None:
    imported = external_imports(SRC, "aimaas")
    third_party = {
        module: names - set(sys.stdlib_module_names) - {"__future__"}
        for module, names in imported.items()
    }
    owners = metadata.packages_distributions()
    allowed = serving_distributions()
    for module, names in third_party.items():
        assert not names & set(NOT_SHIPPED), module
        for name in names:
            distributions = {_canonical(d) for d in owners.get(name, [name])}
            assert distributions & allowed, f"{module} imports {name}, not a serving requirement"
    everything = set().union(*third_party.values())
    for heavy in ("torch", "transformers", "moto", "typer", "jinja2", "matplotlib", "uvicorn"):
        assert heavy not in everything
