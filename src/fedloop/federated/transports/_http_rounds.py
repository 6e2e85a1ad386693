"""The HTTP transport's round state: published tasks, chunked uploads and client outcomes."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fedloop.core import Conflict, InvalidInput, NotFound, RoundTimeout
from fedloop.federated.messages import FitOutcome, FitRes
from fedloop.federated.transports._auth import Authenticator

__all__ = ["HttpError", "Round", "RoundBoard", "too_large"]

logger = logging.getLogger("fedloop.federated.transports.http")

_MAX_UPLOADS_PER_ROUND = 4


class HttpError(Exception):
    """An answer without a matching :class:`FedloopError` class (401, 413)."""

    def __init__(self, status: int, code: str, message: str, field: str, hint: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, "field": field, "hint": hint}


def too_large(what: str, limit: int) -> HttpError:
    """Return the 413 answer for ``what`` exceeding ``limit`` bytes."""
    return HttpError(
        413,
        "payload_too_large",
        f"{what} exceeds the limit of {limit} bytes.",
        "body",
        "Raise max_upload_bytes on the coordinator or send a smaller model.",
    )


@dataclass
class _Upload:
    of: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    received: int = 0
    refused: bool = False


@dataclass
class Round:
    """One published round: a task and a model per client, and what came back."""

    round_num: int
    tasks: dict[str, dict[str, Any]]
    models: dict[str, bytes]
    started: float
    timeout_s: float
    outcomes: dict[str, FitOutcome] = field(default_factory=dict)
    uploads: dict[tuple[str, str], _Upload] = field(default_factory=dict)
    bytes_down: Counter[str] = field(default_factory=Counter)
    is_open: bool = True

    def missing(self, client_id: str, reason: str) -> FitOutcome:
        """Return the outcome of a client that sent no result: timed out, with the reason."""
        return FitOutcome(
            client_id,
            None,
            reason,
            timed_out=True,
            seconds=time.monotonic() - self.started,
            bytes_down=self.bytes_down[client_id],
        )


class RoundBoard:
    """What the coordinator published and what clients sent back, shared by two threads.

    The coordinator's thread publishes a round and waits on the condition; the server's event
    loop answers requests against it. Every method takes the lock briefly and never does I/O.

    Parameters
    ----------
    tokens : Authenticator
        Who the enrolled clients are (a token table or the store's credentials).
    chunk_bytes, max_upload_bytes : int
        Largest upload chunk and largest result, in bytes.
    heartbeat_timeout_s : float
        A client not heard from for this long is neither listed nor waited for.
    on_change : callable
        Called (from any thread) after the published round or the run's state changed, to
        wake long polls.
    """

    def __init__(
        self,
        tokens: Authenticator,
        *,
        chunk_bytes: int,
        max_upload_bytes: int,
        heartbeat_timeout_s: float,
        on_change: Callable[[], None],
    ) -> None:
        self._tokens = tokens
        self.chunk_bytes = chunk_bytes
        self.max_upload_bytes = max_upload_bytes
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._on_change = on_change
        self._cond = threading.Condition()
        self._last_seen: dict[str, float] = {}
        self._told_done: set[str] = set()
        self._round: Round | None = None
        # (round, client id, upload id) committed in this round and the one before
        self._commits: set[tuple[int, str, str]] = set()
        self.finished = False

    # -- clients ---------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> str | None:
        """Return the client an ``Authorization`` value belongs to (and mark it seen), or None."""
        client_id = self._tokens.authenticate(authorization)
        if client_id is not None:
            self.touch(client_id)
        return client_id

    def touch(self, client_id: str) -> None:
        """Record that ``client_id`` was heard from now."""
        with self._cond:
            self._last_seen[client_id] = time.monotonic()
            self._cond.notify_all()

    def list_clients(self) -> list[str]:
        """Return the clients heard from within ``heartbeat_timeout_s``, sorted."""
        now = time.monotonic()
        with self._cond:
            return sorted(
                c for c, seen in self._last_seen.items() if now - seen <= self.heartbeat_timeout_s
            )

    def wait_for_clients(self, num: int, *, timeout_s: float) -> list[str]:
        """Block until ``num`` clients are connected and return them, or raise RoundTimeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            connected = self.list_clients()
            if len(connected) >= num:
                return connected
            if time.monotonic() >= deadline:
                raise RoundTimeout(
                    f"only {len(connected)} of the {num} clients needed connected within "
                    f"{timeout_s:g} s ({', '.join(connected) or 'none'}).",
                    field="min_clients",
                    hint="Start the clients (fedloop federated client ...) or lower --min-clients.",
                )
            with self._cond:
                self._cond.wait(timeout=0.1)

    def wait_told_done(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` until every live client has been told the run is over."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while time.monotonic() < deadline:
                if set(self.list_clients()) <= self._told_done:
                    return
                self._cond.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic())))

    # -- the coordinator's side ------------------------------------------------------------
    def publish(self, current: Round) -> None:
        """Make ``current`` the open round and wake the polls."""
        with self._cond:
            self._round = current
            self._commits = {c for c in self._commits if c[0] >= current.round_num - 1}
        self._on_change()

    def collect(self, current: Round, *, enough: int | None) -> list[FitOutcome]:
        """Wait for the round's outcomes (see :meth:`HttpTransport.fit`), then close it."""
        tasks, timeout_s = current.tasks, current.timeout_s
        with self._cond:
            while True:
                now = time.monotonic()
                self._drop_silent(current, now)
                succeeded = sum(1 for o in current.outcomes.values() if o.result is not None)
                if (
                    len(current.outcomes) >= len(tasks)
                    or (enough is not None and succeeded >= enough)
                    or now >= current.started + timeout_s
                ):
                    break
                self._cond.wait(timeout=min(current.started + timeout_s - now, 0.25))
            current.is_open = False
            self._round = None
            reason = (
                "not needed: enough clients answered"
                if enough is not None and succeeded >= enough
                else f"no result within the round deadline of {timeout_s:g} s"
            )
            outcomes = [current.outcomes.get(c) or current.missing(c, reason) for c in tasks]
        self._on_change()
        return outcomes

    def _drop_silent(self, current: Round, now: float) -> None:
        for client_id in current.tasks:
            if client_id in current.outcomes:
                continue
            seen = max(self._last_seen.get(client_id, current.started), current.started)
            if now - seen > self.heartbeat_timeout_s:
                logger.warning("round %d: lost contact with %s", current.round_num, client_id)
                reason = f"lost contact: no request for {now - seen:.0f} s"
                current.outcomes[client_id] = current.missing(client_id, reason)

    def finish(self) -> None:
        """Mark the run as over; polls answer ``done`` from now on."""
        with self._cond:
            self.finished = True
            self._cond.notify_all()
        self._on_change()

    # -- the clients' side (called by the endpoints) ---------------------------------------
    def poll(self, client_id: str) -> dict[str, Any] | None:
        """Return the client's task, ``{"done": True}``, or None when there is nothing yet."""
        with self._cond:
            self._last_seen[client_id] = time.monotonic()
            if self.finished:
                self._told_done.add(client_id)
                self._cond.notify_all()
                return {"done": True}
            current = self._round
            if current is None or not current.is_open or client_id in current.outcomes:
                return None
            return current.tasks.get(client_id)

    def model_chunk(self, client_id: str, digest: str, chunk: int) -> bytes:
        """Return chunk ``chunk`` of the model offered to ``client_id`` and count it.

        Raises
        ------
        NotFound
            When that model is not offered to the client now.
        InvalidInput
            When the model has no such chunk.
        """
        with self._cond:
            current = self._round
            task = current.tasks.get(client_id) if current is not None else None
            if current is None or task is None or task["model"]["digest"] != digest:
                raise NotFound(
                    f"model {digest[:12]}… is not offered to client {client_id!r} now "
                    "(the round may have ended).",
                    field="digest",
                    hint="Poll /v1/task for the current round.",
                )
            last = task["model"]["chunks"] - 1
            if not 0 <= chunk <= last:
                raise InvalidInput(
                    f"query parameter `chunk` must be an integer in [0, {last}]; got {chunk}.",
                    field="chunk",
                    value=chunk,
                )
            body = current.models[digest][chunk * self.chunk_bytes : (chunk + 1) * self.chunk_bytes]
            current.bytes_down[client_id] += len(body)
        return body

    def check_open(self, client_id: str, round_num: int) -> None:
        """Raise Conflict unless ``client_id`` may submit to ``round_num`` now."""
        with self._cond:
            self._open_round(client_id, round_num)

    def put_chunk(
        self, client_id: str, round_num: int, upload_id: str, *, of: int, chunk: int, body: bytes
    ) -> None:
        """Keep one chunk of an upload.

        Raises
        ------
        Conflict
            For a round the client may not submit to, or too many uploads.
        InvalidInput
            When ``of`` disagrees with the upload's first chunk.
        HttpError
            413 when the upload exceeds ``max_upload_bytes`` (it is then refused for good).
        """
        with self._cond:
            current = self._open_round(client_id, round_num)
            key = (client_id, upload_id)
            upload = current.uploads.get(key)
            if upload is None:
                if sum(1 for c, _ in current.uploads if c == client_id) >= _MAX_UPLOADS_PER_ROUND:
                    raise Conflict(
                        f"client {client_id!r} started too many uploads this round.",
                        field="upload_id",
                    )
                upload = current.uploads[key] = _Upload(of=of)
            upload.received += len(body)
            if upload.refused:
                raise too_large("the result", self.max_upload_bytes)
            if of != upload.of:
                raise InvalidInput(f"this upload has {upload.of} chunks, not {of}.", field="of")
            size = upload.size - len(upload.parts.get(chunk, b"")) + len(body)
            if size > self.max_upload_bytes:
                upload.refused, upload.parts, upload.size = True, {}, 0
                raise too_large("the result", self.max_upload_bytes)
            upload.parts[chunk], upload.size = body, size

    def take_upload(
        self, client_id: str, round_num: int, upload_id: str
    ) -> tuple[list[bytes], int]:
        """Remove a complete upload; return its chunks in order and all bytes the client sent.

        Raises
        ------
        Conflict
            For a round the client may not submit to.
        InvalidInput
            When chunks are missing (the client may send them and commit again).
        """
        with self._cond:
            current = self._open_round(client_id, round_num, upload_id)
            upload = current.uploads.get((client_id, upload_id))
            if upload is None or upload.refused or len(upload.parts) != upload.of:
                have = sorted(upload.parts) if upload is not None else []
                raise InvalidInput(
                    f"upload {upload_id!r} is incomplete: have chunks {have[:10]} of "
                    f"{upload.of if upload is not None else '?'}.",
                    field="upload_id",
                    hint="PUT the missing chunks, then commit again.",
                )
            received = self._received(current, client_id)
            del current.uploads[(client_id, upload_id)]
        return [upload.parts[i] for i in range(upload.of)], received

    def record(
        self,
        client_id: str,
        round_num: int,
        upload_id: str,
        answer: FitRes | str,
        *,
        bytes_up: int | None = None,
    ) -> None:
        """Record an upload's commit (a result or why there is none); Conflict if refused."""
        with self._cond:
            current = self._open_round(client_id, round_num, upload_id)
            self._commits.add((round_num, client_id, upload_id))
            up = self._received(current, client_id) if bytes_up is None else bytes_up
            current.outcomes[client_id] = FitOutcome(
                client_id,
                answer if isinstance(answer, FitRes) else None,
                answer if isinstance(answer, str) else None,
                seconds=time.monotonic() - current.started,
                bytes_up=up,
                bytes_down=current.bytes_down[client_id],
            )
            self._cond.notify_all()

    @staticmethod
    def _received(current: Round, client_id: str) -> int:
        return sum(u.received for (c, _), u in current.uploads.items() if c == client_id)

    def _open_round(self, client_id: str, round_num: int, upload_id: str | None = None) -> Round:
        """Return the round ``client_id`` may submit to, or raise Conflict (call under lock).

        With ``upload_id``, a commit of an upload committed before is refused as a replay.
        """
        current = self._round
        if self.finished:
            raise Conflict("the run is over; no more results are accepted.", field="round")
        if upload_id is not None and (round_num, client_id, upload_id) in self._commits:
            raise Conflict(
                f"replayed commit: upload {upload_id!r} of client {client_id!r} was committed "
                f"for round {round_num} already; each result is taken once.",
                field="upload_id",
                value=upload_id,
            )
        if current is None or current.round_num != round_num or not current.is_open:
            now = current.round_num if current is not None else None
            raise Conflict(
                f"round {round_num} is not open for results (open round: {now}).",
                field="round",
                value=round_num,
                hint="Poll /v1/task for the current round.",
            )
        if client_id not in current.tasks:
            raise Conflict(
                f"client {client_id!r} was not selected for round {round_num}; a client may "
                "only submit for rounds it was selected for.",
                field="round",
                value=round_num,
            )
        if client_id in current.outcomes:
            raise Conflict(
                f"duplicate result: client {client_id!r} already has an outcome for round "
                f"{round_num}; a client sends one result per round.",
                field="round",
                value=round_num,
            )
        return current
