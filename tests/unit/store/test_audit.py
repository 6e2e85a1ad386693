"""The hash-chained audit log: verification finds edits, deletions and truncation."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedloop.core import AuditChainBroken
from fedloop.store import SqlMetadataStore
from fedloop.store.audit import GENESIS_HASH, verify_chain


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    """Return a SQLite store without audit events."""
    opened = SqlMetadataStore(f"sqlite:///{tmp_path / 'audit.db'}")
    yield opened
    opened.close()


@pytest.fixture
def store(empty_store: SqlMetadataStore) -> SqlMetadataStore:
    """Return a SQLite store holding five audit events."""
    for i in range(1, 6):
        empty_store.append_event("test.event", f"item:{i}", {"i": i}, actor="tester")
    return empty_store


def _execute(store: SqlMetadataStore, sql: str) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql(sql)


def test_intact_chain_verifies(store: SqlMetadataStore) -> None:
    """An untouched chain verifies, and the head is the last event."""
    # Act
    report = store.verify_audit()

    # Assert
    assert report.ok
    assert (report.checked, report.head_seq) == (5, 5)
    assert report.head_hash == store.list_events()[-1].hash
    assert (report.first_bad_seq, report.reason) == (None, None)


def test_events_link_to_their_predecessor(store: SqlMetadataStore) -> None:
    """Each event's prev_hash is the hash of the event before it; the first links to genesis."""
    # Act
    events = store.list_events()

    # Assert
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))


def test_empty_log_verifies(empty_store: SqlMetadataStore) -> None:
    """A store without events has a valid, empty chain."""
    # Act
    report = empty_store.verify_audit()

    # Assert
    assert report.ok
    assert (report.checked, report.head_seq, report.head_hash) == (0, 0, GENESIS_HASH)


def test_edited_payload_is_detected(store: SqlMetadataStore) -> None:
    """Changing an event's payload breaks the chain at that event."""
    # Arrange
    _execute(store, """UPDATE events SET payload = '{"i":99}' WHERE seq = 3""")

    # Act
    report = store.verify_audit()

    # Assert
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.reason is not None
    assert "edited" in report.reason
    assert report.checked == 2


def test_edited_actor_is_detected(store: SqlMetadataStore) -> None:
    """Changing who did something breaks the chain at that event."""
    # Arrange
    _execute(store, "UPDATE events SET actor = 'mallory' WHERE seq = 2")

    # Act
    report = store.verify_audit()

    # Assert
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_deleted_middle_event_is_detected(store: SqlMetadataStore) -> None:
    """Deleting an event in the middle leaves a gap that verification reports."""
    # Arrange
    _execute(store, "DELETE FROM events WHERE seq = 3")

    # Act
    report = store.verify_audit()

    # Assert
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.reason is not None
    assert "missing" in report.reason


def test_deleted_last_event_is_detected(store: SqlMetadataStore) -> None:
    """Deleting the newest event no longer matches the chain head."""
    # Arrange
    _execute(store, "DELETE FROM events WHERE seq = 5")

    # Act
    report = store.verify_audit()

    # Assert
    assert not report.ok
    assert report.first_bad_seq == 5
    assert report.checked == 4
    assert report.head_seq == 5
    assert report.reason is not None
    assert "head" in report.reason


def test_rewritten_chain_tail_is_detected(store: SqlMetadataStore) -> None:
    """Deleting the newest event and rolling back only the head's seq is detected."""
    # Arrange
    _execute(store, "DELETE FROM events WHERE seq = 5")
    _execute(store, "UPDATE audit_head SET seq = 4")

    # Act
    report = store.verify_audit()

    # Assert
    assert not report.ok
    assert report.first_bad_seq == 5


def test_event_outside_chain_is_detected(store: SqlMetadataStore) -> None:
    """An event inserted past the head breaks verification."""
    # Arrange
    _execute(
        store,
        "INSERT INTO events (seq, at_us, kind, actor, subject, payload, prev_hash, hash) "
        f"VALUES (6, 0, 'forged', 'mallory', 'x', '{{}}', '{'0' * 64}', '{'1' * 64}')",
    )

    # Act
    report = store.verify_audit()

    # Assert
    assert not report.ok
    assert report.first_bad_seq == 6


def test_verify_chain_raise_on_error_raises_audit_chain_broken(store: SqlMetadataStore) -> None:
    """raise_on_error turns a broken chain into AuditChainBroken naming the event."""
    # Arrange
    _execute(store, """UPDATE events SET payload = '{"i":99}' WHERE seq = 4""")

    # Act / Assert
    with pytest.raises(AuditChainBroken, match=r"event 4") as info:
        verify_chain(store.engine, raise_on_error=True)
    assert info.value.field == "events"
    assert info.value.value == 4


def test_verify_chain_raise_on_error_returns_report_when_intact(store: SqlMetadataStore) -> None:
    """raise_on_error returns the report of an intact chain."""
    # Act
    report = verify_chain(store.engine, raise_on_error=True)

    # Assert
    assert report.ok


def test_concurrent_appends_form_one_chain(empty_store: SqlMetadataStore) -> None:
    """Four threads appending 25 events each extend one linear, valid chain."""
    # Arrange
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def append(worker: int) -> None:
        try:
            start.wait()
            for i in range(25):
                empty_store.append_event("test.concurrent", f"worker:{worker}", {"i": i})
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Assert
    assert errors == []
    report = empty_store.verify_audit()
    assert report.ok
    assert report.checked == report.head_seq == 100
    events = empty_store.list_events(limit=1000)
    assert [e.seq for e in events] == list(range(1, 101))
    assert sorted(e.payload["i"] for e in events if e.subject == "worker:0") == list(range(25))


def test_list_events_filters_by_kind_prefix(store: SqlMetadataStore) -> None:
    """A kind ending in '*' matches by prefix; subject and after_seq filter too."""
    # Arrange
    store.append_event("other.event", "item:1")

    # Act
    by_prefix = store.list_events(kind="test.*")
    by_subject = store.list_events(subject="item:1")
    after = store.list_events(after_seq=4)

    # Assert
    assert [e.seq for e in by_prefix] == [1, 2, 3, 4, 5]
    assert [e.seq for e in by_subject] == [1, 6]
    assert [e.seq for e in after] == [5, 6]


def test_append_event_returns_stored_event(store: SqlMetadataStore) -> None:
    """append_event returns the event as list_events reads it back."""
    # Act
    event = store.append_event("test.roundtrip", "item:x", {"nested": {"a": [1, 2]}}, actor="bob")

    # Assert
    assert store.list_events(after_seq=5) == [event]
    assert event.payload == {"nested": {"a": [1, 2]}}
    assert event.at.utcoffset() is not None
