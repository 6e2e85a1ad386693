"""Multiple-testing corrections: adjusted p-values across the columns of one check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from fedloop.core.errors import InvalidInput

__all__ = ["CORRECTIONS", "Correction", "adjust_p_values"]

Correction = Literal["bh", "bonferroni", "holm", "none"]
#: The corrections :func:`adjust_p_values` knows.
CORRECTIONS: tuple[Correction, ...] = ("bh", "bonferroni", "holm", "none")


def adjust_p_values(
    p_values: Sequence[float] | npt.NDArray[np.float64], method: Correction = "bh"
) -> npt.NDArray[np.float64]:
    """Return p-values adjusted for testing them together; compare them with alpha directly.

    Parameters
    ----------
    p_values : sequence of float
        Raw p-values in [0, 1], one per test.
    method : {"bh", "bonferroni", "holm", "none"}, default "bh"
        ``"bh"``: Benjamini-Hochberg step-up, controls the false discovery rate (the expected
        share of false alarms among flagged columns) and, when nothing drifted, the chance of
        any false alarm. ``"bonferroni"``: ``m p``, controls the family-wise error rate.
        ``"holm"``: step-down Bonferroni, same guarantee, never less powerful. ``"none"``:
        unchanged.

    Returns
    -------
    ndarray of float64
        Adjusted p-values in [0, 1], in the input order.

    Raises
    ------
    InvalidInput
        If a p-value is not in [0, 1] or the method is unknown.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise InvalidInput(
            "p_values must be a 1-D sequence of floats in [0, 1].",
            field="p_values",
            value=p_values,
            hint="Pass the raw p-values of the tests, one per column.",
        )
    if method not in CORRECTIONS:
        raise InvalidInput(
            f"method must be one of {', '.join(CORRECTIONS)}; got {method!r}.",
            field="method",
            value=method,
            hint="Use 'bh' (Benjamini-Hochberg) unless you need family-wise control.",
        )
    m = p.size
    if m == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:  # bh: p_(i) m / i, made monotone from the largest down
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out
