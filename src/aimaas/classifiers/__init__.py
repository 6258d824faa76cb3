"""Custom classifiers per tenant: a linear head trained on a base embeddings model.

The public face: :class:`ClassifierStore` (the tenant-scoped port; adapters in
:mod:`aimaas.classifiers.local` and :mod:`aimaas.classifiers.aws`, chosen in
:mod:`aimaas.wiring`), the stored shapes (:class:`ClassifierRecord`, :class:`Head`,
:class:`StoredClassifier`) and the numpy training (:mod:`aimaas.classifiers.training`).
"""

from aimaas.classifiers.records import (
    ClassifierRecord,
    Example,
    Head,
    StoredClassifier,
    classifier_id_for,
    is_classifier_id,
)
from aimaas.classifiers.store import ClassifierStore

__all__ = [
    "ClassifierRecord",
    "ClassifierStore",
    "Example",
    "Head",
    "StoredClassifier",
    "classifier_id_for",
    "is_classifier_id",
]
