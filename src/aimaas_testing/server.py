"""The local server (``python -m aimaas_local serve``) on a free loopback port, for tests that
speak real HTTP, and API keys issued through the auth package for a tenant of their own."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalServer:
    url: str
    demo_key: str
    db: Path
    banner: str


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_server(
    registry: Path, folder: Path, *, threads: int = 1, cwd: Path | None = None
) -> Iterator[LocalServer]:
    """Start the local server on ``registry`` with its database in ``folder``; stop it after.

    Raises
    ------
    RuntimeError
        The server did not answer ``/health`` within 60 s (its log is in the message).
    """
    import requests

    port = free_port()
    with (folder / "server.log").open("w+") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [
                sys.executable, "-m", "aimaas_local", "serve", "--registry", str(registry),
                "--port", str(port), "--db", str(folder / "aimaas.db"),
                "--show-key",  # its output is a log file, not a terminal
                "--log-level", "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, "AIMAAS_ONNX_THREADS": str(threads)},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            give_up = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if process.poll() is not None or time.monotonic() > give_up:
                    log.seek(0)
                    raise RuntimeError(f"local server did not start:\n{log.read()}")
                time.sleep(0.2)
            log.seek(0)
            banner = log.read()
            match = re.search(r"demo API key:\s+(amk_\S+)", banner)
            if not match:
                raise RuntimeError(f"no demo key in the banner:\n{banner}")
            yield LocalServer(url, match.group(1), folder / "aimaas.db", banner)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def tenant_key(db: Path, plan: str = "pro", label: str = "tests") -> str:
    """A key for a new tenant of its own in the SQLite key store at ``db``."""
    from aimaas.auth import Tenant, issue_key
    from aimaas.auth.keys import new_tenant_id
    from aimaas.config import Settings
    from aimaas.wiring import build_key_store, pepper_from

    settings = Settings(sqlite_path=db)
    store = build_key_store(settings)
    try:
        tenant_id = new_tenant_id()
        store.create_tenant(Tenant(tenant_id=tenant_id, name=label, plan=plan))
        _, key = issue_key(store, tenant_id, pepper_from(settings), label=label)
    finally:
        store.close()
    return key
