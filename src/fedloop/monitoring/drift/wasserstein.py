"""1-D Wasserstein distance from binned CDFs, in reference standard deviations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedloop.learn.profiles import ColumnSummary, NumericSummary
from fedloop.monitoring.drift._bins import numeric_pair, paired_counts
from fedloop.monitoring.drift.base import SummaryKind, TestResult

__all__ = ["WassersteinTest", "bin_representatives"]


def bin_representatives(edges: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return one point per bin: interior midpoints; half a neighbouring width past each end.

    The two outer bins are unbounded, so their points sit half the width of the adjacent
    interior bin beyond the outer edges (the outer edge itself when there is no interior bin).

    Parameters
    ----------
    edges : ndarray of float64, shape (B - 1,)
        Interior bin edges, strictly increasing.

    Returns
    -------
    ndarray of float64, shape (B,)
        Non-decreasing representatives.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.size == 0:
        return np.zeros(1)
    if edges.size == 1:
        return np.array([edges[0], edges[0]])
    mids = (edges[1:] + edges[:-1]) / 2
    first = edges[0] - (edges[1] - edges[0]) / 2
    last = edges[-1] + (edges[-1] - edges[-2]) / 2
    return np.concatenate(([first], mids, [last]))


def _scale(reference: NumericSummary, current: NumericSummary) -> float:
    """Return the reference std; the current one, then 1, for a constant reference."""
    for summary in (reference, current):
        std = math.sqrt(max(summary.m2, 0.0) / summary.count)
        if std > 0:
            return std
    return 1.0


@dataclass(frozen=True)
class WassersteinTest:
    """Wasserstein-1 (earth mover's) distance divided by the reference standard deviation.

    The distance is ``sum_i |F_i - G_i| (r_{i+1} - r_i)`` between the binned CDFs ``F`` and
    ``G``, with every row moved to its bin's representative (:func:`bin_representatives`).
    Inside one bin the shape is unknown and the outer bins are represented by one point, so
    binning can only lose distance; the exact means give a second lower bound,
    ``|mean_cur - mean_ref| <= W1``, and the larger of the two is reported. Dividing by the
    reference standard deviation makes the unit "reference standard deviations", so one
    threshold (0.1 by default) fits every numeric column: a mean shift of 0.5 std reads 0.5.
    A distance with no p-value.

    With no drift, ``sqrt(en) W1`` tends to the integral of ``|B(F(x))|`` for a Brownian bridge
    ``B``, so the effect noise is ``sqrt(2/pi) sqrt(1/n + 1/m) * integral sqrt(F (1 - F)) dx``,
    integrated over the reference's binned CDF and divided by the reference std (0.054 for
    two 1,000-row samples of a normal column, 0.0054 at 100,000).
    """

    name: str = field(default="wasserstein", init=False)
    kinds: frozenset[SummaryKind] = field(default=frozenset({"numeric"}), init=False)
    has_p_value: bool = field(default=False, init=False)

    def __call__(
        self, reference: ColumnSummary, current: ColumnSummary, *, column: str = "column"
    ) -> TestResult:
        """Return the normalized Wasserstein distance of the current summary from the reference.

        Parameters
        ----------
        reference, current : NumericSummary
            The column's summaries on the same edges.
        column : str, default "column"
            Column name, shown in errors.

        Returns
        -------
        TestResult
            ``statistic`` and ``effect`` in reference standard deviations, ``p_value`` None.

        Raises
        ------
        InvalidInput
            For categorical, empty or malformed summaries, or edges that differ.
        """
        reference, current = numeric_pair(reference, current, column=column, test=self.name)
        ref, cur = paired_counts(reference, current)
        n, m = float(ref.sum()), float(cur.sum())
        steps = np.diff(bin_representatives(reference.edges))
        ref_cdf = np.cumsum(ref)[:-1] / n
        gaps = np.abs(ref_cdf - np.cumsum(cur)[:-1] / m)
        scale = _scale(reference, current)
        binned = float(np.dot(gaps, steps))
        distance = max(binned, abs(current.mean - reference.mean)) / scale
        spread = float(np.dot(np.sqrt(np.clip(ref_cdf * (1 - ref_cdf), 0.0, None)), steps)) / scale
        return TestResult(
            test=self.name,
            statistic=distance,
            p_value=None,
            effect=distance,
            effect_name="wasserstein_std",
            effect_noise=math.sqrt(2 / math.pi) * math.sqrt(1 / n + 1 / m) * spread,
            bins=int(ref.size),
        )
