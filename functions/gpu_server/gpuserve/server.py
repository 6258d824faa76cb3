"""Command line of the GPU server: ``serve`` (SageMaker) or ``python -m gpuserve``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from .settings import ServerSettings


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server with uvicorn until it is stopped.

    Parameters
    ----------
    argv
        Command-line arguments; flags override the environment. A leading ``serve`` (how
        SageMaker starts a container) is accepted and ignored.
    """
    parser = argparse.ArgumentParser(prog="serve", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve"], help="ignored (SageMaker)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--target", choices=["auto", "cuda", "tensorrt", "cpu"])
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    settings = ServerSettings.from_env()
    changes = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("target", args.target))
        if v is not None
    }
    settings = settings.with_overrides(**changes)

    import uvicorn

    from .invocations import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,  # one line per request is noise at GPU rates; /metrics has the numbers
        # Longer than the load balancer's idle timeout, so it never reuses a closed connection.
        timeout_keep_alive=75,
    )
