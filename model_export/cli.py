"""Command line: ``python -m model_export build`` and ``python -m model_export publish``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from model_export.base import BuildContext
from model_export.registry import BuildResult, build_one

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)


def _summary(results: list[BuildResult]) -> Table:
    table = Table(title="model export")
    for column in ("model", "version", "status", "size", "parity", "accuracy", "time"):
        table.add_column(column)
    for result in results:
        manifest = result.manifest
        if manifest is None:
            table.add_row(
                result.name,
                "-",
                f"[red]{result.status}[/]",
                "-",
                result.error or "",
                "-",
                f"{result.seconds:.1f}s",
            )
            continue
        size = sum(ref.size_bytes for ref in manifest.all_files)
        parity = ", ".join(f"{k}={v:.3g}" for k, v in manifest.parity.metrics.items())
        accuracy = ", ".join(f"{a.metric}={a.value:.3f} (n={a.samples})" for a in manifest.accuracy)
        colour = "green" if result.status == "built" else "dim"
        table.add_row(
            manifest.name,
            manifest.version,
            f"[{colour}]{result.status}[/]",
            f"{size / 1e6:.1f} MB",
            parity,
            accuracy or "-",
            f"{result.seconds:.1f}s",
        )
    return table


@app.command()
def build(
    names: Annotated[list[str] | None, typer.Argument(help="Models to build.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Build every model.")] = False,
    registry: Annotated[Path, typer.Option(help="Registry folder.")] = Path("build/registry"),
    force: Annotated[bool, typer.Option(help="Rebuild even when up to date.")] = False,
    cache_dir: Annotated[Path, typer.Option(help="Cache of intermediates.")] = Path("build/cache"),
    threads: Annotated[int, typer.Option(help="Torch/ONNX Runtime threads.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of every random generator.")] = 0,
) -> None:
    """Export, gate and register models; skips those whose fingerprint is unchanged."""
    from model_export.models import EXPORTERS

    if all_ == bool(names):
        raise typer.BadParameter("give model names or --all (not both)")
    selected = list(EXPORTERS) if all_ else list(names or [])
    unknown = [n for n in selected if n not in EXPORTERS]
    if unknown:
        raise typer.BadParameter(f"unknown models {unknown}; known: {sorted(EXPORTERS)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    results: list[BuildResult] = []
    with console.status("") as status:
        for name in selected:

            def log(message: str, name: str = name) -> None:
                status.update(f"[bold]{name}[/]: {message}")

            log("checking")
            ctx = BuildContext(cache_dir=cache_dir, threads=threads, seed=seed, log=log)
            result = build_one(EXPORTERS[name](), registry, ctx, force=force)
            results.append(result)
            console.log(
                f"{name}: {result.status} in {result.seconds:.1f}s"
                + (f" ({result.error})" if result.error else "")
            )
    Console(width=max(Console().width, 160)).print(_summary(results))
    if any(r.status == "failed" for r in results):
        raise typer.Exit(code=1)


@app.command()
def publish(
    bucket: Annotated[str, typer.Option(help="Versioned S3 bucket.")],
    registry: Annotated[Path, typer.Option(help="Registry folder.")] = Path("build/registry"),
    prefix: Annotated[str, typer.Option(help="Key prefix.")] = "models/",
    kms_key_id: Annotated[str | None, typer.Option(help="KMS key for SSE-KMS.")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint (LocalStack).")] = None,
) -> None:
    """Upload every registry entry to S3 (SSE-KMS), verifying sha256 first."""
    import boto3

    from model_export.publish import publish_registry

    client = boto3.client("s3", endpoint_url=endpoint_url)
    keys = publish_registry(registry, client, bucket, prefix=prefix, kms_key_id=kms_key_id)
    Console().print(f"uploaded {len(keys)} objects to s3://{bucket}/{prefix}")


def main() -> None:
    app()
