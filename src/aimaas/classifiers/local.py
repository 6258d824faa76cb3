"""The local classifier store: files beside the local data (``.aimaas/classifiers``).

One folder per tenant (named by a hash of the tenant id, so no tenant id reaches a path) and one
per classifier inside it: ``record.json``, ``head.npz``, ``examples.json``. A classifier is
written to a temporary folder and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from aimaas import errors
from aimaas.classifiers.records import (
    ClassifierRecord,
    Example,
    Head,
    StoredClassifier,
    is_classifier_id,
)
from aimaas.classifiers.store import ClassifierStore

RECORD, HEAD, EXAMPLES = "record.json", "head.npz", "examples.json"


class LocalClassifierStore(ClassifierStore):
    """Classifiers as files under ``root``.

    Parameters
    ----------
    root
        The store's folder (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _tenant_dir(self, tenant_id: str) -> Path:
        return self.root / hashlib.sha256(tenant_id.encode()).hexdigest()[:32]

    def _dir(self, tenant_id: str, classifier_id: str) -> Path | None:
        if not is_classifier_id(classifier_id):  # never let a client's string reach a path
            return None
        return self._tenant_dir(tenant_id) / classifier_id

    def put(self, classifier: StoredClassifier) -> None:
        record = classifier.record
        final = self._dir(record.tenant_id, record.id)
        if final is None:
            raise ValueError(f"not a classifier id: {record.id!r}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
            (staging / RECORD).write_text(record.model_dump_json())
            (staging / HEAD).write_bytes(classifier.head.to_bytes())
            (staging / EXAMPLES).write_text(
                json.dumps([e.model_dump() for e in classifier.examples])
            )
            if final.exists():  # a retried create: the same id, the same content
                shutil.rmtree(final)
            os.replace(staging, final)
        except OSError as error:
            raise errors.BackendUnavailable("The classifier store cannot be written.") from error

    def record(self, tenant_id: str, classifier_id: str) -> ClassifierRecord | None:
        folder = self._dir(tenant_id, classifier_id)
        if folder is None:
            return None
        try:
            return ClassifierRecord.model_validate_json((folder / RECORD).read_text())
        except FileNotFoundError:
            return None

    def get(self, tenant_id: str, classifier_id: str) -> StoredClassifier | None:
        record = self.record(tenant_id, classifier_id)
        folder = self._dir(tenant_id, classifier_id)
        if record is None or folder is None:
            return None
        try:
            head = Head.from_bytes((folder / HEAD).read_bytes())
            examples = json.loads((folder / EXAMPLES).read_text())
        except FileNotFoundError:  # deleted between the two reads
            return None
        return StoredClassifier(record, head, [Example(**e) for e in examples])

    def list(self, tenant_id: str) -> list[ClassifierRecord]:
        folder = self._tenant_dir(tenant_id)
        if not folder.is_dir():
            return []
        found = [self.record(tenant_id, child.name) for child in folder.iterdir()]
        return sorted((r for r in found if r is not None), key=lambda r: (r.created_at, r.id))

    def delete(self, tenant_id: str, classifier_id: str) -> bool:
        folder = self._dir(tenant_id, classifier_id)
        if folder is None or not folder.is_dir():
            return False
        shutil.rmtree(folder)
        return True
