"""The tenant-scoped classifier store port.

Every method takes the tenant: a classifier is only ever found under its owner, so another
tenant's lookup finds nothing (the API answers 404, never 403, and leaks no existence).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from aimaas.classifiers.records import ClassifierRecord, StoredClassifier


class ClassifierStore(ABC):
    """Where classifiers (metadata, head, examples) live."""

    @abstractmethod
    def put(self, classifier: StoredClassifier) -> None:
        """Store ``classifier`` under its tenant (replacing one with the same id).

        Raises
        ------
        aimaas.errors.BackendUnavailable
            The store cannot be written.
        """

    @abstractmethod
    def get(self, tenant_id: str, classifier_id: str) -> StoredClassifier | None:
        """The tenant's classifier ``classifier_id`` with its head (None if it has none)."""

    @abstractmethod
    def record(self, tenant_id: str, classifier_id: str) -> ClassifierRecord | None:
        """The metadata only of the tenant's classifier (None if it has none)."""

    @abstractmethod
    def list(self, tenant_id: str) -> list[ClassifierRecord]:
        """The tenant's classifiers, oldest first."""

    @abstractmethod
    def delete(self, tenant_id: str, classifier_id: str) -> bool:
        """Remove the classifier's head, examples and metadata; False if the tenant had none."""

    def close(self) -> None:  # noqa: B027 - optional hook: most adapters hold nothing open
        """Release connections."""
