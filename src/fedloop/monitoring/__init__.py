"""Drift tests, windows, performance with delayed labels, alerts, the monitor and its report (issue 5)."""

from fedloop.core.config import DriftConfig, MonitoringConfig
from fedloop.monitoring.alerts import AlertSink, WebhookSink
from fedloop.monitoring.drift import (
    ColumnDrift,
    DriftReport,
    DriftTest,
    MultivariateResult,
    TestResult,
    check_drift,
    domain_classifier_test,
)
from fedloop.monitoring.ingest import IngestBody, LabelBatch, PredictionBatch, parse_ingest_body
from fedloop.monitoring.metrics import MonitorMetrics
from fedloop.monitoring.monitor import IngestResult, Monitor, WindowCheck
from fedloop.monitoring.performance import (
    Joined,
    LabelJoiner,
    PerformanceAccumulator,
    PerformanceSummary,
    PerformanceWindow,
    ReliabilityBin,
    WindowedPerformance,
)
from fedloop.monitoring.reference import (
    attach_reference,
    model_columns,
    predict_onnx,
    prediction_columns,
)
from fedloop.monitoring.report import ReportSummary, render_report
from fedloop.monitoring.windows import ClosedWindow, ProfileAccumulator, WindowedProfiles

__all__ = [
    "AlertSink",
    "ClosedWindow",
    "ColumnDrift",
    "DriftConfig",
    "DriftReport",
    "DriftTest",
    "IngestBody",
    "IngestResult",
    "Joined",
    "LabelBatch",
    "LabelJoiner",
    "Monitor",
    "MonitorMetrics",
    "MonitoringConfig",
    "MultivariateResult",
    "PerformanceAccumulator",
    "PerformanceSummary",
    "PerformanceWindow",
    "PredictionBatch",
    "ProfileAccumulator",
    "ReliabilityBin",
    "ReportSummary",
    "TestResult",
    "WebhookSink",
    "WindowCheck",
    "WindowedPerformance",
    "WindowedProfiles",
    "attach_reference",
    "check_drift",
    "domain_classifier_test",
    "model_columns",
    "parse_ingest_body",
    "predict_onnx",
    "prediction_columns",
    "render_report",
]
