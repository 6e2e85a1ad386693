"""The documented default choice of drift test by column kind and sample size.

Default rules (``DriftConfig`` with every ``*_test`` on ``"auto"``):

==============================  ===========================  ==================================
column kind                     p-value test                 practical effect floor
==============================  ===========================  ==================================
numeric                         Kolmogorov-Smirnov (binned)  Wasserstein >= 0.1 reference std
binary (two values, any type)   two-proportion Z-test        Cohen's h >= 0.1
categorical (> 2 categories)    chi-square (sparse merged)   Jensen-Shannon distance >= 0.1
==============================  ===========================  ==================================

A column is flagged only when its p-value, corrected across all p-value tests of the check
(Benjamini-Hochberg by default), is below ``alpha`` AND its effect reaches the floor plus the
effect's noise level, the value it takes on average when nothing drifted at these two sample
sizes (``TestResult.effect_noise``, an asymptotic formula per test).

Why both conditions. A p-value answers "is there any difference at all?", and at large n the
answer is always yes: with 100k rows per side KS calls a 0.02-std mean shift significant, and
real data (rounding, seasonality, a new client) is never exactly stationary, so a p-value-only
monitor alarms on every column. A distance alone has the opposite problem: on small windows
its sampling noise is large (two 1,000-row samples of one normal column are 0.054 reference
std apart in Wasserstein on average, 0.12 at the 99th percentile), so a fixed threshold either
alarms on noise at small n or misses real drift at large n. With both, the p-value binds at
small n (noise is not significant) and the floor binds at large n (tiny shifts are significant
but not material); Evidently instead switches from tests to distances at n = 1000.

Why the noise term. With a corrected p-value alone the expected number of falsely flagged
columns per check equals ``alpha`` (0.05), and the columns that pass by chance at 1,000 rows
look like 0.1-0.2 std shifts, so a plain 0.1 floor removes few of them. Asking the effect to
exceed its own noise level by the floor cuts them about fourfold (measured: 0.04 -> 0.01 false
flags per 1k-vs-1k check of 30 unchanged columns) and costs nothing at large n, where the
noise is tiny (0.005 std at 100k rows). It also makes the thresholds depend on the sample
size in a documented way rather than through a switch.

Why these tests. KS is distribution-free and sensitive to shifts in location and scale; its
binned form is exact at the bin edges and conservative in between. Normalized Wasserstein
reads in reference standard deviations, so one floor fits every numeric column whatever its
unit. For two-valued columns the Z-test is the most powerful test of a change in rate, and
Cohen's h weighs a rate moving from 1% to 3% (h = 0.15) more than one from 50% to 52%
(h = 0.04), as a fraud or failure rate should be. Chi-square handles any number of categories
once sparse ones are pooled so that expected counts reach 5; Jensen-Shannon is bounded in
[0, 1], symmetric and needs no smoothing of categories missing on one side.

Sample size. Columns with fewer than ``min_rows`` (30) rows on either side are reported and
not tested: the asymptotic p-values (Kolmogorov, normal, chi-square) are unreliable there and
every effect size is mostly noise. Chi-square merges bins until every expected count is at
least 5, so a small window is tested on coarser bins; PSI and Jensen-Shannon always merge a
numeric column into ``distance_bins`` (10) groups of equal reference mass, because on 100 fine
bins their noise at 1k rows alone exceeds the usual thresholds.

Distance-only choices (``"psi"``, ``"jensen_shannon"``, ``"wasserstein"``) flag when the
distance reaches its threshold (PSI 0.2, JS 0.1, Wasserstein 0.1 std) plus its noise, and take
no part in the multiple-testing correction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from fedloop.core.config import DriftConfig
from fedloop.learn.profiles import ColumnSummary
from fedloop.monitoring.drift._bins import binary_counts
from fedloop.monitoring.drift.base import ColumnKind, DriftTest
from fedloop.monitoring.drift.chi2 import ChiSquareTest
from fedloop.monitoring.drift.jensen_shannon import JensenShannonTest
from fedloop.monitoring.drift.ks import KSTest
from fedloop.monitoring.drift.psi import PSITest
from fedloop.monitoring.drift.wasserstein import WassersteinTest
from fedloop.monitoring.drift.ztest import ProportionZTest

__all__ = ["DRIFT_TESTS", "DriftRule", "choose_rule", "column_kind"]

#: Every drift test with its default parameters, by name.
DRIFT_TESTS: Mapping[str, DriftTest] = MappingProxyType(
    {
        test.name: test
        for test in (
            KSTest(),
            PSITest(),
            ChiSquareTest(),
            JensenShannonTest(),
            WassersteinTest(),
            ProportionZTest(),
        )
    }
)


@dataclass(frozen=True)
class DriftRule:
    """How one column is judged: a test, and the effect that must reach a threshold.

    Attributes
    ----------
    test : DriftTest
        The test run on the column.
    threshold : float
        The effect floor (p-value tests) or the distance threshold (distance-only tests).
    effect_test : DriftTest or None
        Where the effect comes from when it is not the test's own (KS takes Wasserstein's,
        chi-square on categories takes Jensen-Shannon's); None: the test's own effect.
    """

    test: DriftTest
    threshold: float
    effect_test: DriftTest | None = None


def column_kind(reference: ColumnSummary, current: ColumnSummary) -> ColumnKind:
    """Classify a column for the choice of test.

    Parameters
    ----------
    reference, current : NumericSummary or CategoricalSummary
        The column's two summaries, of the same kind.

    Returns
    -------
    {"numeric", "binary", "categorical"}
        "binary" when both sides together take exactly two values (two categories, or
        numeric values all at the common minimum or maximum); otherwise the summary's kind.
    """
    if binary_counts(reference, current) is not None:
        return "binary"
    return reference.kind


def choose_rule(kind: ColumnKind, config: DriftConfig) -> DriftRule:
    """Return the rule for a column kind under a drift config (see the module docstring).

    Parameters
    ----------
    kind : {"numeric", "binary", "categorical"}
        From :func:`column_kind`.
    config : DriftConfig
        The test choices and thresholds.

    Returns
    -------
    DriftRule
        Test, threshold and, for p-value tests, the effect-size test.
    """
    wasserstein = WassersteinTest()
    js = JensenShannonTest(num_bins=config.distance_bins)
    psi = PSITest(num_bins=config.distance_bins)
    distance_rules = {
        "psi": DriftRule(psi, config.psi_threshold),
        "jensen_shannon": DriftRule(js, config.min_effect_categorical),
        "wasserstein": DriftRule(wasserstein, config.min_effect_numeric),
    }
    if kind == "numeric":
        name: str = config.numeric_test
        if name in ("auto", "ks"):
            return DriftRule(KSTest(), config.min_effect_numeric, wasserstein)
        if name == "chi2":
            return DriftRule(ChiSquareTest(), config.min_effect_numeric, wasserstein)
        return distance_rules[name]
    name = config.binary_test if kind == "binary" else config.categorical_test
    if kind == "binary" and name in ("auto", "ztest"):
        return DriftRule(ProportionZTest(), config.min_effect_binary)
    if name in ("auto", "chi2"):
        return DriftRule(ChiSquareTest(), config.min_effect_categorical, js)
    return distance_rules[name]
