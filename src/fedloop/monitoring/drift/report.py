"""The result of one drift check: per-column findings and the data-set verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from fedloop.monitoring.drift.base import ColumnKind
from fedloop.monitoring.drift.multivariate import MultivariateResult

__all__ = ["ColumnDrift", "DriftReport"]


@dataclass(frozen=True)
class ColumnDrift:
    """What the check found for one column.

    Attributes
    ----------
    column : str
        Column name.
    role : {"feature", "prediction"}
        "prediction" for the columns named in ``prediction_columns`` (prediction drift).
    kind : {"numeric", "binary", "categorical"} or None
        How the column was classified; None when it could not be (missing on one side).
    test : str or None
        Test run; None when the column was not tested.
    statistic : float or None
        The test statistic.
    p_value : float or None
        Raw p-value; None for distance-only tests and untested columns.
    adjusted_p_value : float or None
        p-value after the multiple-testing correction of the check.
    effect : float or None
        Effect size that was compared with ``effect_threshold``.
    effect_name : str or None
        Unit of ``effect`` (``"wasserstein_std"``, ``"js_distance"``, ``"cohens_h"``, ``"psi"``).
    effect_threshold : float or None
        What ``effect`` had to reach: the practical floor (p-value tests) or the distance
        threshold (distance-only tests) from the config, plus ``effect_noise``.
    effect_noise : float or None
        The effect expected from sampling noise alone at these sample sizes.
    drifted : bool
        Whether the column is flagged.
    reference_count, current_count : int
        Rows counted on each side (0 when the column is missing there).
    reason : str
        A short human explanation of the decision.
    """

    column: str
    role: Literal["feature", "prediction"]
    kind: ColumnKind | None
    test: str | None
    statistic: float | None
    p_value: float | None
    adjusted_p_value: float | None
    effect: float | None
    effect_name: str | None
    effect_threshold: float | None
    effect_noise: float | None
    drifted: bool
    reference_count: int
    current_count: int
    reason: str

    @property
    def tested(self) -> bool:
        """Whether a test ran on the column."""
        return self.test is not None


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift findings and the verdict of the whole data set.

    The verdict is "drift" as soon as one column (feature or prediction) is flagged after
    the multiple-testing correction, or the multivariate test flags. A share-of-columns rule
    (Evidently's preset needs half of the columns) hides a few strongly drifting features:
    four clearly shifted columns out of thirty are a real change in what the model sees, and
    the correction plus the effect floors already keep unchanged columns quiet.

    Attributes
    ----------
    columns : tuple of ColumnDrift
        One entry per column of the reference, then columns only the current has.
    verdict : {"drift", "no_drift"}
        The data-set level verdict.
    num_tested : int
        Columns a test ran on.
    num_drifted : int
        Columns flagged.
    share_drifted : float
        ``num_drifted / num_tested`` (0 when nothing was tested).
    correction : str
        Multiple-testing correction used.
    alpha : float
        Significance level used.
    prediction_drift : bool
        Whether a prediction column is flagged.
    multivariate : MultivariateResult or None
        The domain-classifier result, when it ran.
    """

    columns: tuple[ColumnDrift, ...]
    verdict: Literal["drift", "no_drift"]
    num_tested: int
    num_drifted: int
    share_drifted: float
    correction: str
    alpha: float
    prediction_drift: bool
    multivariate: MultivariateResult | None = None

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        """Names of the flagged columns, in report order."""
        return tuple(c.column for c in self.columns if c.drifted)

    def find_column(self, name: str) -> ColumnDrift | None:
        """Return the finding for one column, or None when the report has no such column.

        Parameters
        ----------
        name : str
            Column name.

        Returns
        -------
        ColumnDrift or None
            The column's entry.
        """
        for entry in self.columns:
            if entry.column == name:
                return entry
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready mapping (no NaN, no numpy scalars).

        Returns
        -------
        dict
            Every attribute, with ``columns`` as a list of mappings and ``drifted_columns``.
        """
        return {
            "verdict": self.verdict,
            "num_tested": self.num_tested,
            "num_drifted": self.num_drifted,
            "share_drifted": self.share_drifted,
            "correction": self.correction,
            "alpha": self.alpha,
            "prediction_drift": self.prediction_drift,
            "drifted_columns": list(self.drifted_columns),
            "columns": [asdict(c) for c in self.columns],
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
        }
