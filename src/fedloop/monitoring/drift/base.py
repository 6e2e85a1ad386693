"""The DriftTest interface and the result every drift test returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from fedloop.learn.profiles import ColumnSummary

__all__ = ["ColumnKind", "DriftTest", "SummaryKind", "TestResult"]

#: The ``kind`` of a column summary: what a test can read.
SummaryKind = Literal["numeric", "categorical"]
#: How a column is classified to choose its test: two-valued columns are "binary".
ColumnKind = Literal["numeric", "binary", "categorical"]


@dataclass(frozen=True)
class TestResult:
    """What one drift test says about one column.

    Attributes
    ----------
    test : str
        Name of the test (``"ks"``, ``"psi"``, ``"chi2"``, ``"jensen_shannon"``,
        ``"wasserstein"``, ``"ztest"``).
    statistic : float
        The test statistic (KS D, PSI, chi-square, JS distance, normalized Wasserstein, z).
    p_value : float or None
        Uncorrected p-value; None for distance-only tests.
    effect : float
        The test's own effect size, in the unit named by ``effect_name`` (0 when the two
        summaries are identical).
    effect_name : str
        Unit of ``effect``, e.g. ``"ks_distance"``, ``"wasserstein_std"``, ``"cohens_h"``.
    effect_noise : float
        The value ``effect`` is expected to take when nothing drifted, from sampling noise
        alone at these two sample sizes (asymptotic formula): about 0.054 for the normalized
        Wasserstein of two 1,000-row samples of a normal column, 0.005 at 100,000. Effect
        floors are applied on top of it, so small samples need a larger observed effect.
    bins : int
        Bins or categories the statistic was computed on (after any merging).
    """

    __test__ = False  # a dataclass named Test*, not a pytest class

    test: str
    statistic: float
    p_value: float | None
    effect: float
    effect_name: str
    effect_noise: float
    bins: int

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready mapping.

        Returns
        -------
        dict
            The attributes by name.
        """
        return {
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "effect": self.effect,
            "effect_name": self.effect_name,
            "effect_noise": self.effect_noise,
            "bins": self.bins,
        }


@runtime_checkable
class DriftTest(Protocol):
    """A two-sample drift test on mergeable column summaries (never raw rows).

    Attributes
    ----------
    name : str
        Stable name, as used in ``DriftConfig`` (``"ks"``, ``"chi2"``...).
    kinds : frozenset of {"numeric", "categorical"}
        Summary kinds the test reads.
    has_p_value : bool
        Whether the test returns a p-value (False: a distance compared with a threshold).
    """

    @property
    def name(self) -> str:
        """Stable name of the test."""
        ...

    @property
    def kinds(self) -> frozenset[SummaryKind]:
        """Summary kinds the test reads."""
        ...

    @property
    def has_p_value(self) -> bool:
        """Whether the test returns a p-value."""
        ...

    def __call__(
        self, reference: ColumnSummary, current: ColumnSummary, *, column: str = "column"
    ) -> TestResult:
        """Compare the current summary of a column with its reference summary.

        Parameters
        ----------
        reference : NumericSummary or CategoricalSummary
            The column in the reference profile.
        current : NumericSummary or CategoricalSummary
            The same column in the current profile (numeric: on the reference's edges).
        column : str, default "column"
            Column name, shown in errors.

        Returns
        -------
        TestResult
            Statistic, p-value (or None) and effect size.

        Raises
        ------
        InvalidInput
            When a summary is empty or malformed, the two kinds differ, the test does not
            read this kind, or numeric edges differ.
        """
        ...
