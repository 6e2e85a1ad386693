"""The monitor: payload-log bodies become windows, checks, stored findings, gauges and alerts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from _graphs import NUM_FEATURES, make_graph
from _loopback import Receiver
from _payloads import MODEL, body
from fedloop.core import MalformedBody, MonitoringConfig
from fedloop.monitoring import Monitor, WebhookSink, attach_reference, predict_onnx
from fedloop.registry import ModelRegistry
from fedloop.store import Workspace

RNG = np.random.default_rng(0)
TRAIN = RNG.normal(size=(20_000, NUM_FEATURES))


def _config(**overrides: object) -> MonitoringConfig:
    values: dict[str, object] = {"window_rows": 2_000, "performance_window_labels": 500}
    values.update(overrides)
    return MonitoringConfig.model_validate(values)


def _scores(x: np.ndarray, version: int = 1) -> np.ndarray:
    """Return what version ``version`` of the test model answers for ``x``."""
    return predict_onnx(make_graph(version), x)[:, 0]


def _rows(n: int, *, shift: float = 0.0, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, NUM_FEATURES))
    x[:, 0] += shift
    return x


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Return a webhook receiver on loopback."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def central(workspace: Workspace, registry: ModelRegistry) -> ModelRegistry:
    """Attach a reference built from the training rows to v1."""
    attach_reference(registry, workspace.metadata.get_model_version(MODEL, 1), TRAIN)
    return registry


def test_a_shifted_window_is_flagged_stored_audited_and_alerted(
    workspace: Workspace, central: ModelRegistry, receiver: Receiver
) -> None:
    """Same-distribution traffic passes; a shifted feature drifts, with event, gauge and webhook."""
    # Arrange
    sink = WebhookSink(receiver.url)
    monitor = Monitor(workspace, _config(), sinks=[sink])

    # Act
    calm_rows, shifted_rows = _rows(2_000), _rows(2_000, shift=1.0, seed=2)
    calm = monitor.ingest(body(calm_rows, _scores(calm_rows)))
    shifted = monitor.ingest(body(shifted_rows, _scores(shifted_rows), start_id=5_000))
    sink.close()

    # Assert
    assert [c.verdict for c in calm.checks] == ["no_drift"]
    (check,) = shifted.checks
    assert check.verdict == "drift"
    assert check.report is not None
    assert "features[0]" in check.report.drifted_columns
    assert not {"features[1]", "features[2]", "features[3]"} & set(check.report.drifted_columns)
    assert check.report.find_column("probability") is not None
    windows = workspace.metadata.list_monitor_windows(MODEL, kind="drift")
    assert [w.verdict for w in windows] == ["no_drift", "drift"]
    event = workspace.metadata.list_events(kind="monitor.drift_detected")[-1]
    assert event.payload["window_id"] == windows[-1].id
    assert event.payload["findings"][0]["column"] == "features[0]"
    assert monitor.metrics.drift_detected.labels(MODEL, "1")._value.get() == 1.0
    (alert,) = receiver.bodies
    assert (alert["kind"], alert["model"], alert["version"]) == ("monitor.drift_detected", MODEL, 1)


def test_a_version_without_a_reference_takes_it_from_its_first_window(
    workspace: Workspace, registry: ModelRegistry
) -> None:
    """The first window of traffic becomes the reference (source traffic); later ones are checked."""
    # Arrange
    monitor = Monitor(workspace, _config())

    # Act
    first = monitor.ingest(body(_rows(2_000), np.full(2_000, 0.5), version=2))
    later = monitor.ingest(
        body(_rows(2_000, shift=1.5, seed=3), np.full(2_000, 0.5), version=2, start_id=9_000)
    )

    # Assert
    assert first.checks == ()
    record = workspace.metadata.find_profile(workspace.metadata.get_model_version(MODEL, 2).id)
    assert record is not None
    assert (record.source, record.num_rows) == ("traffic", 2_000)
    assert [c.verdict for c in later.checks] == ["drift"]


def test_delayed_labels_fill_performance_windows_and_flag_degradation(
    workspace: Workspace, central: ModelRegistry
) -> None:
    """Labels joined by request id give AUC per window; worse than registered AUC is degraded."""
    # Arrange
    monitor = Monitor(workspace, _config())
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, size=1_000)
    good = np.clip(labels * 0.6 + rng.uniform(0, 0.4, size=1_000), 0, 1)
    noise = rng.uniform(size=1_000)

    # Act: the first 500 requests are scored well, the next 500 at random
    scores = np.concatenate([good[:500], noise[500:]])
    monitor.ingest(body(_rows(1_000), scores))
    result = monitor.ingest(
        body(
            np.empty((0, NUM_FEATURES)),
            np.empty(0),
            labels=[(f"r{i}", int(labels[i])) for i in range(1_000)],
        )
    )

    # Assert
    perf = [c for c in result.checks if c.kind == "performance"]
    assert [c.verdict for c in perf] == ["ok", "degraded"]
    assert perf[0].performance is not None
    assert perf[0].performance.auc == pytest.approx(1.0, abs=1e-3)
    assert perf[1].performance is not None
    assert perf[1].performance.auc < 0.7
    assert workspace.metadata.list_events(kind="monitor.performance_degraded")
    stored = workspace.metadata.list_monitor_windows(MODEL, kind="performance")
    assert [w.rows for w in stored] == [500, 500]
    assert stored[0].summary["reliability"]


def test_shadow_predictions_are_joined_to_the_same_labels(
    workspace: Workspace, central: ModelRegistry
) -> None:
    """A label counts for the primary's and the shadow's prediction of the same request."""
    # Arrange
    monitor = Monitor(workspace, _config(performance_window_labels=100))
    x = _rows(100)
    labels = [(f"r{i}", i % 2) for i in range(100)]

    # Act
    monitor.ingest(body(x, np.full(100, 0.3), version=1))
    monitor.ingest(body(x, np.linspace(0, 1, 100), version=2, role="shadow"))
    result = monitor.ingest(body(np.empty((0, NUM_FEATURES)), np.empty(0), labels=labels))

    # Assert
    assert sorted(c.version for c in result.checks if c.kind == "performance") == [1, 2]


def test_bad_bodies_change_nothing(workspace: Workspace, central: ModelRegistry) -> None:
    """A malformed body raises MalformedBody and stores nothing; unknown versions are skipped."""
    # Arrange
    monitor = Monitor(workspace, _config(window_rows=10))

    # Act
    with pytest.raises(MalformedBody):
        monitor.ingest(b'{"predictions": [{"model": "fraud"}]}')
    skipped = monitor.ingest(body(_rows(20), np.full(20, 0.5), version=7))

    # Assert
    assert skipped.checks == ()
    assert workspace.metadata.list_monitor_windows(MODEL) == []
    assert monitor.metrics.ingest_errors.labels("unknown_model_version")._value.get() == 1.0


def test_flush_checks_the_open_windows(workspace: Workspace, central: ModelRegistry) -> None:
    """flush() closes and checks windows that are not full yet."""
    # Arrange
    monitor = Monitor(workspace, _config())
    rows = _rows(300)
    monitor.ingest(body(rows, _scores(rows)))

    # Act
    checks = monitor.flush()

    # Assert
    assert [(c.kind, c.window.rows) for c in checks] == [("drift", 300)]
