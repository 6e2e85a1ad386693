"""The monitor: payload-log ingest into per-version windows, drift and performance checks, findings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput, MonitoringConfig, NotFound
from fedloop.learn import DataProfile, NumericSummary, columns_from_tensors, profile_columns
from fedloop.monitoring.alerts import AlertSink
from fedloop.monitoring.drift import DriftReport, check_drift
from fedloop.monitoring.ingest import IngestBody, PredictionBatch, parse_ingest_body
from fedloop.monitoring.metrics import MonitorMetrics
from fedloop.monitoring.performance import (
    LabelJoiner,
    PerformanceSummary,
    PerformanceWindow,
    WindowedPerformance,
)
from fedloop.monitoring.reference import prediction_columns
from fedloop.monitoring.windows import ClosedWindow, WindowedProfiles
from fedloop.registry import ModelRegistry
from fedloop.store import ModelVersion, MonitorWindow, Workspace

__all__ = ["IngestResult", "Monitor", "WindowCheck"]

_log = logging.getLogger("fedloop.monitoring")

#: Event kinds the monitor appends to the audit log.
DRIFT_EVENT = "monitor.drift_detected"
DEGRADED_EVENT = "monitor.performance_degraded"


@dataclass(frozen=True)
class IngestResult:
    """What one ingest call did."""

    rows: int
    labels: int
    joined: int
    checks: tuple[WindowCheck, ...]


@dataclass(frozen=True)
class WindowCheck:
    """A window the monitor closed and checked (and recorded in the store)."""

    model: str
    version: int
    kind: str
    verdict: str | None
    window: MonitorWindow
    report: DriftReport | None = None
    performance: PerformanceSummary | None = None


@dataclass
class _Stream:
    """Everything the monitor keeps for one model version's traffic (bounded memory)."""

    record: ModelVersion
    reference: DataProfile | None
    prediction_columns: tuple[str, ...] = ()
    windows: WindowedProfiles | None = None
    #: Rows kept to build a reference from traffic when the version has none (<= window_rows).
    warmup: list[dict[str, npt.NDArray[Any]]] = field(default_factory=list)
    warmup_rows: int = 0
    performance: WindowedPerformance | None = None

    @property
    def model(self) -> str:
        return self.record.model_name

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def expected_auc(self) -> float | None:
        """The version's registered AUC (what a live window is compared with)."""
        return self.record.metrics.get("auc")


def _score_column(prediction: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[np.float64] | None:
    """Return each row's positive-class score: the first output's only (or second) column."""
    first = next(iter(prediction.values()))
    arr = np.asarray(first, dtype=np.float64)
    if arr.ndim == 1:
        return arr
    if arr.ndim == 2 and arr.shape[1] in (1, 2):
        return arr[:, arr.shape[1] - 1]
    return None


def _iso(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


class Monitor:
    """Watches live traffic of every served model version for drift and lost performance.

    The inference server's payload log POSTs batches of predictions and late labels; the
    control plane hands each body to :meth:`ingest`. Per model version the monitor keeps
    tumbling windows (``window_rows`` rows or ``window_seconds``) profiled on the version's
    reference profile, so memory does not grow with the window. When a window closes it is
    checked with :func:`check_drift`; the result is stored as a monitor window (and, on drift,
    an audit event ``monitor.drift_detected`` with the findings), set as Prometheus gauges and
    sent to the alert sinks.

    Labels are joined to predictions by request id (:class:`LabelJoiner`, bounded by
    ``max_pending_predictions`` and ``label_ttl_s``); joined pairs fill performance windows of
    ``performance_window_labels``, whose AUC, precision, recall and calibration are stored too.
    A window whose AUC falls more than ``performance_tolerance`` below the version's own
    registered ``auc`` metric is ``degraded`` (audit event ``monitor.performance_degraded``).

    A version registered without a reference profile gets one from its first window of
    traffic (attached with source ``traffic``); drift is then measured against that.

    Parameters
    ----------
    ws : Workspace
        The project's stores (registry, findings).
    config : MonitoringConfig or None
        Windows, tests and thresholds; defaults when None.
    sinks : sequence of AlertSink
        Where drift and degradation alerts go besides the store.
    metrics : MonitorMetrics or None
        Prometheus gauges (a fresh registry when None).
    clock : callable or None
        ``clock() -> epoch seconds`` for label times that the body does not carry.
    """

    def __init__(
        self,
        ws: Workspace,
        config: MonitoringConfig | None = None,
        *,
        sinks: Sequence[AlertSink] = (),
        metrics: MonitorMetrics | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.ws = ws
        self.config = config or MonitoringConfig()
        self.sinks = tuple(sinks)
        self.metrics = metrics or MonitorMetrics()
        self.registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, int], _Stream] = {}
        self._joiners: dict[tuple[str, bool], LabelJoiner] = {}

    # -- ingest --------------------------------------------------------------------------------
    def ingest(self, body: bytes) -> IngestResult:
        """Take one payload-log POST body: window its predictions, join its labels, check.

        Parameters
        ----------
        body : bytes
            ``{"predictions": [...], "feedback": [...]}`` (see :func:`parse_ingest_body`).

        Returns
        -------
        IngestResult
            Rows and labels taken, pairs joined and the windows closed by this body.

        Raises
        ------
        MalformedBody
            Naming the bad field; nothing is taken from a malformed body.
        """
        try:
            parsed = parse_ingest_body(body)
        except InvalidInput as err:
            self.metrics.ingest_errors.labels(err.code).inc()
            raise
        return self.ingest_parsed(parsed)

    def ingest_parsed(self, parsed: IngestBody) -> IngestResult:
        """Like :meth:`ingest`, for a body already decoded."""
        checks: list[WindowCheck] = []
        rows = joined = 0
        with self._lock:
            for batch in parsed.predictions:
                stream = self._stream(batch.model, batch.version)
                if stream is None:
                    self.metrics.ingest_errors.labels("unknown_model_version").inc()
                    continue
                rows += int(batch.rows.sum())
                self.metrics.rows.labels(batch.model, str(batch.version), batch.role).inc(
                    float(batch.rows.sum())
                )
                checks += self._take_predictions(stream, batch)
                joined_batch = self._predictions_to_joiner(batch)
                joined += joined_batch[0]
                checks += joined_batch[1]
            labels = parsed.labels
            if labels.request_ids:
                n, closed = self._take_labels(
                    labels.request_ids, labels.labels, labels.times, labels.models
                )
                joined += n
                checks += closed
        return IngestResult(
            rows=rows, labels=len(parsed.labels.request_ids), joined=joined, checks=tuple(checks)
        )

    def flush(self) -> list[WindowCheck]:
        """Close and check every open window now (at shutdown, or to force a check)."""
        checks: list[WindowCheck] = []
        with self._lock:
            for stream in self._streams.values():
                if stream.windows is not None:
                    closed = stream.windows.flush()
                    if closed is not None:
                        checks.append(self._check_drift(stream, closed))
                elif stream.warmup_rows:
                    self._finish_warmup(stream)
                if stream.performance is not None:
                    done = stream.performance.flush()
                    if done is not None:
                        checks.append(self._check_performance(stream, done))
        return checks

    def close(self) -> None:
        """Flush the open windows and close the alert sinks."""
        self.flush()
        for sink in self.sinks:
            sink.close()

    # -- streams -------------------------------------------------------------------------------
    def _stream(self, model: str, version: int) -> _Stream | None:
        key = (model, version)
        stream = self._streams.get(key)
        if stream is not None:
            return stream
        try:
            mv = self.ws.metadata.get_model_version(model, version)
        except NotFound:
            _log.warning("payload for unknown model version %s v%d ignored", model, version)
            return None
        reference = self.registry.find_profile(mv)
        stream = _Stream(record=mv, reference=reference)
        if reference is not None:
            self._start_windows(stream, reference)
        self._streams[key] = stream
        return stream

    def _start_windows(self, stream: _Stream, reference: DataProfile) -> None:
        cfg = self.config
        stream.reference = reference
        stream.prediction_columns = prediction_columns(stream.record, reference.columns)
        stream.windows = WindowedProfiles(
            reference,
            size_rows=None if cfg.window_seconds else cfg.window_rows,
            length_s=cfg.window_seconds,
            sample_size=cfg.reference_sample_rows if cfg.drift.multivariate else 0,
        )

    def _take_predictions(self, stream: _Stream, batch: PredictionBatch) -> list[WindowCheck]:
        columns = columns_from_tensors({**batch.features, **batch.prediction})
        times = batch.row_times
        if stream.windows is None:
            self._warm_up(stream, columns, times)
            return []
        return [self._check_drift(stream, closed) for closed in stream.windows.add(columns, times)]

    def _warm_up(
        self, stream: _Stream, columns: dict[str, npt.NDArray[Any]], times: npt.NDArray[np.float64]
    ) -> None:
        room = self.config.window_rows - stream.warmup_rows
        stream.warmup.append({k: v[:room] for k, v in columns.items()})
        stream.warmup_rows += min(room, len(times))
        if stream.warmup_rows >= self.config.window_rows:
            self._finish_warmup(stream)

    def _finish_warmup(self, stream: _Stream) -> None:
        names = stream.warmup[0].keys()
        data = {k: np.concatenate([part[k] for part in stream.warmup]) for k in names}
        reference = profile_columns(
            data,
            num_bins=self.config.reference_bins,
            sample_size=self.config.reference_sample_rows,
        )
        stream.warmup, stream.warmup_rows = [], 0
        self.registry.attach_profile(stream.record, reference, source="traffic", actor="monitor")
        _log.info("%s v%d: reference profile taken from live traffic", stream.model, stream.version)
        self._start_windows(stream, reference)

    # -- labels and performance ---------------------------------------------------------------
    def _joiner(self, model: str, shadow: bool) -> LabelJoiner:
        key = (model, shadow)
        joiner = self._joiners.get(key)
        if joiner is None:
            joiner = self._joiners[key] = LabelJoiner(
                max_pending=self.config.max_pending_predictions, ttl_s=self.config.label_ttl_s
            )
        return joiner

    def _predictions_to_joiner(self, batch: PredictionBatch) -> tuple[int, list[WindowCheck]]:
        scores = _score_column(batch.prediction)
        if scores is None:
            return 0, []
        # One score per request: its first row (feedback labels a request, not a row).
        starts = np.concatenate([[0], np.cumsum(batch.rows)[:-1]]).astype(np.int64)
        joiner = self._joiner(batch.model, batch.role == "shadow")
        joined = joiner.add_predictions(
            list(batch.request_ids), scores[starts], batch.times, version=batch.version
        )
        return len(joined), self._to_performance(batch.model, joined)

    def _take_labels(
        self,
        request_ids: Sequence[str],
        labels: npt.NDArray[np.float64],
        times: npt.NDArray[np.float64],
        models: Sequence[str | None],
    ) -> tuple[int, list[WindowCheck]]:
        now = self._clock()
        times = np.where(np.isfinite(times), times, now)
        total, checks = 0, []
        for (model, _shadow), joiner in list(self._joiners.items()):
            mask = np.array([m is None or m == model for m in models], dtype=bool)
            if not mask.any():
                continue
            ids = [rid for rid, keep in zip(request_ids, mask, strict=True) if keep]
            joined = joiner.add_labels(ids, labels[mask], times[mask])
            total += len(joined)
            checks += self._to_performance(model, joined)
        self.metrics.labels.labels("received").inc(len(request_ids))
        self.metrics.labels.labels("joined").inc(total)
        return total, checks

    def _to_performance(self, model: str, joined: Any) -> list[WindowCheck]:
        if not len(joined):
            return []
        checks: list[WindowCheck] = []
        versions = np.asarray(joined.versions)
        for version in sorted({int(v) for v in versions if v is not None}):
            stream = self._stream(model, version)
            if stream is None:
                continue
            if stream.performance is None:
                stream.performance = WindowedPerformance(
                    size_rows=self.config.performance_window_labels
                )
            mask = versions == version
            scores = np.clip(joined.scores[mask], 0.0, 1.0)
            for done in stream.performance.add(
                scores, joined.labels[mask] > 0.5, joined.label_times[mask]
            ):
                checks.append(self._check_performance(stream, done))
        return checks

    # -- checks --------------------------------------------------------------------------------
    def _check_drift(self, stream: _Stream, closed: ClosedWindow) -> WindowCheck:
        assert stream.reference is not None  # windows exist only with a reference
        report = check_drift(
            stream.reference,
            closed.profile,
            config=self.config.drift,
            prediction_columns=stream.prediction_columns,
        )
        summary = report.to_dict()
        summary["current_counts"] = {
            name: col.counts.tolist()
            for name, col in closed.profile.columns.items()
            if isinstance(col, NumericSummary)
        }
        summary["late_rows"] = closed.late_rows
        drifted = report.verdict == "drift"
        findings = [c for c in summary["columns"] if c["drifted"]]
        payload = {
            "verdict": report.verdict,
            "window": {
                "start": _iso(closed.start_time).isoformat(),
                "end": _iso(closed.end_time).isoformat(),
                "rows": closed.rows,
            },
            "findings": [
                {
                    k: c[k]
                    for k in (
                        "column",
                        "role",
                        "test",
                        "statistic",
                        "p_value",
                        "adjusted_p_value",
                        "effect",
                        "effect_name",
                        "effect_threshold",
                    )
                }
                for c in findings
            ],
            "alpha": report.alpha,
            "correction": report.correction,
        }
        window = self.ws.metadata.record_monitor_window(
            stream.model,
            stream.version,
            kind="drift",
            start_time=_iso(closed.start_time),
            end_time=_iso(closed.end_time),
            rows=closed.rows,
            verdict=report.verdict,
            summary=summary,
            event_kind=DRIFT_EVENT if drifted else None,
            event_payload=payload,
        )
        self.metrics.observe_drift(stream.model, stream.version, summary)
        if drifted:
            _log.warning(
                "%s v%d: drift in %s",
                stream.model,
                stream.version,
                ", ".join(report.drifted_columns),
            )
            self._alert({"kind": DRIFT_EVENT, "model": stream.model, "version": stream.version,
                         "window_id": window.id, **payload})  # fmt: skip
        return WindowCheck(stream.model, stream.version, "drift", report.verdict, window, report)

    def _check_performance(self, stream: _Stream, done: PerformanceWindow) -> WindowCheck:
        s = done.summary
        metrics = {
            "auc": s.auc,
            "precision": s.precision,
            "recall": s.recall,
            "f1": s.f1,
            "brier": s.brier,
            "ece": s.ece,
        }
        degraded = (
            s.auc is not None
            and stream.expected_auc is not None
            and s.auc < stream.expected_auc - self.config.performance_tolerance
        )
        verdict = "degraded" if degraded else "ok"
        summary: dict[str, Any] = {
            "count": s.count,
            "positives": s.positives,
            "threshold": s.threshold,
            **metrics,
            "expected_auc": stream.expected_auc,
            "reliability": [
                {
                    "lower": b.lower,
                    "upper": b.upper,
                    "count": b.count,
                    "mean_predicted": b.mean_predicted,
                    "observed_rate": b.observed_rate,
                }
                for b in s.reliability
            ],
        }
        payload = {
            "verdict": verdict,
            "auc": s.auc,
            "expected_auc": stream.expected_auc,
            "tolerance": self.config.performance_tolerance,
            "labels": s.count,
        }
        window = self.ws.metadata.record_monitor_window(
            stream.model,
            stream.version,
            kind="performance",
            start_time=_iso(done.start_time),
            end_time=_iso(done.end_time),
            rows=done.rows,
            verdict=verdict,
            summary=summary,
            event_kind=DEGRADED_EVENT if degraded else None,
            event_payload=payload,
        )
        self.metrics.observe_performance(stream.model, stream.version, verdict, metrics)
        if degraded:
            self._alert({"kind": DEGRADED_EVENT, "model": stream.model, "version": stream.version,
                         "window_id": window.id, **payload})  # fmt: skip
        return WindowCheck(
            stream.model, stream.version, "performance", verdict, window, performance=s
        )

    def _alert(self, alert: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception:  # a broken sink never stops monitoring
                _log.exception("alert sink %r failed", sink)
