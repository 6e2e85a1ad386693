"""The append-only audit log: every event hash-chained to the one before it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select

from fedloop.core import AuditChainBroken, utc_now
from fedloop.store.metadata._common import check_text, insert_ignore
from fedloop.store.metadata.records import AuditEvent
from fedloop.store.metadata.tables import audit_head, events

__all__ = [
    "GENESIS_HASH",
    "AuditReport",
    "append_event",
    "event_hash",
    "latest_seq",
    "list_events",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
_HEAD_FOR_UPDATE = (
    select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
)
_HEAD_UPDATE = (
    audit_head.update()
    .where(audit_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
_VERIFY_BATCH = 5_000


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def event_hash(
    *, prev_hash: str, seq: int, at_us: int, kind: str, actor: str, subject: str, payload: str
) -> str:
    """Return the sha256 that chains an event to its predecessor.

    Parameters
    ----------
    prev_hash : str
        Hash of the previous event (``GENESIS_HASH`` for the first).
    seq, at_us, kind, actor, subject, payload
        The event's stored fields; ``payload`` is its canonical JSON text.

    Returns
    -------
    str
        64 lowercase hex characters.
    """
    body = _canonical(
        {"seq": seq, "at_us": at_us, "kind": kind, "actor": actor, "subject": subject}
    )
    digest = hashlib.sha256()
    for part in (prev_hash, body, payload):
        digest.update(part.encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def append_event(
    conn: Connection,
    *,
    kind: str,
    subject: str,
    payload: Mapping[str, Any] | None = None,
    actor: str = "system",
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event inside the caller's write transaction.

    The chain head row is locked (``FOR UPDATE`` on PostgreSQL; SQLite writers are already
    serialized), so concurrent writers extend one linear chain.

    Parameters
    ----------
    conn : Connection
        A connection inside a write transaction: the event commits or rolls back with the change.
    kind : str
        Event type, dotted (``"model.version_registered"``).
    subject : str
        What it is about (``"model:fraud/3"``).
    payload : Mapping or None
        JSON-serializable details.
    actor : str, default "system"
        Who did it.
    at : datetime or None
        Event time; now by default.

    Returns
    -------
    AuditEvent
        The stored event.
    """
    check_text(kind, field="kind", max_chars=100)
    check_text(subject, field="subject", max_chars=500)
    check_text(actor, field="actor", max_chars=200)
    when = (at or utc_now()).astimezone(UTC)
    at_us = int(when.timestamp() * 1_000_000)
    text_payload = _canonical(payload or {})
    head = conn.execute(_HEAD_FOR_UPDATE).first()
    if head is None:  # migration 0001 seeds the row; recreate it if someone removed it
        conn.execute(
            insert_ignore(
                conn.dialect.name, audit_head, ["id"], {"id": 1, "seq": 0, "hash": GENESIS_HASH}
            )
        )
        head = conn.execute(_HEAD_FOR_UPDATE).one()
    prev_seq, prev_hash = int(head.seq), str(head.hash)
    seq = prev_seq + 1
    digest = event_hash(
        prev_hash=prev_hash,
        seq=seq,
        at_us=at_us,
        kind=kind,
        actor=actor,
        subject=subject,
        payload=text_payload,
    )
    # Prebuilt statements with bound parameters: SQLAlchemy compiles them once.
    conn.execute(
        events.insert(),
        {
            "seq": seq,
            "at_us": at_us,
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "payload": text_payload,
            "prev_hash": prev_hash,
            "hash": digest,
        },
    )
    conn.execute(_HEAD_UPDATE, {"new_seq": seq, "new_hash": digest})
    return AuditEvent(
        seq=seq,
        at=datetime.fromtimestamp(at_us / 1_000_000, UTC),
        kind=kind,
        actor=actor,
        subject=subject,
        payload=json.loads(text_payload),
        prev_hash=prev_hash,
        hash=digest,
    )


def _to_event(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=int(row.seq),
        at=datetime.fromtimestamp(int(row.at_us) / 1_000_000, UTC),
        kind=row.kind,
        actor=row.actor,
        subject=row.subject,
        payload=json.loads(row.payload),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def list_events(
    engine: Engine,
    *,
    kind: str | None = None,
    subject: str | None = None,
    after_seq: int = 0,
    limit: int = 100,
) -> list[AuditEvent]:
    """Return events in chain order, optionally filtered.

    Parameters
    ----------
    engine : Engine
        The store's engine.
    kind : str or None
        Only events of this kind; a trailing ``*`` matches a prefix (``"model.*"``).
    subject : str or None
        Only events about this subject.
    after_seq : int, default 0
        Only events after this sequence number.
    limit : int, default 100
        At most this many.

    Returns
    -------
    list of AuditEvent
        Oldest first.
    """
    query = select(events).where(events.c.seq > after_seq).order_by(events.c.seq).limit(limit)
    if kind is not None:
        if kind.endswith("*"):
            query = query.where(events.c.kind.startswith(kind[:-1], autoescape=True))
        else:
            query = query.where(events.c.kind == kind)
    if subject is not None:
        query = query.where(events.c.subject == subject)
    with engine.connect() as conn:
        return [_to_event(row) for row in conn.execute(query)]


def latest_seq(engine: Engine) -> int:
    """Return the sequence number of the newest event (0 when the log is empty).

    Parameters
    ----------
    engine : Engine
        The store's engine.

    Returns
    -------
    int
        The largest ``seq`` stored (readers page backwards from it).
    """
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of :func:`verify_chain`."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(engine: Engine, *, raise_on_error: bool = False) -> AuditReport:
    """Recompute every hash and check the links, the numbering and the head row.

    Finds an edited event (its hash no longer matches), a deleted or inserted event (a gap
    in the numbering or a broken link) and a truncated tail (the head row points past the
    last event).

    Parameters
    ----------
    engine : Engine
        The store's engine.
    raise_on_error : bool, default False
        Raise :class:`AuditChainBroken` instead of returning a failed report.

    Returns
    -------
    AuditReport
        ``ok`` is True when the whole chain is intact.

    Raises
    ------
    AuditChainBroken
        When ``raise_on_error`` and the chain is broken.
    """
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    bad: tuple[int, str] | None = None
    with engine.connect() as conn:
        head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).first()
        total = int(conn.execute(select(func.count()).select_from(events)).scalar_one())
        last = 0
        while bad is None:
            rows = conn.execute(
                select(events)
                .where(events.c.seq > last)
                .order_by(events.c.seq)
                .limit(_VERIFY_BATCH)
            ).all()
            if not rows:
                break
            for row in rows:
                seq = int(row.seq)
                if seq != expected_seq:
                    bad = (expected_seq, f"event {expected_seq} is missing (next is {seq})")
                    break
                if row.prev_hash != prev_hash:
                    bad = (seq, f"event {seq} does not link to event {seq - 1}")
                    break
                recomputed = event_hash(
                    prev_hash=row.prev_hash,
                    seq=seq,
                    at_us=int(row.at_us),
                    kind=row.kind,
                    actor=row.actor,
                    subject=row.subject,
                    payload=row.payload,
                )
                if recomputed != row.hash:
                    bad = (seq, f"event {seq} was edited (its hash no longer matches)")
                    break
                prev_hash, expected_seq, checked, last = row.hash, seq + 1, checked + 1, seq
    head_seq = int(head.seq) if head else 0
    head_hash = str(head.hash) if head else GENESIS_HASH
    if bad is None and (head_seq != checked or head_hash != prev_hash):
        bad = (checked + 1, f"the chain head says {head_seq} events but {checked} remain intact")
    if bad is None and total != checked:
        bad = (checked + 1, f"{total - checked} events lie outside the chain")
    report = AuditReport(
        ok=bad is None,
        checked=checked,
        head_seq=head_seq,
        head_hash=head_hash,
        first_bad_seq=bad[0] if bad else None,
        reason=bad[1] if bad else None,
    )
    if bad is not None and raise_on_error:
        raise AuditChainBroken(
            f"the audit log is broken at event {bad[0]}: {bad[1]}.",
            field="events",
            value=bad[0],
            hint="Restore the database from a backup; the events from this one on cannot be trusted.",
        )
    return report
