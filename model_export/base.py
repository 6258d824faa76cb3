"""The exporter contract: one :class:`ModelExporter` per registry model."""

from __future__ import annotations

import inspect
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import ModelManifest


@dataclass
class BuildContext:
    """What every exporter gets from the build command.

    Attributes
    ----------
    cache_dir
        Reusable intermediate results (synthesised audio, shared fp32 graphs); safe to delete.
    threads
        Torch and ONNX Runtime intra-op threads (the build machine has two cores).
    seed
        Seed of every random generator, so a rebuild gives the same model.
    log
        Progress messages for the CLI.
    """

    cache_dir: Path
    threads: int = 2
    seed: int = 0
    log: Callable[[str], None] = field(default=lambda message: None)

    def seed_everything(self) -> None:
        """Seed Python, numpy and torch (and make torch deterministic where it can be)."""
        import torch

        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)


class ModelExporter(ABC):
    """Exports one model into a staging folder and returns its (gated) manifest.

    Subclasses set :attr:`name` and :attr:`version` and implement :meth:`export`. The export
    must raise :class:`~model_export.gates.GateError` when ONNX disagrees with the reference;
    the registry then writes nothing.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1.0.0"

    def config(self) -> dict[str, Any]:
        """Settings that change the artifact; part of the build fingerprint."""
        return {}

    def source_files(self) -> list[Path]:
        """Code files whose change must trigger a rebuild (the exporter's own module)."""
        return [Path(inspect.getfile(type(self)))]

    @abstractmethod
    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        """Write the model's files into ``out_dir`` and return its validated manifest."""


def utc_now() -> datetime:
    """The manifest's ``created_at`` (seconds precision, UTC)."""
    return datetime.now(UTC).replace(microsecond=0)
