"""Dashboard page of the audit log: newest events first, filters, and the chain's verification."""

from __future__ import annotations

import json
import re
import threading
import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedloop.core import InvalidInput
from fedloop.store import AuditEvent, AuditReport, SqlMetadataStore
from fedloop.ui.pages import Dashboard, page_endpoint, render
from fedloop.ui.sessions import Viewer

__all__ = ["audit_routes", "newest_events", "subject_href"]

_PAGE = 100
_CHUNK = 1_000
_MAX_SCAN = 50_000
_VERIFY_CACHE_S = 5.0
_MODEL = re.compile(r"^model:(?P<name>[^/@]+)(?:/(?P<version>\d+)|@.*)?$")
_RUN = re.compile(r"^run:(?P<id>[^/]+)(?:/.*)?$")


def subject_href(subject: str, *, prefix: str) -> str | None:
    """Return the dashboard page an event's subject is about, or None.

    ``model:NAME/VERSION`` leads to the version, ``model:NAME`` and ``model:NAME@ALIAS`` to
    the model, ``run:ID`` and ``run:ID/round:N`` to the run, ``deployment:NAME`` to the
    deployments.
    """
    if m := _MODEL.match(subject):
        base = f"{prefix}/models/{quote(m['name'], safe='')}"
        return f"{base}/{m['version']}" if m["version"] else base
    if m := _RUN.match(subject):
        return f"{prefix}/runs/{quote(m['id'], safe='')}"
    if subject.startswith("deployment:"):
        return f"{prefix}/deployments"
    return None


def newest_events(
    metadata: SqlMetadataStore,
    *,
    before: int,
    kind: str | None = None,
    subject: str | None = None,
    limit: int = _PAGE,
) -> tuple[list[AuditEvent], int | None]:
    """Return up to ``limit`` events with ``seq < before``, newest first, and the next page's bound.

    The chain numbers events 1, 2, 3… without gaps, so the log is read backwards in chunks;
    with a filter, at most ``_MAX_SCAN`` events are scanned per page.

    Returns
    -------
    (list of AuditEvent, int or None)
        The events, and the ``before`` of the next (older) page; None at the start of the log.
    """
    found: list[AuditEvent] = []
    upper = before
    scanned = 0
    while upper > 1 and len(found) < limit and scanned < _MAX_SCAN:
        lower = max(0, upper - 1 - _CHUNK)
        batch = metadata.list_events(kind=kind, subject=subject, after_seq=lower, limit=_CHUNK)
        found.extend(reversed([e for e in batch if e.seq < upper]))
        scanned += upper - 1 - lower
        upper = lower + 1
    if len(found) > limit:
        found = found[:limit]
        return found, found[-1].seq
    return found, upper if upper > 1 else None


def audit_routes(dash: Dashboard) -> list[Route]:
    """Return ``/audit``: the events (``?kind=&subject=&before=``) and the chain's state."""
    metadata = dash.ws.metadata
    lock = threading.Lock()
    cache: list[tuple[float, AuditReport]] = []

    def verified() -> tuple[AuditReport, float]:
        """Verify the chain at most every few seconds (it rehashes every event)."""
        with lock:
            now = time.monotonic()
            if not cache or cache[0][0] + _VERIFY_CACHE_S <= now:
                started = time.perf_counter()
                report = metadata.verify_audit()
                cache[:] = [(now, report)]
                return report, time.perf_counter() - started
            return cache[0][1], 0.0

    def audit_page(request: Request, viewer: Viewer) -> Response:
        params = request.query_params
        kind = params.get("kind", "").strip() or None
        subject = params.get("subject", "").strip() or None
        raw = params.get("before", "")
        if raw and not raw.isdigit():
            raise InvalidInput(f"`before` must be an event number; got {raw!r}.", field="before")
        report, seconds = verified()
        before = int(raw) if raw else metadata.latest_event_seq() + 1
        events, older = newest_events(metadata, before=before, kind=kind, subject=subject)
        rows = [
            (
                e,
                json.dumps(e.payload, sort_keys=True, default=str),
                subject_href(e.subject, prefix=dash.prefix),
            )
            for e in events
        ]
        return render(
            dash, request, viewer, "audit.html", report=report, verify_seconds=seconds,
            rows=rows, kind=kind or "", subject=subject or "",
            older=dash.url("/audit", kind=kind, subject=subject, before=older) if older else None,
            newest=dash.url("/audit", kind=kind, subject=subject) if raw else None,
        )  # fmt: skip

    return [Route("/audit", page_endpoint(dash, "viewer", audit_page), name="audit")]
