"""``python -m aimaas_local serve``: the platform on one machine, same app, local adapters.

``python -m aimaas_local batch-worker``: a batch worker on this host, polling the queue that
the environment configures (``AIMAAS_BATCH_QUEUE=sqs``: SQS, LocalStack or moto), with the
stores and ledger the environment names too, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aimaas.config import Settings


def local_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with local adapters and the command-line paths."""
    base = Settings.from_env()
    return dataclasses.replace(
        base,
        model_store="folder",
        registry_path=Path(args.registry).resolve(),
        key_store="sqlite",
        ledger="sqlite",
        sqlite_path=Path(args.db).resolve(),
        trust_authorizer=False,  # no API Gateway in front: check every key here
    )


def banner(base_url: str, key: str | None, registry: Path, key_file: Path) -> str:
    """The start-up text: the demo key (once; ``None`` hides it) and commands to try, which read
    the key from ``$AIMAAS_KEY`` so it is printed only once."""
    auth = "Authorization: Bearer $AIMAAS_KEY"
    shown = key or f"(not shown: output is not a terminal; it is in {key_file}, or pass --show-key)"
    load = f'python3 -c \'import json; print(json.load(open("{key_file}"))["key"])\''
    return f"""
aimaas local server  {base_url}   (models from {registry})
  demo API key:  {shown}
  docs:          {base_url}/docs
  console:       {base_url}/console/

  export AIMAAS_KEY="$({load})"

  curl -s {base_url}/v1/models -H "{auth}"
  curl -s {base_url}/v1/text-classification -H "{auth}" \\
       -H 'Content-Type: application/json' \\
       -d '{{"text": "The striker scored twice in the final."}}'
  curl -s {base_url}/v1/embeddings -H "{auth}" \\
       -H 'Content-Type: application/json' -d '{{"input": ["hello", "你好"]}}'
  curl -s {base_url}/v1/image-classification -H "{auth}" \\
       -H 'Content-Type: image/jpeg' --data-binary @photo.jpg
  curl -s '{base_url}/v1/object-detection?render=true' -H "{auth}" \\
       -H 'Content-Type: image/jpeg' --data-binary @photo.jpg -o boxes.png
  curl -s '{base_url}/v1/audio-classification?vad=true' -H "{auth}" \\
       -H 'Content-Type: audio/wav' --data-binary @clip.wav
"""


class _PathOnlyAccessLog(logging.Filter):
    """Uvicorn's access log without query strings: a client may put a secret (its API key) there,
    and the platform refuses a key in the query string but would still have logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from aimaas.api import create_app
    from aimaas_local.demo import DEMO_FILE, ensure_demo_key
    from aimaas_local.protocol import GuardedH11Protocol

    settings = local_settings(args)
    if not settings.registry_path.is_dir():
        print(f"no model registry at {settings.registry_path}; run `make models`", file=sys.stderr)
        return 2
    credentials = ensure_demo_key(settings)
    app = create_app(settings)
    from aimaas_local.console import mount_console

    mount_console(app)  # the browser console at /console (static files, the same API)
    # The key goes to the operator's terminal; into a log or a pipe only when asked for.
    show = args.show_key or sys.stdout.isatty()
    key_file = Path(settings.sqlite_path).parent / DEMO_FILE
    text = banner(
        f"http://{args.host}:{args.port}",
        credentials.key if show else None,
        settings.registry_path,
        key_file,
    )
    print(text, flush=True)
    logging.getLogger("uvicorn.access").addFilter(_PathOnlyAccessLog())
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        http=GuardedH11Protocol,  # header deadline, JSON 400s (see aimaas_local.protocol)
    )
    return 0


def batch_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from aimaas.api.container import build_container
    from aimaas.batch.worker import run_host_worker

    settings = Settings.from_env()
    if args.registry:
        settings = dataclasses.replace(settings, registry_path=Path(args.registry).resolve())
    container = build_container(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the chunk in hand, then stop
        signal.signal(sig, lambda *_: stop.set())
    logging.basicConfig(level=args.log_level.upper())
    threads = run_host_worker(container, stop, threads=args.threads, wait_s=args.wait_s)
    print(f"batch worker polling ({args.threads} threads)", flush=True)
    while not stop.wait(0.5):
        pass
    for thread in threads:
        thread.join()
    container.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aimaas_local``."""
    parser = argparse.ArgumentParser(prog="python -m aimaas_local")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the API on this machine")
    run.add_argument("--registry", default=os.environ.get("AIMAAS_REGISTRY", "build/registry"))
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--db", default=os.environ.get("AIMAAS_SQLITE_PATH", ".aimaas/aimaas.db"))
    run.add_argument("--log-level", default="info")
    run.add_argument(
        "--show-key",
        action="store_true",
        help="print the demo key even when the output is not a terminal (a log, a pipe)",
    )
    run.set_defaults(func=serve)
    work = commands.add_parser("batch-worker", help="run batch chunks from the configured queue")
    work.add_argument("--registry", default=os.environ.get("AIMAAS_REGISTRY"))
    work.add_argument("--threads", type=int, default=1)
    work.add_argument("--wait-s", type=int, default=1, help="SQS long-poll wait per receive")
    work.add_argument("--log-level", default="warning")
    work.set_defaults(func=batch_worker)
    args = parser.parse_args(argv)
    return int(args.func(args))
