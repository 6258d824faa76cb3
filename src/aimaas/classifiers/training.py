"""Training a classifier head: multinomial logistic regression in numpy, k-fold CV, limits.

The head is fitted on L2-normalised, then standardised embeddings by accelerated gradient
descent on the mean cross-entropy plus ``L2 / 2 * |W|^2`` (the bias is not penalised, as in
scikit-learn, which a test checks it matches). Nothing here is tuned on the proof's held-out
set: ``L2`` is fixed a priori (scikit-learn's ``C = 1 / (n * L2)``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aimaas import errors
from aimaas.classifiers.records import Example, Head


@dataclass(frozen=True)
class Limits:
    """What one ``POST /v1/classifiers`` may train on (inside the request's deadline).

    ``max_examples`` comes from ``benchmarks/bench_classifier_training.py``: embedding the
    examples dominates, and the largest set must train well inside the 25 s deadline on one
    Lambda-sized vCPU (see the README for the measured times).
    """

    min_labels: int = 2
    max_labels: int = 50
    min_examples_per_label: int = 4
    max_examples: int = 1000
    max_text_chars: int = 2000
    max_total_chars: int = 150_000
    max_label_chars: int = 100


LIMITS = Limits()
#: L2 penalty on the weights (mean-loss form); fixed a priori, never tuned on held-out data.
L2 = 1e-2
#: Folds of the cross-validation (fewer when the rarest label has fewer examples).
FOLDS = 5


def check_examples(examples: Sequence[Example], limits: Limits = LIMITS) -> list[str]:
    """The labels of ``examples`` in first-seen order, or a 422 saying which limit is broken.

    Raises
    ------
    aimaas.errors.InvalidInput
        Too few or too many labels or examples, an empty or over-long text or label.
    """
    if len(examples) > limits.max_examples:
        raise errors.InvalidInput(
            f"{len(examples)} examples is over the limit of {limits.max_examples} per classifier."
        )
    total = sum(len(e.text) for e in examples)
    if total > limits.max_total_chars:
        raise errors.InvalidInput(
            f"The examples hold {total} characters, over the limit of {limits.max_total_chars} "
            "per classifier; send fewer or shorter examples."
        )
    for index, example in enumerate(examples):
        if not example.text.strip():
            raise errors.InvalidInput(f"examples[{index}].text is empty.")
        if len(example.text) > limits.max_text_chars:
            raise errors.InvalidInput(
                f"examples[{index}].text is over {limits.max_text_chars} characters."
            )
        if not example.label.strip() or len(example.label) > limits.max_label_chars:
            raise errors.InvalidInput(
                f"examples[{index}].label must be 1 to {limits.max_label_chars} characters."
            )
    counts = Counter(e.label for e in examples)
    if not limits.min_labels <= len(counts) <= limits.max_labels:
        raise errors.InvalidInput(
            f"A classifier needs {limits.min_labels} to {limits.max_labels} distinct labels; "
            f"got {len(counts)}."
        )
    few = sorted(label for label, n in counts.items() if n < limits.min_examples_per_label)
    if few:
        raise errors.InvalidInput(
            f"Each label needs at least {limits.min_examples_per_label} examples; too few for: "
            + ", ".join(repr(x) for x in few[:10])
        )
    return list(counts)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_head(
    embeddings: np.ndarray,
    targets: np.ndarray,
    n_labels: int,
    l2: float = L2,
    max_iter: int = 500,
    tol: float = 1e-6,
) -> Head:
    """Fit a multinomial logistic-regression head.

    Parameters
    ----------
    embeddings
        (n, d) embeddings of the examples (normalised here).
    targets
        (n,) label indices in ``range(n_labels)``.
    n_labels
        Number of classes.
    l2
        Weight penalty of the mean loss.
    max_iter, tol
        Stop after ``max_iter`` steps or once the gradient's norm is under ``tol``. 500 steps
        bound the cost of labels that cannot be separated; on the proof's tickets the
        probabilities are then within 0.02 of the converged fit's, with the same predictions.

    Returns
    -------
    Head
        The trained head (standardisation included).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    z = (x - mean) / scale
    n, d = z.shape
    onehot = np.zeros((n, n_labels))
    onehot[np.arange(n), targets] = 1.0
    # The softmax loss's Hessian is at most 0.5 * [z 1]^T [z 1] / n (+ l2): a safe step size,
    # and with strong convexity l2 the momentum of Nesterov's method for that condition number.
    lipschitz = 0.5 * np.linalg.norm(np.hstack([z, np.ones((n, 1))]), 2) ** 2 / n + l2
    step = 1.0 / lipschitz
    root = np.sqrt(l2 / lipschitz)
    momentum = (1.0 - root) / (1.0 + root)
    w = np.zeros((d, n_labels))
    b = np.zeros(n_labels)
    w_prev, b_prev = w, b
    for _ in range(max_iter):
        w_look = w + momentum * (w - w_prev)
        b_look = b + momentum * (b - b_prev)
        residual = (softmax(z @ w_look + b_look) - onehot) / n
        grad_w = z.T @ residual + l2 * w_look
        grad_b = residual.sum(axis=0)
        w_prev, b_prev = w, b
        w = w_look - step * grad_w
        b = b_look - step * grad_b
        if np.sqrt(np.sum(grad_w**2) + np.sum(grad_b**2)) < tol:
            break
    return Head(mean=mean, scale=scale, weights=w, bias=b)


def stratified_folds(targets: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test-index sets of ``folds`` folds, each label spread evenly over them (seeded, so the
    reported accuracy is reproducible)."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(targets), dtype=int)
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        assignment[members] = np.arange(len(members)) % folds
    return [np.flatnonzero(assignment == f) for f in range(folds)]


@dataclass(frozen=True)
class CrossValidation:
    """Accuracy of k-fold cross-validation: the mean over folds and its standard deviation."""

    accuracy: float
    std: float
    folds: int


def cross_validate(
    embeddings: np.ndarray,
    targets: np.ndarray,
    n_labels: int,
    folds: int = FOLDS,
    between: Callable[[], None] = lambda: None,
) -> CrossValidation:
    """Stratified k-fold accuracy of :func:`fit_head` on these examples.

    ``folds`` drops to the rarest label's count when that is smaller (every test fold then
    holds every label). ``between`` runs before each fold (the caller's deadline check).
    """
    folds = int(min(folds, np.bincount(targets, minlength=n_labels).min()))
    scores = []
    for test in stratified_folds(targets, folds):
        between()
        train = np.setdiff1d(np.arange(len(targets)), test)
        head = fit_head(embeddings[train], targets[train], n_labels)
        predicted = head.logits(embeddings[test]).argmax(axis=1)
        scores.append(float(np.mean(predicted == targets[test])))
    return CrossValidation(float(np.mean(scores)), float(np.std(scores)), folds)
