"""Multivariate drift: a domain classifier that tries to tell reference rows from current rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core.errors import InvalidInput

__all__ = ["MultivariateResult", "domain_classifier_test"]

Rows = npt.NDArray[np.float64]

#: Fewest rows per side the classifier is fitted on (half of them are held out).
MIN_ROWS = 20


@dataclass(frozen=True)
class MultivariateResult:
    """What the domain classifier found.

    Attributes
    ----------
    method : str
        ``"domain_classifier"``.
    auc : float
        Held-out ROC AUC of "current vs reference"; 0.5 means indistinguishable.
    p_value : float
        One-sided Mann-Whitney U p-value that current rows score higher than reference rows.
    drifted : bool
        ``p_value < alpha`` and ``auc >= min_auc``.
    alpha : float
        Significance level used.
    min_auc : float
        Practical AUC floor used.
    reference_rows, current_rows : int
        Rows used per side (after subsampling).
    columns : tuple of str
        Columns the classifier saw.
    """

    method: str
    auc: float
    p_value: float
    drifted: bool
    alpha: float
    min_auc: float
    reference_rows: int
    current_rows: int
    columns: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready mapping.

        Returns
        -------
        dict
            The attributes by name (``columns`` as a list).
        """
        return {
            "method": self.method,
            "auc": self.auc,
            "p_value": self.p_value,
            "drifted": self.drifted,
            "alpha": self.alpha,
            "min_auc": self.min_auc,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "columns": list(self.columns),
        }


def _rows(array: Any, *, field: str, width: int | None) -> Rows:
    rows = np.asarray(array, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < MIN_ROWS or (width is not None and rows.shape[1] != width):
        expected = f"(>= {MIN_ROWS}, {width if width is not None else 'k'})"
        raise InvalidInput(
            f"{field} must be a 2-D array of shape {expected}; got shape {rows.shape}.",
            field=field,
            hint="Pass row samples of the same numeric columns on both sides.",
        )
    # Gradient boosting treats NaN as missing; infinities would dominate the split search.
    return np.where(np.isfinite(rows), rows, np.nan)


def _halves(
    n: int, cap: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    picked = rng.permutation(n)[:cap]
    half = picked.size // 2
    return picked[:half], picked[half:]


def domain_classifier_test(
    reference: Rows,
    current: Rows,
    *,
    columns: Sequence[str] = (),
    max_rows: int = 2_000,
    alpha: float = 0.05,
    min_auc: float = 0.55,
    seed: int = 0,
) -> MultivariateResult:
    """Test whether a classifier can tell current rows from reference rows.

    Each side is subsampled to ``max_rows`` and split in halves; a small gradient-boosted
    model is fitted on one half of both sides and scores the other. Under no drift the
    held-out scores of the two sides are exchangeable, so the Mann-Whitney U test on them is
    exact in level whatever the model learnt, and ``U / (n m)`` is the held-out AUC. Unlike
    the per-column tests this sees changes in the joint distribution (a correlation that
    flips while every marginal stays put). scikit-learn and scipy are imported on first use.

    Parameters
    ----------
    reference, current : ndarray of float64, shape (rows, k)
        Row samples of the same ``k`` numeric columns (NaN allowed), at least 20 rows each.
    columns : sequence of str, default ()
        Names of the ``k`` columns, reported back.
    max_rows : int, default 2000
        Rows per side used at most.
    alpha : float, default 0.05
        Significance level, in [0, 1].
    min_auc : float, default 0.55
        Held-out AUC needed to flag, in [0.5, 1].
    seed : int, default 0
        Seeds subsampling, split and model.

    Returns
    -------
    MultivariateResult
        AUC, p-value and verdict.

    Raises
    ------
    InvalidInput
        If the arrays are not 2-D with the same columns and at least 20 rows, or a
        parameter is out of range.
    """
    # lazy: scikit-learn and scipy.stats cost ~1 s to import
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]
    from sklearn.ensemble import HistGradientBoostingClassifier

    if max_rows < MIN_ROWS:
        raise InvalidInput(
            f"max_rows must be an int >= {MIN_ROWS}; got {max_rows}.",
            field="max_rows",
            value=max_rows,
            hint="Use 2000 (DriftConfig.multivariate_max_rows).",
        )
    for name, value, low in (("alpha", alpha, 0.0), ("min_auc", min_auc, 0.5)):
        if not low <= value <= 1:
            raise InvalidInput(
                f"{name} must be a float in [{low:g}, 1]; got {value}.",
                field=name,
                value=value,
                hint="See DriftConfig for the defaults.",
            )
    ref = _rows(reference, field="reference", width=None)
    cur = _rows(current, field="current", width=ref.shape[1])
    if columns and len(columns) != ref.shape[1]:
        raise InvalidInput(
            f"columns names {len(columns)} columns but the samples have {ref.shape[1]}.",
            field="columns",
            value=list(columns),
            hint="Pass one name per sample column, or none.",
        )
    rng = np.random.default_rng(seed)
    ref_fit, ref_out = _halves(ref.shape[0], max_rows, rng)
    cur_fit, cur_out = _halves(cur.shape[0], max_rows, rng)
    model = HistGradientBoostingClassifier(
        max_iter=50, max_leaf_nodes=8, learning_rate=0.1, early_stopping=False, random_state=seed
    )
    features = np.vstack((ref[ref_fit], cur[cur_fit]))
    labels = np.concatenate((np.zeros(ref_fit.size), np.ones(cur_fit.size)))
    model.fit(features, labels)
    ref_scores = model.predict_proba(ref[ref_out])[:, 1]
    cur_scores = model.predict_proba(cur[cur_out])[:, 1]
    u_stat, p_value = mannwhitneyu(cur_scores, ref_scores, alternative="greater")
    auc = float(u_stat) / (cur_scores.size * ref_scores.size)
    return MultivariateResult(
        method="domain_classifier",
        auc=auc,
        p_value=float(p_value),
        drifted=bool(p_value < alpha and auc >= min_auc),
        alpha=alpha,
        min_auc=min_auc,
        reference_rows=int(ref_fit.size + ref_out.size),
        current_rows=int(cur_fit.size + cur_out.size),
        columns=tuple(columns),
    )
