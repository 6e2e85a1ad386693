"""Two-proportion Z-test for two-valued (binary) columns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fedloop.core.errors import InvalidInput
from fedloop.learn.profiles import ColumnSummary
from fedloop.monitoring.drift._bins import binary_counts, check_pair
from fedloop.monitoring.drift.base import SummaryKind, TestResult

__all__ = ["ProportionZTest", "cohens_h"]


def cohens_h(p1: float, p2: float) -> float:
    """Return Cohen's h, ``|2 asin(sqrt(p1)) - 2 asin(sqrt(p2))|``, in [0, pi].

    Parameters
    ----------
    p1, p2 : float
        Two proportions in [0, 1].

    Returns
    -------
    float
        The effect size; about 0.2 is "small", 0.5 "medium" (Cohen, 1988). It weighs a change
        from 1% to 3% (h = 0.15) more than one from 50% to 52% (h = 0.04).
    """
    return abs(2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2)))


@dataclass(frozen=True)
class ProportionZTest:
    """Pooled two-proportion Z-test of a two-valued column, with Cohen's h as the effect.

    Reads categorical columns with two categories (union of both sides; the later one in
    sorted order counts as the success) and numeric columns whose values all sit at the
    common minimum or maximum (0/1 flags), which the exact moments prove without rows. With
    ``continuity=True`` Yates' correction, ``0.5 (1/n + 1/m)``, is taken off the difference:
    conservative where counts are small, negligible at large n. The p-value is two-sided.
    ``2 asin(sqrt(p))`` has variance ``1/n`` whatever ``p``, so with no drift Cohen's h is the
    absolute value of a normal with variance ``1/n + 1/m``: its noise is
    ``sqrt(2/pi) sqrt(1/n + 1/m)``.

    Parameters
    ----------
    continuity : bool, default True
        Apply Yates' continuity correction.
    """

    continuity: bool = True
    name: str = field(default="ztest", init=False)
    kinds: frozenset[SummaryKind] = field(default=frozenset({"numeric", "categorical"}), init=False)
    has_p_value: bool = field(default=True, init=False)

    def __call__(
        self, reference: ColumnSummary, current: ColumnSummary, *, column: str = "column"
    ) -> TestResult:
        """Test whether the success rate of a two-valued column changed.

        Parameters
        ----------
        reference, current : NumericSummary or CategoricalSummary
            The column's summaries; together they must take exactly two values.
        column : str, default "column"
            Column name, shown in errors.

        Returns
        -------
        TestResult
            ``statistic`` = z (current minus reference), two-sided ``p_value``,
            ``effect`` = Cohen's h.

        Raises
        ------
        InvalidInput
            For empty, malformed or differing summaries, or a column that is not two-valued.
        """
        check_pair(reference, current, column=column, test=self.name, kinds=self.kinds)
        counts = binary_counts(reference, current)
        if counts is None:
            raise InvalidInput(
                f"column {column!r} is not two-valued, so the Z-test for proportions does "
                "not apply.",
                field=column,
                hint="Use the Z-test for binary columns only; 'auto' picks a test per kind.",
            )
        k_ref, n, k_cur, m = counts
        p_ref, p_cur = k_ref / n, k_cur / m
        pooled = (k_ref + k_cur) / (n + m)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
        diff = abs(p_cur - p_ref)
        if self.continuity:
            diff = max(0.0, diff - 0.5 * (1 / n + 1 / m))
        z = 0.0 if se == 0 else math.copysign(diff / se, p_cur - p_ref)
        return TestResult(
            test=self.name,
            statistic=z,
            p_value=math.erfc(abs(z) / math.sqrt(2)),
            effect=cohens_h(p_ref, p_cur),
            effect_name="cohens_h",
            effect_noise=math.sqrt(2 / math.pi) * math.sqrt(1 / n + 1 / m),
            bins=2,
        )
