"""Model store (folder or S3) and the registry that resolves and verifies models.

Public face: :class:`ModelRegistry`, :class:`ModelStore` with :class:`FolderStore` and
:class:`S3Store` (:func:`aimaas.wiring.build_model_store` picks one by configuration).
"""

from aimaas.registry.registry import ModelRegistry
from aimaas.registry.store import FolderStore, ModelStore, S3Store

__all__ = ["FolderStore", "ModelRegistry", "ModelStore", "S3Store"]
