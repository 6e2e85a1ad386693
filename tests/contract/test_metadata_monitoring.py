"""Contract suite of the monitoring records (reference profiles, monitor windows) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fedloop.core import InvalidInput, ModelVersionId, NotFound, Signature, TensorSpec
from fedloop.store import ModelVersion, Project, SqlMetadataStore

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 4)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
)
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture
def version(store: SqlMetadataStore, project: Project) -> ModelVersion:
    """Return a registered version of model "fraud"."""
    return store.create_model_version(
        project.id, "fraud", weights_digest="a" * 64, onnx_digest="b" * 64, signature=SIGNATURE
    )


def test_attach_profile_is_found_and_audited(
    store: SqlMetadataStore, version: ModelVersion
) -> None:
    """An attached profile is found by version id and leaves a model.profile_attached event."""
    # Act
    store.attach_profile(version.id, profile_digest="c" * 64, source="federated", num_rows=1200)
    found = store.find_profile(version.id)

    # Assert
    assert found is not None
    assert (found.profile_digest, found.source, found.num_rows) == ("c" * 64, "federated", 1200)
    event = store.list_events(kind="model.profile_attached")[-1]
    assert event.subject == "model:fraud/1"
    assert event.payload["source"] == "federated"


def test_attach_profile_replaces_the_previous_one(
    store: SqlMetadataStore, version: ModelVersion
) -> None:
    """Attaching again replaces the version's profile (one per version)."""
    # Act
    store.attach_profile(version.id, profile_digest="c" * 64, source="central", num_rows=1)
    store.attach_profile(version.id, profile_digest="d" * 64, source="traffic", num_rows=2)

    # Assert
    found = store.find_profile(version.id)
    assert found is not None
    assert found.profile_digest == "d" * 64


def test_profile_digest_is_kept_by_garbage_collection(
    store: SqlMetadataStore, version: ModelVersion
) -> None:
    """A profile's artifact is in the keep-set of garbage collection."""
    # Act
    store.attach_profile(version.id, profile_digest="e" * 64, source="central", num_rows=1)

    # Assert
    assert "e" * 64 in store.list_artifact_digests()


def test_attach_profile_refuses_bad_input(store: SqlMetadataStore, version: ModelVersion) -> None:
    """An unknown version or source is refused and nothing is stored."""
    # Act / Assert
    with pytest.raises(NotFound, match="model version"):
        store.attach_profile(
            ModelVersionId("0" * 32), profile_digest="c" * 64, source="central", num_rows=1
        )
    with pytest.raises(InvalidInput, match="source") as info:
        store.attach_profile(version.id, profile_digest="c" * 64, source="laptop", num_rows=1)
    assert info.value.field == "source"
    assert store.find_profile(version.id) is None


def test_monitor_windows_are_listed_oldest_first_with_filters(
    store: SqlMetadataStore, version: ModelVersion
) -> None:
    """Windows come back oldest first, filtered by kind, version and time, capped by limit."""
    # Arrange
    for i in range(4):
        store.record_monitor_window(
            "fraud",
            1,
            kind="drift" if i % 2 == 0 else "performance",
            start_time=T0 + timedelta(minutes=i),
            end_time=T0 + timedelta(minutes=i + 1),
            rows=100 * (i + 1),
            verdict="no_drift" if i % 2 == 0 else "ok",
            summary={"i": i},
        )

    # Act
    drift = store.list_monitor_windows("fraud", kind="drift")
    recent = store.list_monitor_windows("fraud", since=T0 + timedelta(minutes=3))
    last_two = store.list_monitor_windows("fraud", limit=2)

    # Assert
    assert [w.summary["i"] for w in drift] == [0, 2]
    assert [w.rows for w in recent] == [300, 400]
    assert [w.summary["i"] for w in last_two] == [2, 3]
    assert store.list_monitor_windows("fraud", version=2) == []
    assert drift[0].end_time == T0 + timedelta(minutes=1)


def test_drift_window_with_event_is_audited(store: SqlMetadataStore, version: ModelVersion) -> None:
    """A window recorded with an event kind appends that event with the window id."""
    # Act
    window = store.record_monitor_window(
        "fraud",
        1,
        kind="drift",
        start_time=T0,
        end_time=T0 + timedelta(minutes=1),
        rows=10,
        verdict="drift",
        summary={},
        event_kind="monitor.drift_detected",
        event_payload={"columns": ["x[0]"]},
    )

    # Assert
    event = store.list_events(kind="monitor.drift_detected")[-1]
    assert event.payload == {"columns": ["x[0]"], "window_id": window.id}
    assert store.verify_audit().ok


def test_record_monitor_window_refuses_unknown_kind(
    store: SqlMetadataStore, version: ModelVersion
) -> None:
    """An unknown kind or verdict is refused naming the field, and nothing is stored."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        store.record_monitor_window(
            "fraud", 1, kind="vibes", start_time=T0, end_time=T0, rows=1, verdict=None, summary={}
        )
    assert info.value.field == "kind"
    with pytest.raises(InvalidInput) as info:
        store.record_monitor_window(
            "fraud", 1, kind="drift", start_time=T0, end_time=T0, rows=1, verdict="meh", summary={}
        )
    assert info.value.field == "verdict"
    assert store.list_monitor_windows("fraud") == []
