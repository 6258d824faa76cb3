"""Helpers of the pressure tier: a real local server (uvicorn in its own process), inputs.

Every test module that asks for ``live_server`` gets one process (module scope) started with
``python -m aimaas_local serve`` on a free loopback port, a fresh SQLite database in a temp
folder, and two tenants with real keys issued through :class:`aimaas_admin.service.AdminService`.
The process's stdout and stderr (every log line, at DEBUG) go to a file the security tests grep.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from aimaas.config import Settings
from aimaas.metering import UsageRecord
from aimaas.metering.sqlite import SqliteLedger
from aimaas_testing.media import image_bytes, wav
from aimaas_testing.paths import REGISTRY, has_model
from aimaas_testing.paths import REPO_ROOT as ROOT
from aimaas_testing.servers import ServerProcess, free_port, launch_local_server

__all__ = ["REGISTRY", "ROOT", "free_port", "has_model", "image_bytes", "wav"]

# Root logging at DEBUG before local mode starts, so every logger's output reaches the file.
_LAUNCHER = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
    " format='%(asctime)s %(levelname)s %(name)s %(message)s')\n"
    "from aimaas_local.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def require_model(name: str) -> None:
    """Skip the calling test when ``name`` is not built (``make models`` builds it)."""
    if not has_model(name):
        pytest.skip(f"{name} is not in the registry {REGISTRY}; run `make models`")


@dataclass(frozen=True)
class Credentials:
    """A tenant and one of its API keys."""

    tenant_id: str
    key_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class LiveServer:
    """A running local server and what a test needs to inspect it."""

    base_url: str
    process: subprocess.Popen[bytes]
    db_path: Path
    log_path: Path
    tenants: dict[str, Credentials] = field(default_factory=dict)

    def rss_bytes(self) -> int:
        """Resident set size of the server process (from ``/proc``)."""
        return self._status_bytes("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The highest resident set size the server process has had (``VmHWM``)."""
        return self._status_bytes("VmHWM")

    def open_descriptors(self) -> int:
        """How many file descriptors the server process holds."""
        return len(list(Path(f"/proc/{self.process.pid}/fd").iterdir()))

    def _status_bytes(self, field: str) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not found")

    def logs(self) -> bytes:
        """Everything the server has written so far."""
        return self.log_path.read_bytes()

    def records(self, tenant: str) -> list[UsageRecord]:
        """The ledger records of ``tenant`` (a key of :attr:`tenants`) over the last day."""
        ledger = SqliteLedger(self.db_path)
        try:
            now = datetime.now(UTC)
            tenant_id = self.tenants[tenant].tenant_id
            return list(ledger.records(tenant_id, now - timedelta(days=1), now + timedelta(days=1)))
        finally:
            ledger.close()

    def client(self, tenant: str = "a", **kwargs: object) -> httpx.Client:
        """An HTTP client with ``tenant``'s key."""
        return httpx.Client(
            base_url=self.base_url,
            headers=self.tenants[tenant].headers,
            timeout=kwargs.pop("timeout", 60.0),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )


def provision(db_path: Path, names: Mapping[str, str]) -> dict[str, Credentials]:
    """Create one tenant per ``names`` entry (alias -> plan) with a key, in the SQLite db."""
    from aimaas_admin.service import AdminService

    settings = Settings(key_store="sqlite", ledger="sqlite", sqlite_path=db_path)
    admin = AdminService(settings, actor="pressure-tests", host="localhost")
    made = {}
    for alias, plan in names.items():
        tenant = admin.create_tenant(f"pressure {alias}", plan=plan)
        key_id, key = admin.create_key(tenant.tenant_id, label=f"pressure {alias}")
        made[alias] = Credentials(tenant.tenant_id, key_id, key)
    for closable in (admin.store, admin.ledger, admin.audit):
        if hasattr(closable, "close"):
            closable.close()
    return made


def start_server(
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    registry: Path = REGISTRY,
    tenants: Mapping[str, str] | None = None,
) -> LiveServer:
    """Provision tenants, start ``python -m aimaas_local serve`` and wait for ``/health``."""
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "aimaas.db"
    creds = provision(db_path, tenants or {"a": "pro", "b": "pro"})
    running = launch_local_server(
        registry=registry,
        db=db_path,
        log_path=workdir / "server.log",
        args=["--log-level", "debug"],
        env=env,
        clean_env=True,
        launcher=_LAUNCHER,
    )
    return LiveServer(running.url, running.process, db_path, running.log_path, creds)


def stop_server(server: LiveServer) -> None:
    """Stop the process this fixture started (terminate, then kill)."""
    ServerProcess(server.base_url, server.process, server.log_path, server.db_path).stop()


# ---- inputs -----------------------------------------------------------------------------------


def assert_error_shape(response: httpx.Response) -> dict[str, str]:
    """The one error shape, with the request id matching the response header."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert error["request_id"] == response.headers.get("x-request-id"), error
    return error


WavFactory = Callable[..., bytes]
