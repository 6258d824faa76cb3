"""The numpy head: it is scikit-learn's logistic regression, its folds are stratified and
reproducible, and it round-trips through bytes without pickle."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from aimaas import errors
from aimaas.classifiers import Example, Head, classifier_id_for, is_classifier_id
from aimaas.classifiers.training import (
    L2,
    check_examples,
    cross_validate,
    fit_head,
    softmax,
    stratified_folds,
)
from aimaas.manifest import is_model_name


def _data(n: int = 120, d: int = 32, k: int = 4, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.normal(size=(n, d))
    x[np.arange(n), y] += 2.5  # each class leans on its own dimension, with overlap
    return x, y


def test_the_head_is_scikit_learns_multinomial_logistic_regression() -> None:
    x, y = _data()
    head = fit_head(x, y, 4, max_iter=20_000, tol=1e-10)
    z = (x / np.linalg.norm(x, axis=1, keepdims=True) - head.mean) / head.scale
    # Same objective: mean cross-entropy + L2/2 |W|^2 is scikit-learn's C = 1 / (n * L2).
    reference = LogisticRegression(C=1 / (len(y) * L2), tol=1e-12, max_iter=10_000).fit(z, y)
    ours = softmax(head.logits(x))
    assert np.abs(ours - reference.predict_proba(z)).max() < 1e-4


def test_cross_validation_is_stratified_and_reproducible() -> None:
    x, y = _data()
    folds = stratified_folds(y, 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(y)))
    for test in folds:
        assert np.bincount(y[test], minlength=4).tolist() == [6, 6, 6, 6]
    first, second = cross_validate(x, y, 4), cross_validate(x, y, 4)
    assert first == second and first.folds == 5 and 0.5 < first.accuracy <= 1.0
    # The rarest label bounds the folds: every test fold must hold every label.
    few = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    assert cross_validate(np.eye(8), few, 2).folds == 3


def test_the_head_round_trips_through_bytes_without_pickle() -> None:
    x, y = _data()
    head = fit_head(x, y, 4)
    again = Head.from_bytes(head.to_bytes())
    np.testing.assert_array_equal(again.logits(x), head.logits(x))
    with pytest.raises(ValueError, match="pickle"):
        Head.from_bytes(_pickled_npz())


def _pickled_npz() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, mean=np.array([{"a": 1}], dtype=object))
    return buffer.getvalue()


def test_check_examples_keeps_first_seen_label_order_and_refuses_clearly() -> None:
    examples = [Example(text=f"t{i}", label=label) for i, label in enumerate("bbbbaaaa")]
    assert check_examples(examples) == ["b", "a"]
    with pytest.raises(errors.InvalidInput, match="at least 4 examples; too few for: 'c'"):
        check_examples([*examples, Example(text="x", label="c")])
    with pytest.raises(errors.InvalidInput, match="text is empty"):
        check_examples([*examples, Example(text="  ", label="a")])


def test_classifier_ids_are_model_names_derived_from_tenant_and_request() -> None:
    one = classifier_id_for("t_a", "req-1")
    assert is_model_name(one) and is_classifier_id(one) and is_classifier_id(one + "@1.0.0")
    assert one == classifier_id_for("t_a", "req-1")  # a retry recreates the same id
    assert one != classifier_id_for("t_b", "req-1") != classifier_id_for("t_a", "req-2")
    assert not is_classifier_id("all-minilm-l6-v2") and not is_classifier_id("clf-../../x")
