"""binary_metrics: values against scikit-learn, single-class labels and input checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from fedloop.core import InvalidInput
from fedloop.learn import binary_metrics

Y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
P = np.array([0.1, 0.6, 0.8, 0.4, 0.2, 0.9, 0.5, 0.7])


def test_metrics_match_sklearn() -> None:
    """Every metric equals scikit-learn's value for the same labels and probabilities."""
    # Arrange
    predicted = (P >= 0.5).astype(int)

    # Act
    metrics = binary_metrics(Y, P)

    # Assert
    assert metrics == pytest.approx(
        {
            "accuracy": accuracy_score(Y, predicted),
            "precision": precision_score(Y, predicted),
            "recall": recall_score(Y, predicted),
            "auc": roc_auc_score(Y, P),
            "average_precision": average_precision_score(Y, P),
            "log_loss": log_loss(Y, P),
        }
    )


def test_metrics_hand_checked_values() -> None:
    """On the fixed example accuracy is 0.625, precision 0.6 and recall 0.75."""
    # Act
    metrics = binary_metrics(Y, P)

    # Assert
    assert (metrics["accuracy"], metrics["precision"], metrics["recall"]) == pytest.approx(
        (0.625, 0.6, 0.75)
    )


def test_threshold_changes_decisions() -> None:
    """A higher threshold turns borderline predictions negative."""
    # Act
    metrics = binary_metrics(Y, P, threshold=0.75)

    # Assert
    assert (metrics["precision"], metrics["recall"]) == pytest.approx((1.0, 0.5))


def test_metrics_are_plain_floats() -> None:
    """Every value is a Python float (JSON- and store-ready)."""
    # Act
    metrics = binary_metrics(Y.tolist(), P.tolist())

    # Assert
    assert all(type(v) is float for v in metrics.values())


@pytest.mark.parametrize(
    "label", [pytest.param(0, id="all-negative"), pytest.param(1, id="all-positive")]
)
def test_single_class_labels_omit_ranking_metrics(label: int) -> None:
    """With one class only, auc, average_precision and log_loss are left out."""
    # Act
    metrics = binary_metrics(np.full(4, label), np.array([0.1, 0.4, 0.6, 0.9]))

    # Assert
    assert set(metrics) == {"accuracy", "precision", "recall"}


def test_log_loss_clips_certain_predictions() -> None:
    """Probabilities of exactly 0 and 1 give a finite log loss."""
    # Act
    metrics = binary_metrics([0, 1], [1.0, 0.0])

    # Assert
    assert np.isfinite(metrics["log_loss"])


def test_mismatched_lengths_are_refused() -> None:
    """Labels and probabilities of different lengths raise InvalidInput on probability."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        binary_metrics([0, 1, 1], [0.2, 0.8])
    assert info.value.field == "probability"


@pytest.mark.parametrize(
    "probability",
    [
        pytest.param([0.2, 1.5], id="above-one"),
        pytest.param([-0.1, 0.5], id="below-zero"),
        pytest.param([np.nan, 0.5], id="nan"),
        pytest.param([np.inf, 0.5], id="inf"),
    ],
)
def test_probabilities_outside_unit_interval_are_refused(probability: Any) -> None:
    """Probabilities outside [0, 1] or non-finite raise InvalidInput on probability."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        binary_metrics([0, 1], probability)
    assert info.value.field == "probability"
