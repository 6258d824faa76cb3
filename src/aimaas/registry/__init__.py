"""Model store (folder or S3) and the registry that resolves and verifies models.

Public face: :class:`ModelRegistry`, :class:`ModelStore` with :class:`FolderStore` and
:class:`S3Store`, and :func:`build_store` (``settings.model_store`` -> store via ``STORES``).
"""

from aimaas.registry.registry import ModelRegistry
from aimaas.registry.store import STORES, FolderStore, ModelStore, S3Store, build_store

__all__ = ["STORES", "FolderStore", "ModelRegistry", "ModelStore", "S3Store", "build_store"]
