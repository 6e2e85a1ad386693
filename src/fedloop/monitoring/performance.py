"""Model performance with delayed labels: joining feedback to predictions, and windowed metrics."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput
from fedloop.monitoring.windows import _check_times, _Span, _Tumbling

__all__ = [
    "Joined",
    "LabelJoiner",
    "PerformanceAccumulator",
    "PerformanceSummary",
    "PerformanceWindow",
    "ReliabilityBin",
    "WindowedPerformance",
]

_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]
_Version = int | str | None
_Entry = TypeVar("_Entry")


@dataclass(frozen=True, eq=False)
class Joined:
    """Predictions matched with their labels, one row per request.

    Attributes
    ----------
    request_ids : ndarray of str
        The requests' ids.
    scores : ndarray of float64
        What the model predicted.
    labels : ndarray of float64
        The feedback that arrived later.
    versions : ndarray of object
        The model version that served each prediction (int, str or None).
    prediction_times, label_times : ndarray of float64
        Epoch seconds of the prediction and of the label.
    """

    request_ids: npt.NDArray[np.str_]
    scores: _Floats
    labels: _Floats
    versions: npt.NDArray[np.object_]
    prediction_times: _Floats
    label_times: _Floats

    def __len__(self) -> int:
        return int(self.scores.size)


class LabelJoiner:
    """Joins delayed labels to predictions by request id, in bounded memory.

    A prediction waits for its label, and a label that comes first waits for its prediction;
    either call returns the pairs it completed. Waiting entries expire ``ttl_s`` after their
    time (measured against the latest time seen, not a clock), and beyond ``max_pending``
    waiting entries the oldest are dropped; both are counted. The first label of a request
    wins: later ones are counted in ``duplicate_labels`` (ids joined less than ``ttl_s``
    ago are remembered for that), and likewise for predictions.

    Parameters
    ----------
    max_pending : int, default 1_000_000
        Predictions, and separately labels, that may wait at once (>= 1).
    ttl_s : float, default 86400.0
        Seconds an entry waits for its partner (> 0).

    Raises
    ------
    InvalidInput
        When an argument is out of range.

    Example
    -------
    >>> joiner = LabelJoiner(ttl_s=3600)
    >>> _ = joiner.add_predictions(["a", "b"], np.array([0.9, 0.2]), np.array([0.0, 1.0]))
    >>> joined = joiner.add_labels(["b"], np.array([0]), np.array([60.0]))
    >>> joined.request_ids.tolist(), joined.scores.tolist()
    (['b'], [0.2])
    """

    def __init__(self, *, max_pending: int = 1_000_000, ttl_s: float = 86400.0) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise InvalidInput(
                f"`max_pending` must be an integer >= 1; got {max_pending!r}.",
                field="max_pending",
                value=max_pending,
            )
        if not _is_positive(ttl_s):
            raise InvalidInput(
                f"`ttl_s` must be a finite number of seconds > 0; got {ttl_s!r}.",
                field="ttl_s",
                value=ttl_s,
            )
        self.max_pending, self.ttl_s = max_pending, float(ttl_s)
        self._predictions: OrderedDict[str, tuple[float, float, _Version]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._joined: OrderedDict[str, float] = OrderedDict()
        self._now = -math.inf
        #: Predictions dropped because more than ``max_pending`` were waiting.
        self.evicted = 0
        #: Predictions whose label did not come within ``ttl_s``.
        self.expired = 0
        #: Labels whose prediction did not come within ``ttl_s`` or that were dropped.
        self.unmatched_labels = 0
        #: Labels for a request that already had one (the first wins).
        self.duplicate_labels = 0
        #: Predictions for a request id that was already used (the first wins).
        self.duplicate_predictions = 0

    @property
    def pending_predictions(self) -> int:
        """Predictions waiting for a label."""
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        """Labels waiting for a prediction."""
        return len(self._labels)

    def add_predictions(
        self,
        request_ids: Sequence[str],
        scores: npt.ArrayLike,
        times: npt.ArrayLike,
        *,
        version: int | str | None = None,
    ) -> Joined:
        """Record served predictions; return those whose label was already waiting.

        Parameters
        ----------
        request_ids : Sequence[str]
            One id per prediction.
        scores : array-like of float
            The predictions (finite).
        times : array-like of float
            Epoch seconds per prediction (or one number for all).
        version : int, str or None, default None
            The model version that served them.

        Returns
        -------
        Joined
            The pairs completed by this call (often empty).

        Raises
        ------
        InvalidInput
            When lengths differ, an id is not a string, or a value is not finite.
        """
        if isinstance(version, bool) or not isinstance(version, int | str | None):
            raise InvalidInput(
                f"`version` must be an int, a str or None; got {version!r}.", field="version"
            )
        ids, values, stamps = _check_rows(request_ids, scores, times, "scores")
        self._advance(float(stamps.max()) if stamps.size else self._now)
        pairs: list[tuple[str, float, float, _Version, float, float]] = []
        for rid, score, stamp in zip(ids, values.tolist(), stamps.tolist(), strict=True):
            if rid in self._predictions or rid in self._joined:
                self.duplicate_predictions += 1
                continue
            label = self._labels.pop(rid, None)
            if label is None:
                self._predictions[rid] = (score, stamp, version)
                continue
            pairs.append((rid, score, label[0], version, stamp, label[1]))
            self._remember(rid, max(stamp, label[1]))
        self._bound()
        return _joined(pairs)

    def add_labels(
        self, request_ids: Sequence[str], labels: npt.ArrayLike, times: npt.ArrayLike
    ) -> Joined:
        """Record feedback; return the pairs it completes.

        Parameters
        ----------
        request_ids : Sequence[str]
            The ids the predictions were served under.
        labels : array-like of float
            The true outcomes (finite; 0/1 for a binary classifier).
        times : array-like of float
            Epoch seconds per label (or one number for all).

        Returns
        -------
        Joined
            The pairs completed by this call; labels without a prediction wait.

        Raises
        ------
        InvalidInput
            When lengths differ, an id is not a string, or a value is not finite.
        """
        ids, values, stamps = _check_rows(request_ids, labels, times, "labels")
        self._advance(float(stamps.max()) if stamps.size else self._now)
        pairs: list[tuple[str, float, float, _Version, float, float]] = []
        for rid, label, stamp in zip(ids, values.tolist(), stamps.tolist(), strict=True):
            if rid in self._joined or rid in self._labels:
                self.duplicate_labels += 1
                continue
            prediction = self._predictions.pop(rid, None)
            if prediction is None:
                self._labels[rid] = (label, stamp)
                continue
            score, predicted_at, version = prediction
            pairs.append((rid, score, label, version, predicted_at, stamp))
            self._remember(rid, stamp)
        self._bound()
        return _joined(pairs)

    def _advance(self, now: float) -> None:
        """Move the latest time seen forward and expire what waited longer than ``ttl_s``."""
        self._now = max(self._now, now)
        cutoff = self._now - self.ttl_s
        self.expired += _drop_older(self._predictions, cutoff, lambda entry: entry[1])
        self.unmatched_labels += _drop_older(self._labels, cutoff, lambda entry: entry[1])
        _drop_older(self._joined, cutoff, lambda entry: entry)

    def _remember(self, rid: str, stamp: float) -> None:
        self._joined[rid] = stamp

    def _bound(self) -> None:
        """Drop the oldest waiting entries beyond ``max_pending``."""
        while len(self._predictions) > self.max_pending:
            self._predictions.popitem(last=False)
            self.evicted += 1
        while len(self._labels) > self.max_pending:
            self._labels.popitem(last=False)
            self.unmatched_labels += 1
        while len(self._joined) > self.max_pending:
            self._joined.popitem(last=False)


@dataclass(frozen=True)
class ReliabilityBin:
    """One row of a reliability table: predictions with scores in ``[lower, upper)``.

    Attributes
    ----------
    lower, upper : float
        The score range (the last bin includes 1.0).
    count : int
        Predictions in the range.
    mean_predicted : float or None
        Their mean score (None when empty).
    observed_rate : float or None
        Their fraction of positive labels (None when empty).
    """

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_rate: float | None


@dataclass(frozen=True)
class PerformanceSummary:
    """Binary-classifier metrics over a set of joined predictions.

    Attributes
    ----------
    count : int
        Predictions with a label.
    positives : int
        Of which labelled 1.
    threshold : float
        Scores ``>= threshold`` count as predicted positive.
    auc : float or None
        ROC AUC (Mann-Whitney over score histograms; ties within a bin count half);
        None when one class is absent.
    precision, recall, f1 : float or None
        At ``threshold``; None when undefined (no predicted positive, no positive label).
    brier : float or None
        Mean squared error of the scores (exact); None when ``count`` is 0.
    ece : float or None
        Expected calibration error over the reliability bins; None when ``count`` is 0.
    reliability : tuple of ReliabilityBin
        The calibration table.
    """

    count: int
    positives: int
    threshold: float
    auc: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    brier: float | None
    ece: float | None
    reliability: tuple[ReliabilityBin, ...]


class PerformanceAccumulator:
    """Running, mergeable metrics of a binary classifier in memory bounded by its bins.

    Per label, a histogram of scores on ``num_bins`` equal bins of [0, 1] gives the AUC
    (within about ``1 / num_bins`` of the exact value for continuous scores); the confusion
    counts at ``threshold``, the Brier sum and the calibration sums are exact.

    Parameters
    ----------
    threshold : float, default 0.5
        Decision threshold in [0, 1].
    num_bins : int, default 4096
        Score bins per label for the AUC (>= 2).
    calibration_bins : int, default 10
        Equal-width bins of the reliability table (>= 1).

    Raises
    ------
    InvalidInput
        When an argument is out of range.

    Example
    -------
    >>> acc = PerformanceAccumulator()
    >>> acc.add(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
    >>> acc.snapshot().auc
    0.75
    """

    def __init__(
        self, *, threshold: float = 0.5, num_bins: int = 4096, calibration_bins: int = 10
    ) -> None:
        if isinstance(threshold, bool) or not _is_number(threshold) or not 0 <= threshold <= 1:
            raise InvalidInput(
                f"`threshold` must be a number in [0, 1]; got {threshold!r}.",
                field="threshold",
                value=threshold,
            )
        for name, value, minimum in (
            ("num_bins", num_bins, 2),
            ("calibration_bins", calibration_bins, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidInput(
                    f"`{name}` must be an integer >= {minimum}; got {value!r}.",
                    field=name,
                    value=value,
                )
        self.threshold, self.num_bins = float(threshold), num_bins
        self.calibration_bins = calibration_bins
        self.reset()

    def reset(self) -> None:
        """Forget everything added (start a new window)."""
        self._positive: _Ints = np.zeros(self.num_bins, dtype=np.int64)
        self._negative: _Ints = np.zeros(self.num_bins, dtype=np.int64)
        self._confusion: _Ints = np.zeros(4, dtype=np.int64)  # tp, fp, fn, tn
        self._squared_error = 0.0
        self._cal_count: _Ints = np.zeros(self.calibration_bins, dtype=np.int64)
        self._cal_score: _Floats = np.zeros(self.calibration_bins, dtype=np.float64)
        self._cal_positive: _Ints = np.zeros(self.calibration_bins, dtype=np.int64)

    @property
    def count(self) -> int:
        """Predictions added so far."""
        return int(self._cal_count.sum())

    def add(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> None:
        """Add joined predictions.

        Parameters
        ----------
        scores : array-like of float in [0, 1]
            Predicted probability of class 1.
        labels : array-like of {0, 1}
            True classes (bool, int or float).

        Raises
        ------
        InvalidInput
            When a score is not finite or outside [0, 1] (``field="scores"``), a label is not
            0 or 1 (``field="labels"``), or the lengths differ; nothing is added then.
        """
        s, positive = _check_scores_labels(scores, labels)
        bins = np.minimum((s * self.num_bins).astype(np.intp), self.num_bins - 1)
        self._positive += np.bincount(bins[positive], minlength=self.num_bins)
        self._negative += np.bincount(bins[~positive], minlength=self.num_bins)
        predicted = s >= self.threshold
        tp = int(np.count_nonzero(predicted & positive))
        fp = int(np.count_nonzero(predicted)) - tp
        fn = int(np.count_nonzero(positive)) - tp
        self._confusion += np.array([tp, fp, fn, s.size - tp - fp - fn], dtype=np.int64)
        error = s - positive
        self._squared_error += float(np.square(error, out=error).sum())
        cells = np.minimum((s * self.calibration_bins).astype(np.intp), self.calibration_bins - 1)
        self._cal_count += np.bincount(cells, minlength=self.calibration_bins)
        self._cal_score += np.bincount(cells, weights=s, minlength=self.calibration_bins)
        self._cal_positive += np.bincount(cells[positive], minlength=self.calibration_bins)

    def merge(self, other: PerformanceAccumulator) -> None:
        """Add another accumulator's predictions to this one (e.g. from another replica).

        Parameters
        ----------
        other : PerformanceAccumulator
            Built with the same threshold and bins.

        Raises
        ------
        InvalidInput
            When the threshold or the bins differ.
        """
        if not isinstance(other, PerformanceAccumulator) or (
            other.threshold,
            other.num_bins,
            other.calibration_bins,
        ) != (self.threshold, self.num_bins, self.calibration_bins):
            raise InvalidInput(
                "can merge only a PerformanceAccumulator with the same threshold and bins.",
                field="other",
            )
        self._positive += other._positive
        self._negative += other._negative
        self._confusion += other._confusion
        self._squared_error += other._squared_error
        self._cal_count += other._cal_count
        self._cal_score += other._cal_score
        self._cal_positive += other._cal_positive

    def snapshot(self) -> PerformanceSummary:
        """Return the metrics of everything added so far.

        Returns
        -------
        PerformanceSummary
            Metrics that are undefined (no data, one class) are None.
        """
        count = self.count
        tp, fp, fn, _ = (int(v) for v in self._confusion)
        positives = tp + fn
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / positives if positives else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table = self._reliability()
        ece = None
        if count:
            ece = sum(
                b.count / count * abs(b.mean_predicted - b.observed_rate)
                for b in table
                if b.mean_predicted is not None and b.observed_rate is not None
            )
        return PerformanceSummary(
            count=count,
            positives=positives,
            threshold=self.threshold,
            auc=self._auc(),
            precision=precision,
            recall=recall,
            f1=f1,
            brier=self._squared_error / count if count else None,
            ece=ece,
            reliability=table,
        )

    def _auc(self) -> float | None:
        """Mann-Whitney U over the histograms: P(score+ > score-) + P(same bin) / 2."""
        positive = self._positive.astype(np.float64)
        negative = self._negative.astype(np.float64)
        n_pos, n_neg = positive.sum(), negative.sum()
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.cumsum(negative) - negative
        return float((positive * (below + 0.5 * negative)).sum() / (n_pos * n_neg))

    def _reliability(self) -> tuple[ReliabilityBin, ...]:
        bins = self.calibration_bins
        rows = zip(
            self._cal_count.tolist(),
            self._cal_score.tolist(),
            self._cal_positive.tolist(),
            strict=True,
        )
        return tuple(
            ReliabilityBin(
                lower=i / bins,
                upper=(i + 1) / bins,
                count=n,
                mean_predicted=total / n if n else None,
                observed_rate=hits / n if n else None,
            )
            for i, (n, total, hits) in enumerate(rows)
        )


@dataclass(frozen=True)
class PerformanceWindow:
    """A window of joined predictions that is complete, with its metrics.

    Attributes
    ----------
    start_time, end_time : float
        Epoch seconds: the window's bounds for time windows, the first and last row times
        for count windows.
    rows : int
        Joined predictions in the window.
    summary : PerformanceSummary
        Their metrics.
    late_rows : int
        Rows older than the window that were counted in it (time windows only).
    """

    start_time: float
    end_time: float
    rows: int
    summary: PerformanceSummary
    late_rows: int = 0


class WindowedPerformance:
    """Tumbling windows of joined predictions, by count or by time, each summarised.

    Windows behave as in :class:`fedloop.monitoring.windows.WindowedProfiles`. Which time to
    pass is the caller's choice: ``Joined.label_times`` gives windows that close as feedback
    arrives; ``Joined.prediction_times`` attributes metrics to when traffic was served, but
    labels delayed past a window's end then land, counted as late, in a later window.

    Parameters
    ----------
    size_rows : int or None, default None
        Joined predictions per window (>= 1).
    length_s : float or None, default None
        Seconds per window (> 0), aligned to multiples of it.
    threshold, num_bins, calibration_bins
        As for :class:`PerformanceAccumulator`.

    Raises
    ------
    InvalidInput
        When both or neither of ``size_rows`` and ``length_s`` are given, or an argument is
        out of range.
    """

    def __init__(
        self,
        *,
        size_rows: int | None = None,
        length_s: float | None = None,
        threshold: float = 0.5,
        num_bins: int = 4096,
        calibration_bins: int = 10,
    ) -> None:
        PerformanceAccumulator(  # validates the options before any window exists
            threshold=threshold, num_bins=num_bins, calibration_bins=calibration_bins
        )

        def new(_: int) -> PerformanceAccumulator:
            return PerformanceAccumulator(
                threshold=threshold, num_bins=num_bins, calibration_bins=calibration_bins
            )

        def add(acc: PerformanceAccumulator, batch: Mapping[str, npt.NDArray[np.generic]]) -> None:
            acc.add(batch["scores"], batch["labels"])

        self._windows = _Tumbling(new, add, size_rows=size_rows, length_s=length_s)

    @property
    def late_rows(self) -> int:
        """Rows counted in a later window than their time's, in all windows so far."""
        return self._windows.late_total

    @property
    def open_rows(self) -> int:
        """Rows in the window that is still open."""
        return self._windows.rows

    def add(
        self, scores: npt.ArrayLike, labels: npt.ArrayLike, times: npt.ArrayLike
    ) -> list[PerformanceWindow]:
        """Add joined predictions; return the windows they closed, oldest first.

        Parameters
        ----------
        scores : array-like of float in [0, 1]
            Predicted probabilities (``Joined.scores``).
        labels : array-like of {0, 1}
            True classes (``Joined.labels``).
        times : array-like of float
            Epoch seconds per row (``Joined.label_times`` or ``Joined.prediction_times``).

        Returns
        -------
        list[PerformanceWindow]
            Possibly empty.

        Raises
        ------
        InvalidInput
            As :meth:`PerformanceAccumulator.add`, or when ``times`` is malformed; nothing is
            added then.
        """
        s, positive = _check_scores_labels(scores, labels)
        stamps = _check_times(times, s.size)
        batch = {"scores": s, "labels": positive.astype(np.int64)}
        return [_window(span) for span in self._windows.add(batch, stamps)]

    def flush(self) -> PerformanceWindow | None:
        """Close the open window now.

        Returns
        -------
        PerformanceWindow or None
            None when the open window has no row.
        """
        span = self._windows.flush()
        return None if span is None else _window(span)


def _window(span: _Span[PerformanceAccumulator]) -> PerformanceWindow:
    return PerformanceWindow(
        start_time=span.start_time,
        end_time=span.end_time,
        rows=span.rows,
        summary=span.state.snapshot(),
        late_rows=span.late_rows,
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _is_positive(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return math.isfinite(value) and float(value) > 0


def _check_scores_labels(
    scores: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[_Floats, npt.NDArray[np.bool_]]:
    """Return scores as float64 in [0, 1] and labels as a positive mask, or raise."""
    try:
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"scores and labels must be numeric: {err}.", field="scores") from err
    if s.ndim != 1 or y.shape != s.shape:
        raise InvalidInput(
            f"`scores` and `labels` must be 1-D of one length; got {s.shape} and {y.shape}.",
            field="labels" if s.ndim == 1 else "scores",
        )
    if s.size and (not np.isfinite(s).all() or s.min() < 0 or s.max() > 1):
        raise InvalidInput(
            "`scores` must be finite probabilities in [0, 1].",
            field="scores",
            hint="Pass the model's probability of class 1, not a logit.",
        )
    positive = y == 1
    if not (positive | (y == 0)).all():
        raise InvalidInput(
            "`labels` must be 0 or 1.",
            field="labels",
            hint="Map the feedback to the binary outcome the model predicts.",
        )
    return s, positive


def _check_rows(
    request_ids: Sequence[str], values: npt.ArrayLike, times: npt.ArrayLike, field: str
) -> tuple[list[str], _Floats, _Floats]:
    """Return ids, finite float64 values and times of one batch, or raise naming the field."""
    if isinstance(request_ids, str) or not isinstance(request_ids, Sequence | np.ndarray):
        raise InvalidInput(
            "`request_ids` must be a sequence of strings.",
            field="request_ids",
            hint="Pass a list such as ['req-1', 'req-2'], even for one request.",
        )
    ids = list(request_ids)
    if not all(isinstance(rid, str) and rid for rid in ids):
        raise InvalidInput("`request_ids` must be non-empty strings.", field="request_ids")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"`{field}` must be numbers: {err}.", field=field) from err
    if array.shape != (len(ids),) or not np.isfinite(array).all():
        raise InvalidInput(
            f"`{field}` must be {len(ids)} finite numbers, one per request id; got shape "
            f"{array.shape}.",
            field=field,
        )
    return ids, array, _check_times(times, len(ids))


def _drop_older(
    entries: OrderedDict[str, _Entry], cutoff: float, time_of: Callable[[_Entry], float]
) -> int:
    """Drop entries from the oldest while their time is before ``cutoff``; return how many."""
    dropped = 0
    while entries:
        rid = next(iter(entries))
        if time_of(entries[rid]) >= cutoff:
            break
        del entries[rid]
        dropped += 1
    return dropped


def _joined(pairs: Sequence[tuple[str, float, float, _Version, float, float]]) -> Joined:
    versions = np.empty(len(pairs), dtype=object)
    versions[:] = [pair[3] for pair in pairs]
    return Joined(
        request_ids=np.array([pair[0] for pair in pairs], dtype=np.str_),
        scores=np.array([pair[1] for pair in pairs], dtype=np.float64),
        labels=np.array([pair[2] for pair in pairs], dtype=np.float64),
        versions=versions,
        prediction_times=np.array([pair[4] for pair in pairs], dtype=np.float64),
        label_times=np.array([pair[5] for pair in pairs], dtype=np.float64),
    )
