"""Export gates: measured agreement between ONNX and the reference, checked against tolerances.

A tolerance named ``max_<metric>`` is an upper bound and ``min_<metric>`` a lower bound on
the metric of the same name. :func:`enforce` raises :class:`GateError` when any bound is not
met, so a model that disagrees with its reference never reaches the registry.
"""

from __future__ import annotations

import numpy as np

from aimaas.manifest import ParityReport


class GateError(RuntimeError):
    """A model failed its export gate; nothing is written for it."""

    def __init__(self, model: str, failures: list[str], metrics: dict[str, float]) -> None:
        super().__init__(f"{model}: gate failed: " + "; ".join(failures))
        self.model = model
        self.failures = failures
        self.metrics = metrics


def enforce(
    model: str,
    metrics: dict[str, float],
    tolerances: dict[str, float],
    *,
    reference: str,
    samples: int,
) -> ParityReport:
    """Check ``metrics`` against ``tolerances`` and return the parity report.

    Parameters
    ----------
    model
        Model name, for the error message.
    metrics
        Measured values; every tolerance must have a metric of the same name.
    tolerances
        ``max_*`` (upper) and ``min_*`` (lower) bounds on the metric of the same name, or, when
        there is none, of the name without its prefix.
    reference
        What the candidate was compared with (``"pytorch-eager-fp32"``).
    samples
        How many inputs were compared.

    Raises
    ------
    GateError
        When a metric is missing, not finite, or outside its bound.
    """
    failures: list[str] = []
    for name, bound in tolerances.items():
        # "max_abs_diff" bounds the metric of that name; "min_mean_cosine" bounds "mean_cosine".
        value = metrics.get(name, metrics.get(name[4:]))
        if value is None or not np.isfinite(value):
            failures.append(f"{name} is {value}")
        elif name.startswith("max_") and not value <= bound:
            failures.append(f"{name}={value:.6g} > {bound:g}")
        elif name.startswith("min_") and not value >= bound:
            failures.append(f"{name}={value:.6g} < {bound:g}")
        elif not name.startswith(("max_", "min_")):
            failures.append(f"tolerance {name} must start with max_ or min_")
    if failures:
        raise GateError(model, failures, metrics)
    return ParityReport(
        reference=reference,
        samples=samples,
        metrics={k: float(v) for k, v in metrics.items()},
        tolerances=tolerances,
        passed=True,
    )


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two ``[n, d]`` arrays."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return np.sum(a64 * b64, axis=1) / np.maximum(norms, 1e-12)


def embedding_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """``max_abs_diff``, ``min_cosine`` and ``mean_cosine`` of two embedding batches."""
    if reference.shape != candidate.shape:
        return {"max_abs_diff": float("inf"), "min_cosine": float("-inf"), "mean_cosine": 0.0}
    cosine = cosine_rows(reference, candidate)
    return {
        "max_abs_diff": float(np.max(np.abs(reference - candidate))),
        "min_cosine": float(np.min(cosine)),
        "mean_cosine": float(np.mean(cosine)),
    }


def classifier_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """``top1_agreement`` and ``max_logit_diff`` of two logit batches."""
    if reference.shape != candidate.shape:
        return {"top1_agreement": 0.0, "max_logit_diff": float("inf")}
    agreement = np.mean(np.argmax(reference, axis=1) == np.argmax(candidate, axis=1))
    return {
        "top1_agreement": float(agreement),
        "max_logit_diff": float(np.max(np.abs(reference - candidate))),
    }
