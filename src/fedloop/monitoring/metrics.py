"""Prometheus gauges of the monitor: drift verdicts and statistics, live performance, ingest counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["MonitorMetrics"]


class MonitorMetrics:
    """The monitor's metrics, in their own ``CollectorRegistry`` (several monitors per process in tests).

    Names (prefixed ``fedloop_monitor_``): ``rows_total`` {model, version, role} (predictions
    ingested), ``labels_total`` {outcome: joined, pending, expired}, ``ingest_errors_total``
    {code}, ``drift_detected`` {model, version} (1 when the last window drifted),
    ``drifted_columns`` {model, version}, ``column_drift_statistic`` and
    ``column_drift_p_value`` {model, version, column, test} (the last window's),
    ``column_drifted`` {model, version, column}, ``performance`` {model, version, metric}
    (auc, precision, recall, brier, ece of the last performance window) and
    ``windows_total`` {model, version, kind, verdict}.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.rows = Counter(
            "fedloop_monitor_rows",
            "Prediction rows ingested, by model version and role.",
            ["model", "version", "role"],
            registry=reg,
        )
        self.labels = Counter(
            "fedloop_monitor_labels", "Labels received, by outcome.", ["outcome"], registry=reg
        )
        self.ingest_errors = Counter(
            "fedloop_monitor_ingest_errors",
            "Ingest bodies refused, by error code.",
            ["code"],
            registry=reg,
        )
        self.drift_detected = Gauge(
            "fedloop_monitor_drift_detected",
            "1 when the last checked window of the version drifted, else 0.",
            ["model", "version"],
            registry=reg,
        )
        self.drifted_columns = Gauge(
            "fedloop_monitor_drifted_columns",
            "Columns flagged in the last checked window.",
            ["model", "version"],
            registry=reg,
        )
        self.statistic = Gauge(
            "fedloop_monitor_column_drift_statistic",
            "The last window's test statistic per column.",
            ["model", "version", "column", "test"],
            registry=reg,
        )
        self.p_value = Gauge(
            "fedloop_monitor_column_drift_p_value",
            "The last window's corrected p-value per column (p-value tests only).",
            ["model", "version", "column", "test"],
            registry=reg,
        )
        self.column_drifted = Gauge(
            "fedloop_monitor_column_drifted",
            "1 when the column was flagged in the last window.",
            ["model", "version", "column"],
            registry=reg,
        )
        self.performance = Gauge(
            "fedloop_monitor_performance",
            "The last performance window's metrics.",
            ["model", "version", "metric"],
            registry=reg,
        )
        self.windows = Counter(
            "fedloop_monitor_windows",
            "Windows checked, by kind and verdict.",
            ["model", "version", "kind", "verdict"],
            registry=reg,
        )

    def observe_drift(self, model: str, version: int, report: Mapping[str, Any]) -> None:
        """Set the gauges from one drift report (``DriftReport.to_dict()``)."""
        v = str(version)
        self.drift_detected.labels(model, v).set(1.0 if report["verdict"] == "drift" else 0.0)
        self.drifted_columns.labels(model, v).set(float(report["num_drifted"]))
        self.windows.labels(model, v, "drift", report["verdict"]).inc()
        for col in report["columns"]:
            name, test = col["column"], col["test"]
            if col.get("statistic") is not None:
                self.statistic.labels(model, v, name, test).set(float(col["statistic"]))
            p = col.get("adjusted_p_value")
            if p is not None:
                self.p_value.labels(model, v, name, test).set(float(p))
            self.column_drifted.labels(model, v, name).set(1.0 if col["drifted"] else 0.0)

    def observe_performance(
        self, model: str, version: int, verdict: str, metrics: Mapping[str, float | None]
    ) -> None:
        """Set the performance gauges from one window's metrics (None values are skipped)."""
        v = str(version)
        self.windows.labels(model, v, "performance", verdict).inc()
        for name, value in metrics.items():
            if value is not None:
                self.performance.labels(model, v, name).set(float(value))
