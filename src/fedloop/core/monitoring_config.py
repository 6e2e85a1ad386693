"""The [monitoring] section of fedloop.toml: windows, drift tests and their thresholds, alerts."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from fedloop.core.config_section import Section

__all__ = ["DriftConfig", "MonitoringConfig"]


_NumericDriftTest = Literal["auto", "ks", "psi", "wasserstein", "jensen_shannon", "chi2"]
_CategoricalDriftTest = Literal["auto", "chi2", "psi", "jensen_shannon"]
_BinaryDriftTest = Literal["auto", "ztest", "chi2", "psi", "jensen_shannon"]


class DriftConfig(Section):
    """How drift between a reference profile and a current window is tested.

    A column is flagged when its multiple-testing-corrected p-value is below ``alpha`` AND its
    effect size reaches the practical floor of its kind plus the effect's sampling-noise level
    at the two sample sizes; distance-only tests (PSI, Jensen-Shannon, Wasserstein as the
    test) flag on their threshold (plus noise) alone. See ``fedloop.monitoring.drift.select``
    for the default choice of test per column kind and sample size.

    Parameters
    ----------
    alpha : float, default 0.05
        Significance level applied to the corrected p-values, in [0, 1].
    correction : {"bh", "bonferroni", "holm", "none"}, default "bh"
        Multiple-testing correction across all p-value tests of one check (Benjamini-Hochberg
        controls the false discovery rate; Bonferroni and Holm the family-wise error rate).
    numeric_test : {"auto", "ks", "psi", "wasserstein", "jensen_shannon", "chi2"}, default "auto"
        Test for numeric columns; "auto" is Kolmogorov-Smirnov with a Wasserstein floor.
    categorical_test : {"auto", "chi2", "psi", "jensen_shannon"}, default "auto"
        Test for categorical columns with more than two categories; "auto" is chi-square with
        a Jensen-Shannon floor.
    binary_test : {"auto", "ztest", "chi2", "psi", "jensen_shannon"}, default "auto"
        Test for two-valued columns (numeric or categorical); "auto" is the two-proportion
        Z-test with a Cohen's h floor.
    min_effect_numeric : float, default 0.1
        Practical floor (and the threshold of ``numeric_test="wasserstein"``): Wasserstein
        distance in reference standard deviations.
    min_effect_categorical : float, default 0.1
        Practical floor (and the threshold wherever Jensen-Shannon is the test):
        Jensen-Shannon distance (base 2), in [0, 1].
    min_effect_binary : float, default 0.1
        Practical floor of the Z-test: Cohen's h between the two proportions, in [0, pi].
    psi_threshold : float, default 0.2
        Population stability index at or above which a PSI-tested column is flagged.
    distance_bins : int, default 10
        PSI and Jensen-Shannon merge a numeric column's bins into this many groups of equal
        reference mass (with 100 bins both are dominated by sampling noise below ~10k rows).
    min_rows : int, default 30
        Columns with fewer rows in the reference or the current profile are reported, not tested.
    multivariate : bool, default True
        Run the domain-classifier test when both profiles carry a row sample.
    multivariate_max_rows : int, default 2000
        Rows per side the domain classifier uses at most.
    multivariate_min_auc : float, default 0.55
        Practical floor of the domain classifier's held-out AUC, in [0.5, 1].
    seed : int, default 0
        Seeds the domain classifier's subsampling, split and model.
    """

    alpha: float = Field(default=0.05, ge=0, le=1, description="Significance level, in [0, 1].")
    correction: Literal["bh", "bonferroni", "holm", "none"] = Field(
        default="bh", description="Multiple-testing correction across the p-values of a check."
    )
    numeric_test: _NumericDriftTest = Field(default="auto", description="Test of numeric columns.")
    categorical_test: _CategoricalDriftTest = Field(
        default="auto", description="Test of categorical columns with more than two categories."
    )
    binary_test: _BinaryDriftTest = Field(default="auto", description="Test of two-valued columns.")
    min_effect_numeric: float = Field(
        default=0.1,
        ge=0,
        le=100,
        description="Wasserstein floor, in reference standard deviations.",
    )
    min_effect_categorical: float = Field(
        default=0.1, ge=0, le=1, description="Jensen-Shannon distance floor (base 2), in [0, 1]."
    )
    min_effect_binary: float = Field(
        default=0.1, ge=0, le=3.1416, description="Cohen's h floor of the Z-test, in [0, pi]."
    )
    psi_threshold: float = Field(
        default=0.2, ge=0, le=100, description="PSI at or above which a column is flagged."
    )
    distance_bins: int = Field(
        default=10, ge=2, le=10_000, description="Groups PSI and Jensen-Shannon merge bins into."
    )
    min_rows: int = Field(
        default=30, ge=1, le=1_000_000_000, description="Fewer rows: reported, not tested."
    )
    multivariate: bool = Field(default=True, description="Run the domain-classifier test.")
    multivariate_max_rows: int = Field(
        default=2_000, ge=20, le=10_000_000, description="Rows per side the classifier uses."
    )
    multivariate_min_auc: float = Field(
        default=0.55, ge=0.5, le=1, description="Held-out AUC floor of the domain classifier."
    )
    seed: int = Field(default=0, ge=0, description="Seed of the domain classifier.")


_URL_PATTERN = r"^https?://\S+$"


class MonitoringConfig(Section):
    """The monitor: windows of served predictions, drift, delayed labels and alerts.

    Parameters
    ----------
    drift : DriftConfig
        How drift is tested.
    window_rows : int, default 10000
        A window closes (and is checked) after this many predictions.
    window_seconds : float or None, default None
        When set, windows are by time instead: aligned spans of this many seconds.
    reference_bins : int, default 100
        Bins per numeric column of a reference profile (at reference quantiles).
    reference_sample_rows : int, default 2000
        Rows a reference profile keeps as a uniform sample for the multivariate test
        (0 keeps none).
    label_ttl_s : float, default 86400
        How long a prediction waits for its delayed label before it is dropped.
    max_pending_predictions : int, default 1000000
        Predictions held while waiting for labels; the oldest are dropped beyond this.
    webhooks : tuple of str, default ()
        URLs (http or https) that alerts are POSTed to; the environment takes a
        comma-separated list.
    performance_window_labels : int, default 1000
        A performance window closes after this many labelled predictions.
    performance_tolerance : float, default 0.05
        A window whose AUC is more than this below the version's registered ``auc`` metric
        is ``degraded``.
    host : str, default "127.0.0.1"
        Interface of ``fedloop monitor serve``.
    port : int, default 8500
        Its TCP port.
    max_body_bytes : int, default 64 MiB
        Largest ingest body taken.
    """

    drift: DriftConfig = DriftConfig()
    window_rows: int = Field(
        default=10_000, ge=1, le=1_000_000_000, description="Predictions per window."
    )
    window_seconds: float | None = Field(
        default=None, gt=0, le=31_536_000, description="Seconds after which a window closes."
    )
    reference_bins: int = Field(
        default=100, ge=2, le=100_000, description="Bins per numeric reference column."
    )
    reference_sample_rows: int = Field(
        default=2_000,
        ge=0,
        le=10_000_000,
        description="Reference rows kept for multivariate tests.",
    )
    label_ttl_s: float = Field(
        default=86_400.0, gt=0, le=31_536_000, description="Seconds a prediction waits for a label."
    )
    max_pending_predictions: int = Field(
        default=1_000_000, ge=1, le=1_000_000_000, description="Predictions held awaiting labels."
    )
    webhooks: tuple[str, ...] = Field(default=(), description="Alert webhook URLs.")
    performance_window_labels: int = Field(
        default=1_000, ge=1, le=100_000_000, description="Labelled predictions per window."
    )
    performance_tolerance: float = Field(
        default=0.05, ge=0, le=1, description="AUC drop below the registered AUC that degrades."
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="Monitor interface.")
    port: int = Field(default=8500, ge=0, le=65535, description="Monitor TCP port.")
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, le=2**31, description="Largest ingest body."
    )

    @field_validator("webhooks", mode="before")
    @classmethod
    def _split_webhooks(cls, value: Any) -> Any:
        # The environment can only hold strings: FEDLOOP_MONITORING__WEBHOOKS="https://a,https://b".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhooks")
    @classmethod
    def _check_webhooks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not re.fullmatch(_URL_PATTERN, url):
                raise ValueError(f"each webhook must be an http(s) URL; got {url!r}")
        return value
