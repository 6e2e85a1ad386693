"""check_drift: the W-DRIFT goals, prediction drift, untested columns, errors and the report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pytest
from _summaries import gaussian_columns, profiles

from fedloop.core import InvalidInput
from fedloop.core.config import DriftConfig
from fedloop.learn.profiles import DataProfile, profile_columns, profile_like
from fedloop.monitoring import check_drift

ROWS, FEATURES = 100_000, 30
DRIFTED = ("f0", "f1", "f2", "f3")


@dataclass(frozen=True)
class WDrift:
    reference: DataProfile
    same: DataProfile
    drifted: DataProfile


def _w_drift_current(
    columns: dict[str, np.ndarray], reference: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """Apply the W-DRIFT changes: f0 +0.5 std, f1 -0.5 std, f2 x1.5, f3 uniform over its range."""
    out = dict(columns)
    out["f0"] = columns["f0"] + 0.5 * reference["f0"].std()
    out["f1"] = columns["f1"] - 0.5 * reference["f1"].std()
    out["f2"] = columns["f2"].mean() + 1.5 * (columns["f2"] - columns["f2"].mean())
    lo, hi = reference["f3"].min(), reference["f3"].max()
    out["f3"] = np.random.default_rng(seed).uniform(lo, hi, size=columns["f3"].size)
    return out


@pytest.fixture(scope="module")
def w_drift() -> WDrift:
    """Profiles of the W-DRIFT scenario on 30 standard normal features, 100k rows per side."""
    rng = np.random.default_rng(0)
    ref_cols = gaussian_columns(ROWS, FEATURES, rng)
    cur_cols = gaussian_columns(ROWS, FEATURES, rng)
    reference = profile_columns(ref_cols)
    return WDrift(
        reference=reference,
        same=profile_like(reference, cur_cols),
        drifted=profile_like(reference, _w_drift_current(cur_cols, ref_cols, seed=1)),
    )


def test_w_drift_flags_exactly_the_four_changed_features(w_drift: WDrift) -> None:
    """At 100k rows features 0-3 and no others are flagged, and the verdict is drift."""
    # Act
    report = check_drift(w_drift.reference, w_drift.drifted)

    # Assert
    assert report.drifted_columns == DRIFTED
    assert report.verdict == "drift"
    assert report.num_tested == FEATURES


def test_a_few_strong_features_are_not_hidden_by_a_share_rule(w_drift: WDrift) -> None:
    """4 of 30 drifting is under Evidently's 50% share, yet the verdict is drift."""
    # Act
    report = check_drift(w_drift.reference, w_drift.drifted)

    # Assert
    assert report.share_drifted == pytest.approx(4 / 30)
    assert report.share_drifted < 0.5
    assert report.verdict == "drift"


def test_same_distribution_at_100k_flags_nothing(w_drift: WDrift) -> None:
    """Two 100k samples of one distribution: 0 of 30 flagged, verdict no_drift."""
    # Act
    report = check_drift(w_drift.reference, w_drift.same)

    # Assert
    assert report.num_drifted == 0
    assert report.verdict == "no_drift"


def test_small_same_distribution_checks_rarely_flag() -> None:
    """Over 100 1k-vs-1k checks of 30 unchanged features, <= 0.05 false flags per check."""
    # Arrange
    rng = np.random.default_rng(3)
    false_flags = 0

    # Act
    for _ in range(100):
        reference, current = profiles(
            gaussian_columns(1_000, FEATURES, rng), gaussian_columns(1_000, FEATURES, rng)
        )
        false_flags += check_drift(reference, current).num_drifted

    # Assert
    print(f"1k-vs-1k: {false_flags / 100:.3f} false flags per check over 100 trials")
    assert false_flags / 100 <= 0.05


def test_check_of_30_columns_takes_milliseconds(w_drift: WDrift) -> None:
    """Time check_drift on 30 columns x 100 bins (printed, not asserted)."""
    # Arrange
    check_drift(w_drift.reference, w_drift.drifted)  # warm-up: imports scipy.special
    times = []

    # Act
    for _ in range(20):
        start = time.perf_counter()
        report = check_drift(w_drift.reference, w_drift.drifted)
        times.append(time.perf_counter() - start)

    # Assert
    print(f"check_drift, 30 columns x 100 bins: median {1e3 * float(np.median(times)):.2f} ms")
    assert report.num_tested == FEATURES


def test_prediction_columns_report_prediction_drift() -> None:
    """A shifted prediction column is flagged with role 'prediction' and sets prediction_drift."""
    # Arrange
    rng = np.random.default_rng(4)
    ref = {"x": rng.normal(size=5_000), "score": rng.beta(2, 8, size=5_000)}
    cur = {"x": rng.normal(size=5_000), "score": rng.beta(4, 6, size=5_000)}
    reference, current = profiles(ref, cur)

    # Act
    report = check_drift(reference, current, prediction_columns=["score"])

    # Assert
    score = report.find_column("score")
    assert score is not None
    assert score.role == "prediction"
    assert score.drifted
    assert report.prediction_drift
    assert report.drifted_columns == ("score",)


def test_binary_and_categorical_columns_get_their_tests() -> None:
    """A 0/1 flag gets the Z-test and a 4-category column chi-square, both flagged on a shift."""
    # Arrange
    rng = np.random.default_rng(5)
    cats = np.array(["card", "cash", "wire", "crypto"], dtype=object)
    ref = {"flag": (rng.random(5_000) < 0.02) * 1.0, "method": rng.choice(cats, 5_000)}
    cur = {
        "flag": (rng.random(5_000) < 0.06) * 1.0,
        "method": rng.choice(cats, 5_000, p=[0.1, 0.2, 0.3, 0.4]),
    }
    reference, current = profiles(ref, cur, categorical=["method"])

    # Act
    report = check_drift(reference, current)

    # Assert
    tests = {c.column: (c.kind, c.test, c.effect_name, c.drifted) for c in report.columns}
    assert tests["flag"] == ("binary", "ztest", "cohens_h", True)
    assert tests["method"] == ("categorical", "chi2", "js_distance", True)


def test_missing_and_empty_columns_are_reported_not_tested() -> None:
    """Missing, empty, too-small and reference-less columns are listed with a reason."""
    # Arrange
    rng = np.random.default_rng(6)
    ref_cols = {"a": rng.normal(size=500), "b": rng.normal(size=500), "c": rng.normal(size=500)}
    reference = profile_columns(ref_cols)
    cur_cols = {"a": rng.normal(size=500), "b": np.full(500, np.nan), "c": rng.normal(size=500)}
    current = profile_like(reference, cur_cols)
    columns = dict(current.columns)
    columns["new"] = columns.pop("c")
    current = DataProfile(columns=columns, num_rows=500)

    # Act
    report = check_drift(reference, current)

    # Assert
    reasons = {c.column: c.reason for c in report.columns if not c.tested}
    assert set(reasons) == {"b", "c", "new"}
    assert "no current rows" in reasons["b"]
    assert "missing from the current profile" in reasons["c"]
    assert "not in the reference" in reasons["new"]
    assert report.num_tested == 1


def test_too_few_rows_are_not_tested() -> None:
    """Fewer than min_rows rows on a side: reported, not tested."""
    # Arrange
    rng = np.random.default_rng(7)
    reference, current = profiles({"a": rng.normal(size=500)}, {"a": rng.normal(5, size=10)})

    # Act
    report = check_drift(reference, current)

    # Assert
    assert not report.columns[0].tested
    assert "too few rows (10 < min_rows 30)" in report.columns[0].reason
    assert report.verdict == "no_drift"


def test_current_not_on_reference_edges_is_refused() -> None:
    """A numeric column binned on other edges raises InvalidInput naming the column."""
    # Arrange
    rng = np.random.default_rng(8)
    reference = profile_columns({"amount": rng.normal(size=500)})
    current = profile_columns({"amount": rng.normal(size=500)})

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'amount'.*edges") as err:
        check_drift(reference, current)
    assert err.value.field == "amount"


def test_unknown_prediction_column_is_refused() -> None:
    """A prediction column in neither profile raises InvalidInput on prediction_columns."""
    # Arrange
    reference, current = profiles({"a": np.arange(100.0)}, {"a": np.arange(100.0)})

    # Act / Assert
    with pytest.raises(InvalidInput, match="prediction_columns") as err:
        check_drift(reference, current, prediction_columns=["score"])
    assert err.value.field == "prediction_columns"


def test_distance_only_config_has_no_p_values(w_drift: WDrift) -> None:
    """numeric_test='psi' flags on PSI alone and leaves adjusted p-values empty."""
    # Act
    report = check_drift(w_drift.reference, w_drift.drifted, config=DriftConfig(numeric_test="psi"))

    # Assert
    assert all(c.test == "psi" and c.adjusted_p_value is None for c in report.columns)
    assert set(report.drifted_columns) <= set(DRIFTED)
    assert {"f0", "f1", "f3"} <= set(report.drifted_columns)


def test_report_is_json_ready(w_drift: WDrift) -> None:
    """to_dict() serialises with json (no NaN, no numpy scalars)."""
    # Act
    data = check_drift(w_drift.reference, w_drift.drifted).to_dict()

    # Assert
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["drifted_columns"] == list(DRIFTED)
    assert data["columns"][0]["effect_name"] == "wasserstein_std"


def test_multivariate_runs_only_with_samples_and_when_enabled() -> None:
    """The domain classifier runs when both profiles carry a sample and the config allows it."""
    # Arrange
    rng = np.random.default_rng(9)
    ref = gaussian_columns(2_000, 3, rng)
    cur = gaussian_columns(2_000, 3, rng)
    with_samples = profiles(ref, cur, sample_size=500)
    without = profiles(ref, cur)

    # Act
    ran = check_drift(*with_samples)
    disabled = check_drift(*with_samples, config=DriftConfig(multivariate=False))
    no_sample = check_drift(*without)

    # Assert
    assert ran.multivariate is not None
    assert not ran.multivariate.drifted
    assert ran.multivariate.columns == ("f0", "f1", "f2")
    assert disabled.multivariate is None
    assert no_sample.multivariate is None


def test_joint_change_is_caught_by_the_multivariate_test() -> None:
    """Flipping a correlation leaves every marginal unchanged but the verdict becomes drift."""
    # Arrange
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 4_000))
    noise = 0.3 * rng.normal(size=(2, 4_000))
    ref = {"a": x[0], "b": x[0] + noise[0]}
    cur = {"a": x[1], "b": -x[1] + noise[1]}
    reference, current = profiles(ref, cur, sample_size=2_000)

    # Act
    report = check_drift(reference, current)

    # Assert
    assert report.num_drifted == 0
    assert report.multivariate is not None
    assert report.multivariate.drifted
    assert report.verdict == "drift"


@pytest.mark.slow
def test_w_drift_on_the_fraudlike_data() -> None:
    """The W-DRIFT workload itself (make_classification, 100k per side) meets its goals."""
    # Arrange
    from fedloop.scenarios.fraud.data import make_fraudlike

    data = make_fraudlike(200_000, seed=0)
    rows = np.random.default_rng(1).permutation(len(data.x_train))
    ref_x = data.x_train[rows[:ROWS]].astype(np.float64)
    cur_x = np.concatenate([data.x_train[rows[ROWS:]], data.x_test])[:ROWS].astype(np.float64)
    ref_cols = {f"f{j}": ref_x[:, j] for j in range(FEATURES)}
    cur_cols = {f"f{j}": cur_x[:, j] for j in range(FEATURES)}
    reference = profile_columns(ref_cols)

    # Act
    start = time.perf_counter()
    drifted = profile_like(reference, _w_drift_current(cur_cols, ref_cols, seed=2))
    report = check_drift(reference, drifted)
    elapsed = time.perf_counter() - start
    same = check_drift(reference, profile_like(reference, cur_cols))

    # Assert
    print(f"W-DRIFT profile_like + check_drift: {elapsed:.3f} s")
    assert report.drifted_columns == DRIFTED
    assert report.verdict == "drift"
    assert same.num_drifted == 0
