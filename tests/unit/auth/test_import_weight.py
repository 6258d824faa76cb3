"""The authorizer zip carries only the standard library, boto3 and the core: importing the
auth, metering and plans packages (and the handler) must not pull in any heavier library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = (
    "pydantic",
    "fastapi",
    "starlette",
    "jinja2",
    "matplotlib",
    "tenacity",
    "typer",
    "numpy",
    "onnxruntime",
)


def test_runtime_auth_imports_stay_light() -> None:
    code = (
        "import sys\n"
        "import aimaas.auth, aimaas.metering, aimaas.plans\n"
        "import aimaas.auth.dynamodb, aimaas.metering.dynamodb, aimaas.auth.sqlite\n"
        "import functions.authorizer.handler\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}",
            "PATH": "/usr/bin:/bin",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "", f"heavy modules imported: {result.stdout}"
