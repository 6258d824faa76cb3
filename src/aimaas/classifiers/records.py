"""What a custom classifier is made of: its metadata, its examples and its trained head."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict

from aimaas.manifest import is_model_name

#: Classifier ids start with this (registry models never do), so only such names are looked up
#: in the tenant store: every other model name costs no store round trip.
ID_PREFIX = "clf-"
#: The version a classifier is served under: a classifier never changes (retrain = a new id).
VERSION = "1.0.0"


def classifier_id_for(tenant_id: str, request_id: str) -> str:
    """The id of the classifier a request creates: derived from the tenant and the request id,
    so a retried request (same ``Idempotency-Key``) recreates the same classifier and is billed
    once, while ids stay unguessable to anyone else (a 20-hex-digit hash)."""
    digest = hashlib.sha256(f"{tenant_id}\x00{request_id}".encode()).hexdigest()
    return ID_PREFIX + digest[:20]


def is_classifier_id(name: str | None) -> bool:
    """True for a name of the classifier-id form (``clf-`` + hex; a model name too)."""
    if not name:
        return False
    name = name.split("@", 1)[0]
    return name.startswith(ID_PREFIX) and is_model_name(name)


class Example(BaseModel):
    """One labelled training text."""

    model_config = ConfigDict(extra="forbid")

    text: str
    label: str


class ClassifierRecord(BaseModel):
    """A classifier's metadata (what ``GET /v1/classifiers/{id}`` answers, and the owner)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    tenant_id: str
    name: str
    base_model: str  # name@version of the embeddings model the head was trained on
    labels: list[str]
    examples: int
    tokens: int
    cv_accuracy: float
    cv_accuracy_std: float
    cv_folds: int
    created_at: datetime


@dataclass(frozen=True)
class Head:
    """A multinomial logistic-regression head over standardised embeddings.

    ``probabilities(x) = softmax(((x / |x|) - mean) / scale @ weights + bias)``.
    """

    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    weights: np.ndarray  # (d, k)
    bias: np.ndarray  # (k,)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Class scores of ``embeddings`` (n, d) before the softmax."""
        x = np.asarray(embeddings, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def to_bytes(self) -> bytes:
        """The head as an ``.npz`` file (no pickle: loading it runs no code)."""
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, scale=self.scale, weights=self.weights, bias=self.bias)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        """Read a head written by :meth:`to_bytes`."""
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(
                mean=arrays["mean"],
                scale=arrays["scale"],
                weights=arrays["weights"],
                bias=arrays["bias"],
            )


@dataclass(frozen=True)
class StoredClassifier:
    """Everything the store keeps of one classifier."""

    record: ClassifierRecord
    head: Head
    examples: list[Example]
