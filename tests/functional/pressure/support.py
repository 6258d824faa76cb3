"""Helpers of the pressure tier: a real local server (uvicorn in its own process), inputs.

Every test module that asks for ``live_server`` gets one process (module scope) started with
``python -m aimaas_local serve`` on a free loopback port, a fresh SQLite database in a temp
folder, and two tenants with real keys issued through :class:`aimaas_admin.service.AdminService`.
The process's stdout and stderr (every log line, at DEBUG) go to a file the security tests grep.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from aimaas.config import Settings
from aimaas.metering import UsageRecord
from aimaas.metering.sqlite import SqliteLedger

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = Path(os.environ.get("AIMAAS_REGISTRY", ROOT / "build" / "registry")).resolve()

# Root logging at DEBUG before local mode starts, so every logger's output reaches the file.
_LAUNCHER = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
    " format='%(asctime)s %(levelname)s %(name)s %(message)s')\n"
    "from aimaas_local.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def has_model(name: str) -> bool:
    """True when the registry holds at least one version of ``name``."""
    folder = REGISTRY / name
    return folder.is_dir() and any((p / "manifest.json").is_file() for p in folder.iterdir())


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
    port = free_port()
    log_path = workdir / "server.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AIMAAS_")}
    child_env.update({"AIMAAS_REGISTRY": str(registry), "PYTHONUNBUFFERED": "1", **(env or {})})
    command = [
        sys.executable,
        "-c",
        _LAUNCHER,
        "serve",
        "--registry",
        str(registry),
        "--db",
        str(db_path),
        "--port",
        str(port),
        "--log-level",
        "debug",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env)
    server = LiveServer(f"http://127.0.0.1:{port}", process, db_path, log_path, creds)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server did not answer /health in 60 s:\n{log_path.read_text()[-4000:]}")


def stop_server(server: LiveServer) -> None:
    """Stop the process this fixture started (terminate, then kill)."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=15)


# ---- inputs -----------------------------------------------------------------------------------


def wav(
    seconds: float = 1.0,
    rate: int = 16000,
    channels: int = 1,
    bits: int = 16,
    freq: float = 440.0,
    declared_frames: int | None = None,
) -> bytes:
    """A PCM WAV file of a tone; ``declared_frames`` makes the header lie about its length."""
    frames = int(seconds * rate)
    t = np.arange(frames) / rate
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    samples = (tone * 127 + 128).astype(np.uint8) if bits == 8 else (tone * 32767).astype("<i2")
    data = np.repeat(samples[:, None], channels, axis=1).tobytes()
    width = bits // 8
    size = len(data) if declared_frames is None else declared_frames * width * channels
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, channels, rate,
        rate * channels * width, channels * width, bits, b"data", size,
    )  # fmt: skip
    return header + data


def image_bytes(mode: str = "RGB", size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """A small gradient image in ``mode`` encoded as ``fmt``."""
    w, h = size
    base = np.linspace(0, 255, w * h, dtype=np.float64).reshape(h, w)
    if mode == "I;16":
        image = Image.fromarray((base * 257).astype(np.uint16))
    elif mode == "CMYK":
        image = Image.fromarray(np.stack([base] * 3, axis=-1).astype(np.uint8)).convert("CMYK")
    elif mode == "RGBA":
        rgb = np.stack([base, base[::-1], base], axis=-1).astype(np.uint8)
        alpha = np.full((h, w, 1), 128, dtype=np.uint8)
        image = Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA")
    else:
        image = Image.fromarray(np.stack([base, base[::-1], base], axis=-1).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


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
