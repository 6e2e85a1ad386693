"""Evaluation metrics for binary classifiers (scikit-learn underneath)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput

__all__ = ["binary_metrics"]


def binary_metrics(
    y_true: npt.ArrayLike, probability: npt.ArrayLike, *, threshold: float = 0.5
) -> dict[str, float]:
    """Return AUC, average precision, log loss, accuracy, precision and recall.

    Parameters
    ----------
    y_true : array-like of {0, 1}
        Labels.
    probability : array-like of float in [0, 1]
        Predicted probability of class 1.
    threshold : float, default 0.5
        Decision threshold for accuracy, precision and recall.

    Returns
    -------
    dict[str, float]
        ``auc`` and ``average_precision`` are NaN-free only when both classes occur.

    Raises
    ------
    InvalidInput
        When shapes differ or probabilities leave [0, 1].
    """
    # scikit-learn costs about a second to import: only code that evaluates pays for it.
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y_true).ravel()
    p = np.asarray(probability, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise InvalidInput(
            f"labels and probabilities differ in length: {y.shape[0]} vs {p.shape[0]}.",
            field="probability",
        )
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise InvalidInput("probabilities must be finite and in [0, 1].", field="probability")
    predicted = (p >= threshold).astype(np.int64)
    out = {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
    }
    if len(np.unique(y)) == 2:
        out["auc"] = float(roc_auc_score(y, p))
        out["average_precision"] = float(average_precision_score(y, p))
        out["log_loss"] = float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    return out
