"""Start the GPU server as a child process and wait until it answers (tests, benchmarks, checks).

Standard library only, so a check script can use it before anything else is imported.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

SERVE = Path(__file__).resolve().parents[1] / "serve"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    base_url: str, process: subprocess.Popen[bytes], timeout_s: float, healthy: bool = True
) -> None:
    """Poll ``/ping`` until it answers 200 (any answer when ``healthy`` is False); fail early
    if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"GPU server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/ping", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if not healthy:
                return  # it answers: unhealthy is what the caller wants to see
            # /ping answers only after start-up: a 503 now is final (a model failed to load).
            raise RuntimeError(f"GPU server started unhealthy: {exc.read()[:500]!r}") from exc
        except (OSError, urllib.error.URLError):
            pass  # not listening yet
        time.sleep(0.2)
    raise TimeoutError(f"GPU server at {base_url} not ready after {timeout_s} s")


@contextlib.contextmanager
def running_server(
    env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    target: str = "cpu",
    timeout_s: float = 120.0,
    log_path: Path | None = None,
    healthy: bool = True,
) -> Iterator[str]:
    """Run ``serve`` on 127.0.0.1 for the duration of the ``with`` block.

    Parameters
    ----------
    env
        Extra environment (``AIMAAS_REGISTRY``, ``AIMAAS_BATCH_MAX_SIZE``, ...).
    port
        Port to bind; a free one by default.
    target
        Execution target (``cpu``, ``cuda``, ``auto``).
    timeout_s
        How long start-up (model preloads included) may take.
    log_path
        Where the server's output goes (discarded by default).
    healthy
        Wait for ``/ping`` to answer 200; False: for any answer (to test an unhealthy server).

    Yields
    ------
    str
        The base URL, e.g. ``http://127.0.0.1:40123``.
    """
    port = port or free_port()
    command = [
        sys.executable,
        str(SERVE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--target",
        target,
        "--log-level",
        "warning",
    ]
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, timeout_s, healthy)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log.close()  # type: ignore[union-attr]
