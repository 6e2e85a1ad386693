"""Chi-square test of homogeneity on binned or categorical counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fedloop.core.errors import InvalidInput
from fedloop.learn.profiles import ColumnSummary
from fedloop.monitoring.drift._bins import Counts, check_pair, paired_counts
from fedloop.monitoring.drift.base import SummaryKind, TestResult

__all__ = ["ChiSquareTest", "merge_sparse_bins"]


def _merge_ordered(combined: Counts, need: float) -> list[int]:
    groups: list[int] = []
    group, running = 0, 0.0
    for value in combined:
        groups.append(group)
        running += value
        if running >= need:
            group, running = group + 1, 0.0
    if running > 0 and group > 0:
        # The last, short group joins the one before it.
        groups = [min(g, group - 1) for g in groups]
    return groups


def _merge_unordered(combined: Counts, need: float) -> list[int]:
    order = [int(i) for i in np.argsort(combined, kind="stable")]
    pooled = [i for i in order if combined[i] < need]
    kept = [i for i in order if combined[i] >= need]
    pooled_total = float(sum(combined[i] for i in pooled))
    while pooled and pooled_total < need and kept:
        smallest = kept.pop(0)
        pooled.append(smallest)
        pooled_total += float(combined[smallest])
    groups = [0] * combined.size
    for number, index in enumerate(kept, start=1):
        groups[index] = number
    if not pooled:
        groups = [g - 1 for g in groups]
    return groups


def merge_sparse_bins(
    reference: Counts, current: Counts, *, min_expected: float = 5.0, ordered: bool = True
) -> tuple[Counts, Counts]:
    """Merge bins until every expected count of the 2 x K table is at least ``min_expected``.

    Parameters
    ----------
    reference, current : ndarray of float64
        Counts on the same bins, each with a positive sum.
    min_expected : float, default 5.0
        Smallest expected count allowed in a cell.
    ordered : bool, default True
        Numeric bins merge with their neighbours, left to right; unordered categories pool
        the rarest ones into one "other" group.

    Returns
    -------
    tuple of ndarray
        The merged reference and current counts (possibly a single bin).
    """
    n, m = float(reference.sum()), float(current.sum())
    combined = reference + current
    # Expected count of cell (side, k) is side_total * combined_k / N; the smaller side binds.
    need = min_expected * (n + m) / min(n, m)
    groups = (_merge_ordered if ordered else _merge_unordered)(combined, need)
    index = np.asarray(groups, dtype=np.int64)
    size = int(index.max()) + 1
    return (
        np.bincount(index, weights=reference, minlength=size).astype(np.float64),
        np.bincount(index, weights=current, minlength=size).astype(np.float64),
    )


@dataclass(frozen=True)
class ChiSquareTest:
    """Chi-square test that the reference and current rows share one distribution over bins.

    The 2 x K contingency table is the two count vectors (numeric bins on shared edges, or
    the union of categories). Sparse bins are merged first so that every expected count is at
    least ``min_expected`` (the usual validity condition of the chi-square approximation);
    the p-value is the chi-square survival function with ``K - 1`` degrees of freedom. The
    effect is Cramér's V, ``sqrt(chi2 / N)``, in [0, 1]; with no drift the chi-square averages
    ``K - 1``, so the effect noise is ``sqrt((K - 1) / N)``.

    Parameters
    ----------
    min_expected : float, default 5.0
        Smallest expected cell count after merging (positive).
    """

    min_expected: float = 5.0
    name: str = field(default="chi2", init=False)
    kinds: frozenset[SummaryKind] = field(default=frozenset({"numeric", "categorical"}), init=False)
    has_p_value: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if not self.min_expected > 0:
            raise InvalidInput(
                f"ChiSquareTest.min_expected must be a positive float; got {self.min_expected}.",
                field="min_expected",
                value=self.min_expected,
                hint="Use 5, the textbook rule.",
            )

    def __call__(
        self, reference: ColumnSummary, current: ColumnSummary, *, column: str = "column"
    ) -> TestResult:
        """Test homogeneity of the current and reference counts.

        Parameters
        ----------
        reference, current : NumericSummary or CategoricalSummary
            The column's summaries (numeric: on the same edges).
        column : str, default "column"
            Column name, shown in errors.

        Returns
        -------
        TestResult
            ``statistic`` = chi-square, ``p_value``, ``effect`` = Cramér's V; a column whose
            bins all merge into one gets statistic 0 and p-value 1.

        Raises
        ------
        InvalidInput
            For empty or malformed summaries, differing kinds or differing edges.
        """
        # lazy: scipy costs ~0.2 s to import
        from scipy.special import chdtrc  # type: ignore[import-untyped]

        check_pair(reference, current, column=column, test=self.name, kinds=self.kinds)
        ref, cur = paired_counts(reference, current)
        ref, cur = merge_sparse_bins(
            ref, cur, min_expected=self.min_expected, ordered=reference.kind == "numeric"
        )
        n, m = float(ref.sum()), float(cur.sum())
        combined = ref + cur
        statistic, p_value = 0.0, 1.0
        if ref.size >= 2:
            total = n + m
            expected_ref = n * combined / total
            expected_cur = m * combined / total
            statistic = float(
                np.sum((ref - expected_ref) ** 2 / expected_ref)
                + np.sum((cur - expected_cur) ** 2 / expected_cur)
            )
            p_value = float(chdtrc(ref.size - 1, statistic))
        return TestResult(
            test=self.name,
            statistic=statistic,
            p_value=min(1.0, max(0.0, p_value)),
            effect=math.sqrt(statistic / (n + m)),
            effect_name="cramers_v",
            effect_noise=math.sqrt((ref.size - 1) / (n + m)),
            bins=int(ref.size),
        )
