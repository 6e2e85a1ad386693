"""Delayed-label performance: joining labels to predictions, metrics and windows."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score

from fedloop.core import InvalidInput
from fedloop.monitoring.performance import (
    LabelJoiner,
    PerformanceAccumulator,
    PerformanceSummary,
    WindowedPerformance,
)


def _scored(seed: int, rows: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Scores in [0, 1] and labels drawn from them (a calibrated model)."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(2.0, 5.0, size=rows)
    labels = (rng.random(rows) < scores).astype(np.int64)
    return scores, labels


def _assert_summaries_close(got: PerformanceSummary, want: PerformanceSummary) -> None:
    """Assert equal counts, and float sums equal up to rounding."""
    assert (got.count, got.positives, got.auc) == (want.count, want.positives, want.auc)
    assert (got.precision, got.recall, got.f1) == (want.precision, want.recall, want.f1)
    assert got.brier == pytest.approx(want.brier)
    assert got.ece == pytest.approx(want.ece)
    for a, b in zip(got.reliability, want.reliability, strict=True):
        assert (a.lower, a.upper, a.count, a.observed_rate) == (
            b.lower,
            b.upper,
            b.count,
            b.observed_rate,
        )
        assert a.mean_predicted == pytest.approx(b.mean_predicted)


def test_joiner_matches_labels_to_earlier_predictions() -> None:
    """A label joins the prediction served under its request id."""
    # Arrange
    joiner = LabelJoiner()
    joiner.add_predictions(
        ["a", "b", "c"], np.array([0.1, 0.7, 0.4]), np.array([1.0, 2.0, 3.0]), version=3
    )

    # Act
    joined = joiner.add_labels(["c", "a", "zz"], np.array([1, 0, 1]), np.array([10.0, 11.0, 12.0]))

    # Assert
    assert joined.request_ids.tolist() == ["c", "a"]
    assert joined.scores.tolist() == [0.4, 0.1]
    assert joined.labels.tolist() == [1.0, 0.0]
    assert joined.versions.tolist() == [3, 3]
    assert joined.prediction_times.tolist() == [3.0, 1.0]
    assert joined.label_times.tolist() == [10.0, 11.0]
    assert (joiner.pending_predictions, joiner.pending_labels) == (1, 1)


def test_joiner_matches_labels_that_come_first() -> None:
    """A label that arrives before its prediction waits and is returned by add_predictions."""
    # Arrange
    joiner = LabelJoiner()
    early = joiner.add_labels(["x"], np.array([1]), np.array([5.0]))

    # Act
    joined = joiner.add_predictions(
        ["x", "y"], np.array([0.8, 0.3]), np.array([4.0, 6.0]), version="v2"
    )

    # Assert
    assert len(early) == 0
    assert joined.request_ids.tolist() == ["x"]
    assert joined.versions.tolist() == ["v2"]
    assert joiner.pending_labels == 0


def test_joiner_first_label_wins() -> None:
    """A second label for a request is ignored and counted, in one batch or across batches."""
    # Arrange
    joiner = LabelJoiner()
    joiner.add_predictions(["a", "b"], np.array([0.2, 0.9]), np.array([0.0, 0.0]))

    # Act
    first = joiner.add_labels(["a", "a"], np.array([1, 0]), np.array([1.0, 1.0]))
    again = joiner.add_labels(["a"], np.array([0]), np.array([2.0]))

    # Assert
    assert first.labels.tolist() == [1.0]
    assert len(again) == 0
    assert joiner.duplicate_labels == 2
    assert joiner.pending_labels == 0


def test_joiner_expires_entries_after_ttl() -> None:
    """Predictions and labels older than ttl_s (against the latest time seen) are dropped."""
    # Arrange
    joiner = LabelJoiner(ttl_s=90.0)
    joiner.add_predictions(["old", "new"], np.array([0.5, 0.5]), np.array([0.0, 90.0]))
    joiner.add_labels(["orphan"], np.array([1]), np.array([50.0]))

    # Act
    joined = joiner.add_labels(["old", "new"], np.array([1, 1]), np.array([150.0, 150.0]))

    # Assert
    assert joined.request_ids.tolist() == ["new"]
    assert joiner.expired == 1
    assert joiner.unmatched_labels == 1
    assert joiner.pending_labels == 1  # the label for "old" now waits in vain


def test_joiner_evicts_oldest_beyond_max_pending() -> None:
    """Beyond max_pending waiting predictions, the oldest go and are counted."""
    # Arrange
    joiner = LabelJoiner(max_pending=3)

    # Act
    joiner.add_predictions([f"r{i}" for i in range(5)], np.full(5, 0.5), np.arange(5.0))
    joined = joiner.add_labels(["r0", "r4"], np.array([0, 1]), np.array([6.0, 6.0]))

    # Assert
    assert joiner.evicted == 2
    assert joined.request_ids.tolist() == ["r4"]
    assert joiner.pending_predictions == 2


def test_joiner_memory_is_bounded() -> None:
    """Waiting labels are bounded by max_pending too."""
    # Arrange
    joiner = LabelJoiner(max_pending=10)

    # Act
    joiner.add_labels([f"l{i}" for i in range(25)], np.zeros(25), np.zeros(25))

    # Assert
    assert joiner.pending_labels == 10
    assert joiner.unmatched_labels == 15


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda j: j.add_predictions("abc", [0.1], [0.0]), "request_ids", id="ids-str"),
        pytest.param(
            lambda j: j.add_predictions([1, 2], [0.1, 0.2], [0.0, 0.0]), "request_ids", id="ids-int"
        ),
        pytest.param(lambda j: j.add_predictions(["a"], [0.1, 0.2], [0.0]), "scores", id="length"),
        pytest.param(lambda j: j.add_predictions(["a"], [np.nan], [0.0]), "scores", id="nan-score"),
        pytest.param(
            lambda j: j.add_predictions(["a"], [0.1], [0.0], version=True), "version", id="version"
        ),
        pytest.param(lambda j: j.add_labels(["a"], [1], [np.inf]), "times", id="inf-time"),
        pytest.param(lambda j: j.add_labels(["a"], ["yes"], [0.0]), "labels", id="text-label"),
    ],
)
def test_joiner_refuses_malformed_batches(call: object, field: str) -> None:
    """Malformed batches raise InvalidInput naming the field."""
    # Arrange
    joiner = LabelJoiner()

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        call(joiner)  # type: ignore[operator]
    assert err.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"max_pending": 0}, "max_pending", id="max-pending"),
        pytest.param({"ttl_s": 0.0}, "ttl_s", id="ttl"),
    ],
)
def test_joiner_refuses_bad_options(kwargs: dict[str, object], field: str) -> None:
    """Options out of range raise InvalidInput naming the option."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        LabelJoiner(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_auc_matches_sklearn() -> None:
    """The histogram AUC is within 1e-3 of scikit-learn's at 4096 bins."""
    # Arrange
    scores, labels = _scored(0, 50_000)
    acc = PerformanceAccumulator()

    # Act
    for start in range(0, 50_000, 7_000):
        acc.add(scores[start : start + 7_000], labels[start : start + 7_000])
    summary = acc.snapshot()

    # Assert
    assert summary.auc is not None
    assert summary.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-3)


def test_auc_counts_ties_half() -> None:
    """Tied scores count half, as in the Mann-Whitney statistic."""
    # Arrange
    acc = PerformanceAccumulator()

    # Act
    acc.add(np.array([0.5, 0.5, 0.9, 0.1]), np.array([1, 0, 1, 0]))

    # Assert
    assert acc.snapshot().auc == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]))


@pytest.mark.parametrize("threshold", [pytest.param(t, id=str(t)) for t in (0.0, 0.3, 0.5, 0.75)])
def test_threshold_metrics_match_sklearn(threshold: float) -> None:
    """Precision, recall, F1 and Brier equal scikit-learn's (scores >= threshold are positive)."""
    # Arrange
    scores, labels = _scored(1, 5_000)
    acc = PerformanceAccumulator(threshold=threshold)

    # Act
    acc.add(scores, labels)
    summary = acc.snapshot()

    # Assert
    predicted = (scores >= threshold).astype(int)
    precision = precision_score(labels, predicted, zero_division=0)
    recall = recall_score(labels, predicted)
    assert summary.precision == pytest.approx(precision)
    assert summary.recall == pytest.approx(recall)
    assert summary.f1 == pytest.approx(2 * precision * recall / (precision + recall))
    assert summary.brier == pytest.approx(brier_score_loss(labels, scores))
    assert (summary.count, summary.positives) == (5_000, int(labels.sum()))


def test_calibration_table_and_ece() -> None:
    """The reliability table holds each bin's mean score and positive rate; ECE weights them."""
    # Arrange
    scores = np.array([0.05, 0.15, 0.12, 0.95, 1.0])
    labels = np.array([0, 1, 0, 1, 0])
    acc = PerformanceAccumulator(calibration_bins=10)

    # Act
    acc.add(scores, labels)
    summary = acc.snapshot()

    # Assert
    table = summary.reliability
    assert [b.count for b in table] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table[1].mean_predicted == pytest.approx(0.135)
    assert table[1].observed_rate == 0.5
    assert table[2].mean_predicted is None
    assert (table[9].lower, table[9].upper) == (0.9, 1.0)
    expected = (1 * 0.05 + 2 * abs(0.135 - 0.5) + 2 * abs(0.975 - 0.5)) / 5
    assert summary.ece == pytest.approx(expected)


def test_calibrated_model_has_small_ece() -> None:
    """Labels drawn from the scores give an ECE near zero."""
    # Arrange
    scores, labels = _scored(2, 100_000)
    acc = PerformanceAccumulator()

    # Act
    acc.add(scores, labels)

    # Assert
    ece = acc.snapshot().ece
    assert ece is not None
    assert ece < 0.01


def test_undefined_metrics_are_none() -> None:
    """With one class only or no data, AUC, precision, recall and the rest are None."""
    # Arrange
    empty = PerformanceAccumulator()
    negatives = PerformanceAccumulator()

    # Act
    negatives.add(np.array([0.1, 0.2]), np.array([0, 0]))

    # Assert
    assert empty.snapshot().auc is None
    assert empty.snapshot().brier is None
    assert empty.snapshot().ece is None
    summary = negatives.snapshot()
    assert (summary.auc, summary.precision, summary.recall, summary.f1) == (None, None, None, None)


def test_accumulators_merge_exactly() -> None:
    """Merging two accumulators equals one accumulator over all rows."""
    # Arrange
    scores, labels = _scored(3, 4_000)
    whole, left, right = (PerformanceAccumulator() for _ in range(3))
    whole.add(scores, labels)
    left.add(scores[:1_500], labels[:1_500])
    right.add(scores[1_500:], labels[1_500:])

    # Act
    left.merge(right)

    # Assert
    _assert_summaries_close(left.snapshot(), whole.snapshot())


def test_merge_refuses_other_bins() -> None:
    """Accumulators with other bins do not merge."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        PerformanceAccumulator().merge(PerformanceAccumulator(num_bins=10))
    assert err.value.field == "other"


def test_reset_forgets_everything() -> None:
    """reset() starts a new, empty window."""
    # Arrange
    acc = PerformanceAccumulator()
    acc.add(*_scored(4, 100))

    # Act
    acc.reset()

    # Assert
    assert acc.count == 0
    assert acc.snapshot().auc is None


@pytest.mark.parametrize(
    ("scores", "labels", "field"),
    [
        pytest.param([0.5, 1.2], [0, 1], "scores", id="above-one"),
        pytest.param([-0.1, 0.2], [0, 1], "scores", id="negative"),
        pytest.param([np.nan, 0.2], [0, 1], "scores", id="nan"),
        pytest.param([0.5, 0.2], [0, 2], "labels", id="label-two"),
        pytest.param([0.5, 0.2], [0.5, 1], "labels", id="label-half"),
        pytest.param([0.5, 0.2], [0], "labels", id="length"),
    ],
)
def test_accumulator_refuses_bad_values(
    scores: list[float], labels: list[float], field: str
) -> None:
    """Scores outside [0, 1] or non-finite, and labels other than 0/1, are refused."""
    # Arrange
    acc = PerformanceAccumulator()

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        acc.add(scores, labels)
    assert err.value.field == field
    assert acc.count == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"threshold": 1.5}, "threshold", id="threshold"),
        pytest.param({"num_bins": 1}, "num_bins", id="num-bins"),
        pytest.param({"calibration_bins": 0}, "calibration_bins", id="calibration-bins"),
    ],
)
def test_accumulator_refuses_bad_options(kwargs: dict[str, object], field: str) -> None:
    """Options out of range raise InvalidInput naming the option."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        PerformanceAccumulator(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_windowed_performance_by_count() -> None:
    """Count windows summarise exactly size_rows joined predictions each."""
    # Arrange
    scores, labels = _scored(5, 1_000)
    windows = WindowedPerformance(size_rows=300)

    # Act
    closed = windows.add(scores[:500], labels[:500], np.arange(500.0))
    closed += windows.add(scores[500:], labels[500:], np.arange(500.0, 1000.0))
    last = windows.flush()

    # Assert
    assert [w.rows for w in closed] == [300, 300, 300]
    assert last is not None
    assert last.rows == 100
    expected = PerformanceAccumulator()
    expected.add(scores[300:600], labels[300:600])
    _assert_summaries_close(closed[1].summary, expected.snapshot())


def test_windowed_performance_by_time_from_joined_pairs() -> None:
    """Joined pairs windowed by label time give one summary per aligned window."""
    # Arrange
    joiner = LabelJoiner()
    windows = WindowedPerformance(length_s=3600.0)
    ids = [f"r{i}" for i in range(6)]
    joiner.add_predictions(ids, np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.3]), np.zeros(6))

    # Act
    morning = joiner.add_labels(ids[:4], np.array([1, 0, 0, 0]), np.full(4, 100.0))
    later = joiner.add_labels(ids[4:], np.array([1, 1]), np.full(2, 4000.0))
    closed = windows.add(morning.scores, morning.labels, morning.label_times)
    closed += windows.add(later.scores, later.labels, later.label_times)

    # Assert
    assert [(w.start_time, w.end_time, w.rows) for w in closed] == [(0.0, 3600.0, 4)]
    assert closed[0].summary.auc == pytest.approx(roc_auc_score([1, 0, 0, 0], [0.9, 0.8, 0.2, 0.1]))
    assert windows.open_rows == 2


def test_windowed_performance_refuses_bad_rows_before_any_change() -> None:
    """A malformed batch raises InvalidInput and leaves the open window as it was."""
    # Arrange
    windows = WindowedPerformance(size_rows=10)
    windows.add([0.5], [1], [0.0])

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        windows.add([0.5, 2.0], [1, 0], [1.0, 2.0])
    assert err.value.field == "scores"
    assert windows.open_rows == 1
