"""The one end-to-end suite: real HTTP against a running target, configured ONLY by environment.

The same tests run against the local server (``python -m aimaas_local serve``), the LocalStack
deployment (API Gateway ``HTTP_PROXY`` in front of the local server) and a real AWS stage. What
differs between targets is data, read here from the environment (see ``tests/e2e/README.md``):

``AIMAAS_E2E_BASE_URL``
    The API root, without ``/v1``: ``http://127.0.0.1:8000``, or the stage URL of the REST API
    (``http://127.0.0.1:4566/_aws/execute-api/<id>/<stage>``,
    ``https://<id>.execute-api.<region>.amazonaws.com/<stage>``). Unset: every test is skipped.
``AIMAAS_E2E_TARGET``
    ``local`` (default), ``localstack`` or ``aws``; chooses the defaults below.
``AIMAAS_E2E_ADMIN``
    The store flags of the admin CLI for that target, e.g. ``--store sqlite --db PATH`` or
    ``--store aws``: the suite creates its own tenants and keys with
    ``python -m aimaas_admin <flags> ...``, reads usage and revokes keys the same way.
``AIMAAS_E2E_API_KEY``
    Alternatively, an existing key; the tests that need the admin CLI are then skipped.
``AIMAAS_E2E_BEARER_OK``
    Whether the target accepts ``Authorization: Bearer`` (local and a Lambda authorizer: yes;
    a REST API whose key source is the ``x-api-key`` header, as in the LocalStack profile: no).
``AIMAAS_E2E_MISSING_KEY_STATUS``
    The status for a request with no key: 401 from the platform itself, 403 from API Gateway,
    which answers before the platform sees the request.
``AIMAAS_E2E_REVOKE_WITHIN_S``
    How long a revoked key may keep working: the authorizer's cache time plus slack.
``AIMAAS_E2E_PLAN``
    The plan of the tenants the suite creates (``pro`` by default, so the multiplier shows).
``AIMAAS_E2E_HEADER_KEY_PLANS``
    Only for a gateway that checks ``x-api-key`` itself (key source ``HEADER``: the LocalStack
    profile, which has no Lambda authorizer): ``{plan: usage plan id}``. Each key the suite
    creates is then also registered as a gateway API key with the same value in its plan's
    usage plan (see :class:`HeaderKeyMirror`).
``AIMAAS_E2E_REGISTRY``
    The registry that was published to the target (default ``AIMAAS_REGISTRY``, then
    ``build/registry``); ``GET /v1/models`` must list every model in it.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

# Per-target defaults; every one can be overridden by its environment variable.
_DEFAULTS: dict[str, dict[str, str]] = {
    "local": {"bearer_ok": "1", "missing_key_status": "401", "revoke_within_s": "5"},
    # LocalStack's API Gateway checks the key itself (HEADER source) and forgets a deleted or
    # disabled key at once; its 403 comes before the platform sees the request.
    "localstack": {"bearer_ok": "0", "missing_key_status": "403", "revoke_within_s": "10"},
    # AWS: the REQUEST authorizer reads both headers and its results are not cached (TTL 0, no
    # identity sources), so a revoked key fails on its next call; 30 s is slack, not a cache.
    "aws": {"bearer_ok": "1", "missing_key_status": "401", "revoke_within_s": "30"},
}


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Target:
    """Everything the suite knows about the deployment under test."""

    name: str
    base_url: str
    admin_flags: tuple[str, ...] | None
    api_key: str | None
    bearer_ok: bool
    missing_key_status: int
    revoke_within_s: float
    plan: str
    registry: Path
    header_key_plans: dict[str, str] | None = None
    timeout_s: float = 60.0

    def url(self, path: str) -> str:
        """Absolute URL of an API path such as ``/v1/models``."""
        return self.base_url.rstrip("/") + path

    @classmethod
    def from_env(cls) -> Target | None:
        base_url = os.environ.get("AIMAAS_E2E_BASE_URL", "").strip()
        if not base_url:
            return None
        name = os.environ.get("AIMAAS_E2E_TARGET", "local").strip() or "local"
        if name not in _DEFAULTS:
            raise pytest.UsageError(
                f"AIMAAS_E2E_TARGET={name!r}; expected one of {sorted(_DEFAULTS)}"
            )
        defaults = _DEFAULTS[name]

        def get(var: str, key: str) -> str:
            return os.environ.get(f"AIMAAS_E2E_{var}", "").strip() or defaults[key]

        admin = os.environ.get("AIMAAS_E2E_ADMIN", "").strip()
        registry = (
            os.environ.get("AIMAAS_E2E_REGISTRY")
            or os.environ.get("AIMAAS_REGISTRY")
            or str(REPO / "build" / "registry")
        )
        return cls(
            name=name,
            base_url=base_url,
            admin_flags=tuple(shlex.split(admin)) if admin else None,
            api_key=os.environ.get("AIMAAS_E2E_API_KEY") or None,
            bearer_ok=_flag(get("BEARER_OK", "bearer_ok")),
            missing_key_status=int(get("MISSING_KEY_STATUS", "missing_key_status")),
            revoke_within_s=float(get("REVOKE_WITHIN_S", "revoke_within_s")),
            plan=os.environ.get("AIMAAS_E2E_PLAN", "").strip() or "pro",
            registry=Path(registry),
            header_key_plans=json.loads(os.environ.get("AIMAAS_E2E_HEADER_KEY_PLANS") or "null"),
        )


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    key_id: str
    key: str
    plan: str


class HeaderKeyMirror:
    """Registers customer keys as API Gateway API keys, for a gateway with key source HEADER.

    On AWS the REQUEST authorizer resolves the customer's key and hands API Gateway a separate
    usage identifier (key source AUTHORIZER), which is what the admin CLI provisions. The
    LocalStack profile has no authorizer (LocalStack runs no Lambda here): its gateway compares
    ``x-api-key`` with the API keys of its usage plans. So the customer's key must also be a
    gateway key there; this test harness adds it. Revocation is still the platform's: the
    admin CLI marks the key revoked and the app behind the gateway refuses it.
    """

    def __init__(self, plan_ids: dict[str, str]) -> None:
        import boto3

        self.plan_ids = plan_ids
        self.client = boto3.client("apigateway")  # endpoint from AWS_ENDPOINT_URL

    def add(self, tenant: Tenant) -> None:
        created = self.client.create_api_key(
            name=f"e2e-header-{tenant.key_id}", enabled=True, value=tenant.key
        )
        self.client.create_usage_plan_key(
            usagePlanId=self.plan_ids[tenant.plan], keyId=created["id"], keyType="API_KEY"
        )


class AdminCli:
    """``python -m aimaas_admin`` with the target's store flags, as an operator would run it."""

    def __init__(self, flags: tuple[str, ...]) -> None:
        self.flags = flags

    def run(self, *args: str) -> str:
        """Run one admin command; return its standard output (fail with both streams)."""
        command = [sys.executable, "-m", "aimaas_admin", *self.flags, *args]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=REPO, check=False
        )
        if done.returncode != 0:
            raise AssertionError(
                f"admin command failed ({done.returncode}): {shlex.join(command[3:])}\n"
                f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
            )
        return done.stdout

    def create_tenant(self, plan: str) -> Tenant:
        """A new tenant on ``plan`` with one new key."""
        name = f"e2e-{uuid.uuid4().hex[:10]}"
        tenant_id = json.loads(self.run("tenant", "create", name, "--plan", plan))["tenant_id"]
        # `key create` prints "key_id: ..." and "key: ..." (the key is shown once).
        printed = dict(
            line.split(":", 1)
            for line in self.run("key", "create", tenant_id).splitlines()
            if ":" in line
        )
        return Tenant(
            tenant_id=tenant_id,
            key_id=printed["key_id"].strip(),
            key=printed["key"].strip(),
            plan=plan,
        )

    def revoke(self, key_id: str) -> None:
        self.run("key", "revoke", key_id)

    def usage(self, tenant_id: str, group_by: str = "task") -> Any:
        """``usage show`` as parsed JSON: ``calls``, ``cost`` (a decimal string), ``lines``."""
        return json.loads(self.run("usage", "show", tenant_id, "--group-by", group_by))


def wait_until(predicate: Callable[[], bool], within_s: float, every_s: float = 0.5) -> float:
    """Poll ``predicate`` until true; return the seconds it took, or fail after ``within_s``."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > within_s:
            raise AssertionError(f"condition still false after {within_s:.0f} s")
        time.sleep(every_s)


# --- real inputs ---------------------------------------------------------------------------

ENGLISH = "The central bank raised interest rates again to fight inflation."
CHINESE = "中央银行再次提高利率以对抗通货膨胀。"


def espeak(text: str, directory: Path) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng; return int16 mono samples and their rate (22050 Hz)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (make system-deps)")
    out = directory / f"{uuid.uuid4().hex}.wav"
    subprocess.run([espeak, "-w", str(out), text], check=True, timeout=30)
    with wave.open(str(out), "rb") as handle:
        rate = handle.getframerate()
        samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return samples, rate


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


@dataclass(frozen=True)
class SpokenWord:
    """A synthesised word with where its speech is, measured from the waveform itself."""

    word: str
    wav: bytes
    rate: int
    duration_s: float  # the whole clip
    speech_start_s: float  # first 10 ms frame above 5 % of the loudest frame's RMS
    speech_end_s: float  # end of the last such frame


def speech_bounds(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """Start and end (s) of the frames whose RMS is over 5 % of the loudest 10 ms frame's.

    espeak-ng pads its output with silence, so the file length is not the speech length.
    """
    frame = rate // 100
    usable = len(samples) // frame * frame
    frames = samples[:usable].astype(np.float64).reshape(-1, frame)
    rms = np.sqrt((frames**2).mean(axis=1))
    active = np.flatnonzero(rms > 0.05 * rms.max())
    return active[0] * frame / rate, (active[-1] + 1) * frame / rate
