"""The gate's arithmetic: bounds, missing and non-finite metrics, metric helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_export.gates import GateError, classifier_metrics, embedding_metrics, enforce


def test_within_bounds_returns_a_passed_report() -> None:
    report = enforce(
        "m",
        {"max_abs_diff": 1e-5, "mean_cosine": 0.995},
        {"max_abs_diff": 1e-4, "min_mean_cosine": 0.99},
        reference="r",
        samples=3,
    )
    assert report.passed and report.samples == 3
    assert report.metrics["max_abs_diff"] == 1e-5 and report.tolerances["min_mean_cosine"] == 0.99


@pytest.mark.parametrize(
    ("metrics", "needle"),
    [
        ({"max_abs_diff": 2e-4, "min_cosine": 1.0}, "max_abs_diff=0.0002 > 0.0001"),
        ({"max_abs_diff": 0.0, "min_cosine": 0.5}, "min_cosine=0.5 < 0.99"),
        ({"max_abs_diff": math.nan, "min_cosine": 1.0}, "max_abs_diff is nan"),
        ({"min_cosine": 1.0}, "max_abs_diff is None"),
    ],
    ids=["over-max", "under-min", "nan", "missing"],
)
def test_violations_raise(metrics: dict[str, float], needle: str) -> None:
    with pytest.raises(GateError) as caught:
        enforce("m", metrics, {"max_abs_diff": 1e-4, "min_cosine": 0.99}, reference="r", samples=1)
    assert needle in str(caught.value) and caught.value.model == "m"


def test_unprefixed_tolerance_is_rejected() -> None:
    with pytest.raises(GateError, match="must start with"):
        enforce("m", {"diff": 0.0}, {"diff": 1.0}, reference="r", samples=1)


def test_embedding_metrics() -> None:
    a = np.eye(3, 4, dtype=np.float32)
    same = embedding_metrics(a, a.copy())
    assert same["max_abs_diff"] == 0.0 and same["min_cosine"] == pytest.approx(1.0)
    b = a.copy()
    b[1] = [0, 0, 1, 0]  # orthogonal to a[1]
    worse = embedding_metrics(a, b)
    assert worse["min_cosine"] == pytest.approx(0.0) and worse["max_abs_diff"] == 1.0
    assert embedding_metrics(a, a[:2])["min_cosine"] == -math.inf  # shape mismatch fails


def test_classifier_metrics() -> None:
    ref = np.array([[3.0, 1.0], [0.0, 2.0]])
    assert classifier_metrics(ref, ref + 0.01) == pytest.approx(
        {"top1_agreement": 1.0, "max_logit_diff": 0.01}
    )
    assert classifier_metrics(ref, ref[:, ::-1])["top1_agreement"] == 0.0
