"""Real servers on loopback for the tests and benchmarks: the one launcher.

- :func:`launch_local_server` starts ``python -m aimaas_local serve`` in its own process
  (what a user runs) and waits until ``/health`` answers;
- :func:`serve_in_thread` runs an app built in the test process under uvicorn in a thread
  (for tests that hand the app a prepared container);
- :func:`free_port` finds a loopback port for either.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A local server running in a child process, its output going to ``log_path``."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    db: Path

    def logs(self) -> str:
        """Everything the server has written so far."""
        return self.log_path.read_text(errors="replace")

    def demo_key(self) -> str:
        """The demo key from the banner (start the server with ``--show-key``)."""
        match = re.search(r"demo API key:\s+(amk_\S+)", self.logs())
        if not match:
            raise RuntimeError(f"no demo key in the banner:\n{self.logs()[-4000:]}")
        return match.group(1)

    def stop(self) -> None:
        """Terminate the process (kill it if it does not stop within 15 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def launch_local_server(
    *,
    registry: Path,
    db: Path,
    log_path: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    clean_env: bool = False,
    launcher: str | None = None,
    timeout_s: float = 60.0,
) -> ServerProcess:
    """Start ``aimaas_local serve`` on a free loopback port and wait for ``/health``.

    Parameters
    ----------
    registry, db
        The model registry and the SQLite database the server uses.
    log_path
        Where the server's stdout and stderr go.
    args
        More ``serve`` options (``--log-level``, ``--show-key``...).
    env
        Variables set for the child on top of this process's environment.
    clean_env
        Drop this process's ``AIMAAS_*`` variables first (the child sees only ``env``'s).
    launcher
        Python source run with ``-c`` in place of ``-m aimaas_local`` (it gets the same
        arguments), e.g. to configure logging before the server starts.
    timeout_s
        How long ``/health`` may take to answer.

    Raises
    ------
    RuntimeError
        The server exited or did not answer in time (the end of its log is in the message).
    """
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not (clean_env and k.startswith("AIMAAS_"))}
    child_env.update({"AIMAAS_REGISTRY": str(registry), "PYTHONUNBUFFERED": "1", **(env or {})})
    entry = ["-c", launcher] if launcher else ["-m", "aimaas_local"]
    command = [sys.executable, *entry, "serve", "--registry", str(registry), "--db", str(db)]
    command += ["--port", str(port), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path, db)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.logs()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(
        f"server did not answer /health in {timeout_s:.0f} s:\n{server.logs()[-4000:]}"
    )


@contextmanager
def serve_in_thread(app: Any, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    # Keep-alive well above any test client's idle expiry (httpx: 5 s, uvicorn's default too):
    # with equal timers, a starved client can reuse a connection the server is closing, and
    # the POST fails with a ReadError that says nothing about the app (CI saw it once).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=60
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
