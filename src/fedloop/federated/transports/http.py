"""``HttpTransport``: the coordinator's HTTP endpoint, polled by clients that connect outbound.

Clients in a bank's or hospital's network can usually open connections but not accept them, so
the coordinator serves and the clients pull: they long-poll ``GET /v1/task``, download the
global model in binary chunks, train, upload their weights in binary chunks and commit. The
app is Starlette under uvicorn (HTTP/1.1 with keep-alive, TLS by ``ssl``) in a background
thread; :meth:`HttpTransport.fit` waits on a condition for the uploads.

Endpoints (all but ``/v1/health`` need ``Authorization: Bearer <token>``)::

    GET  /v1/health                                         {"status": "ok"}
    GET  /v1/task?wait_s=N                                  task JSON, {"done": true} or 204
    POST /v1/heartbeat                                      204 (sent while training)
    GET  /v1/model/{digest}?chunk=i                         raw safetensors bytes
    PUT  /v1/result/{round}/{upload_id}?chunk=i&of=n        raw safetensors bytes
    POST /v1/result/{round}/{upload_id}/commit              {"num_examples", "metrics"} or {"error"}

Errors answer ``{"error": {"code", "message", "field", "hint"}}``: 401 for a missing or unknown
token, 409 for a round the client was not selected for, a closed round or a second commit,
413 for an oversized upload, 422 for malformed bytes or bodies (recorded as the client's
failure; the bytes never reach the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedloop.core import (
    ConfigError,
    Conflict,
    FedloopError,
    InvalidInput,
    NotFound,
    RoundTimeout,
    decode_parameters,
    encode_parameters,
)
from fedloop.federated.messages import FitIns, FitOutcome, FitRes
from fedloop.federated.transports._auth import TokenTable

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_MAX_UPLOAD_BYTES", "HttpTransport"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 4 << 20
DEFAULT_MAX_UPLOAD_BYTES = 2 << 30
_MAX_COMMIT_BYTES = 64 << 10
_MAX_UPLOADS_PER_ROUND = 4
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_Endpoint = Callable[[Request], Awaitable[Response]]


class _HttpError(Exception):
    """An answer without a matching :class:`FedloopError` class (401, 413)."""

    def __init__(self, status: int, code: str, message: str, field: str, hint: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, "field": field, "hint": hint}


def _error_response(status: int, body: Mapping[str, Any]) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    full = {"code": "error", "message": "", "field": None, "hint": None, **body}
    return JSONResponse({"error": full}, status_code=status, headers=headers)


def _too_large(what: str, limit: int) -> _HttpError:
    return _HttpError(
        413,
        "payload_too_large",
        f"{what} exceeds the limit of {limit} bytes.",
        "body",
        "Raise max_upload_bytes on the coordinator or send a smaller model.",
    )


class _Commit(BaseModel):
    """The body of a commit: the result's header, or the error the client hit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_examples: StrictInt | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = Field(default=None, max_length=4_000)


@dataclass
class _Upload:
    of: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    received: int = 0
    refused: bool = False


@dataclass
class _Round:
    round_num: int
    tasks: dict[str, dict[str, Any]]
    models: dict[str, bytes]
    started: float
    timeout_s: float
    outcomes: dict[str, FitOutcome] = field(default_factory=dict)
    uploads: dict[tuple[str, str], _Upload] = field(default_factory=dict)
    bytes_down: Counter[str] = field(default_factory=Counter)
    is_open: bool = True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_tls(host: str, certfile: str | Path | None, keyfile: str | Path | None) -> None:
    if not _is_loopback(host) and certfile is None:
        raise ConfigError(
            f"refusing to serve on {host!r} without TLS: bearer tokens and weights would "
            "cross the network in clear text.",
            field="tls_certfile",
            value=host,
            hint="Pass --tls-cert and --tls-key, or bind 127.0.0.1.",
        )
    if keyfile is not None and certfile is None:
        raise ConfigError(
            "a TLS key needs its certificate.", field="tls_certfile", hint="Pass --tls-cert too."
        )


def _json_config(config: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    try:
        out = json.loads(json.dumps(dict(config), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise InvalidInput(
            f"the round settings for client {client_id!r} are not JSON-serializable: {err}.",
            field="config",
        ) from err
    return dict(out)


class HttpTransport:
    """Serve rounds over HTTP to clients that poll for them (one process per silo).

    Parameters
    ----------
    host : str, default "127.0.0.1"
        Interface to bind. Anything but loopback requires TLS.
    port : int, default 0
        TCP port; 0 picks a free one (see :attr:`url`).
    tokens : Mapping[str, str]
        Enrolled clients: client id -> bearer token. Only their sha256 is kept.
    tls_certfile, tls_keyfile : str or Path or None
        PEM certificate (chain) and private key; with them the server speaks HTTPS.
    chunk_bytes : int, default 4 MiB
        Size of model download chunks and the largest upload chunk accepted.
    max_upload_bytes : int, default 2 GiB
        Largest result a client may upload (the sum of its chunks); more is refused with 413.
    heartbeat_timeout_s : float, default 30
        A client not heard from for this long is not listed as available, and a selected
        client that goes silent for this long is dropped from its round (timed out).
    linger_s : float, default 5
        On :meth:`close`, how long to keep serving so that live clients learn the run is over.

    Raises
    ------
    ConfigError
        For a bad token table, a non-loopback host without TLS, unreadable certificates or a
        port that cannot be bound.

    Example
    -------
    >>> transport = HttpTransport(tokens={"bank-a": token_a, "bank-b": token_b})  # doctest: +SKIP
    >>> transport.wait_for_clients(2, timeout_s=300)
    >>> Coordinator(transport, FedAvg(), config=cfg, metadata=..., artifacts=...).run(run_id)
    >>> transport.close()
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[str, str],
        tls_certfile: str | Path | None = None,
        tls_keyfile: str | Path | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        heartbeat_timeout_s: float = 30.0,
        linger_s: float = 5.0,
    ) -> None:
        _check_tls(host, tls_certfile, tls_keyfile)
        for name, value, low, high in (
            ("port", port, 0, 65535),
            ("chunk_bytes", chunk_bytes, 1, 1 << 30),
            ("max_upload_bytes", max_upload_bytes, 1, 1 << 40),
            ("heartbeat_timeout_s", heartbeat_timeout_s, 0.1, 3600),
            ("linger_s", linger_s, 0, 600),
        ):
            if not low <= value <= high:
                raise ConfigError(
                    f"`{name}` must be in [{low}, {high}]; got {value!r}.", field=name, value=value
                )
        self._tokens = TokenTable(tokens)
        self.chunk_bytes = chunk_bytes
        self.max_upload_bytes = max_upload_bytes
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.linger_s = float(linger_s)
        self._cond = threading.Condition()
        self._last_seen: dict[str, float] = {}
        self._told_done: set[str] = set()
        self._round: _Round | None = None
        self._finished = False
        self._closed = False
        self._changed: asyncio.Event | None = None  # touched on the server's loop only
        sock = self._bind(host, port)
        config = uvicorn.Config(
            self._make_app(),
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            ssl_certfile=str(tls_certfile) if tls_certfile else None,
            ssl_keyfile=str(tls_keyfile) if tls_keyfile else None,
            timeout_graceful_shutdown=5,
        )
        try:
            config.load()
        except (ssl.SSLError, OSError) as err:
            sock.close()
            raise ConfigError(
                f"cannot load the TLS certificate {tls_certfile} / key {tls_keyfile}: {err}.",
                field="tls_certfile",
                hint="Pass a PEM certificate with --tls-cert and its private key with --tls-key.",
            ) from err
        self._server = uvicorn.Server(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name="fedloop-http", daemon=True
        )
        self._thread.start()
        started = time.monotonic()
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() - started > 30:
                raise ConfigError(f"the HTTP server on {host}:{port} did not start.", field="port")
            time.sleep(0.01)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        #: The base URL clients connect to (with the port actually bound).
        self.url = f"{'https' if tls_certfile else 'http'}://{shown}:{bound[1]}"

    # -- setup -----------------------------------------------------------------------------
    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            sock.close()
            raise ConfigError(
                f"cannot listen on {host}:{port}: {err.strerror}.",
                field="port",
                value=port,
                hint="Pick another --port (0 picks a free one) or --host.",
            ) from err
        # Accepted sockets inherit this; without it every response with a body waits ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def _serve(self, sock: socket.socket) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._server.serve(sockets=[sock]))
        finally:
            sock.close()
            self._loop.close()

    def _make_app(self) -> Starlette:
        routes = [
            Route("/v1/health", self._guard(self._health), methods=["GET"]),
            Route("/v1/task", self._guard(self._task), methods=["GET"]),
            Route("/v1/heartbeat", self._guard(self._heartbeat), methods=["POST"]),
            Route("/v1/model/{digest}", self._guard(self._model), methods=["GET"]),
            Route(
                "/v1/result/{round_num:int}/{upload_id}",
                self._guard(self._put_chunk),
                methods=["PUT"],
            ),
            Route(
                "/v1/result/{round_num:int}/{upload_id}/commit",
                self._guard(self._commit),
                methods=["POST"],
            ),
        ]

        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            return _error_response(status, {"code": "http_error", "message": str(exc)})

        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    # -- the Transport protocol ------------------------------------------------------------
    def list_clients(self) -> Sequence[str]:
        """Return the enrolled clients heard from within ``heartbeat_timeout_s``, sorted."""
        now = time.monotonic()
        with self._cond:
            return sorted(
                c for c, seen in self._last_seen.items() if now - seen <= self.heartbeat_timeout_s
            )

    def wait_for_clients(self, num: int, *, timeout_s: float) -> list[str]:
        """Block until at least ``num`` clients are connected; return them.

        Raises
        ------
        RoundTimeout
            When fewer than ``num`` connected within ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            connected = list(self.list_clients())
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

    def fit(
        self,
        round_num: int,
        instructions: Mapping[str, FitIns],
        *,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        """Publish a task to each instructed client and collect their results.

        The global model is encoded once per distinct parameter set and served in chunks.
        Returns when every instructed client answered, when ``enough`` succeeded, or at the
        deadline; clients without a result are reported timed out, and a selected client that
        goes silent for ``heartbeat_timeout_s`` is dropped early.

        Parameters
        ----------
        round_num : int
            The round.
        instructions : Mapping[str, FitIns]
            Client id -> instruction.
        timeout_s : float
            Deadline of the round, in seconds.
        enough : int or None
            Stop waiting once this many results were decoded.

        Returns
        -------
        list of FitOutcome
            One per instructed client, in client-id order.

        Raises
        ------
        Conflict
            When the transport was finished or closed.
        InvalidInput
            When the round settings are not JSON-serializable.
        """
        if self._finished:
            raise Conflict(
                "the HTTP transport was finished; it serves no more rounds.", field="transport"
            )
        started = time.monotonic()
        models: dict[str, bytes] = {}
        encoded: dict[int, str] = {}
        tasks: dict[str, dict[str, Any]] = {}
        for client_id, ins in sorted(instructions.items()):
            key = id(ins.parameters)
            if key not in encoded:
                data = encode_parameters(ins.parameters)
                encoded[key] = hashlib.sha256(data).hexdigest()
                models[encoded[key]] = data
            digest = encoded[key]
            tasks[client_id] = self._task_body(
                round_num, ins, digest, len(models[digest]), timeout_s, client_id
            )
        current = _Round(round_num, tasks, models, started, timeout_s)
        with self._cond:
            self._round = current
        self._wake_pollers()
        logger.info("round %d: published to %d clients", round_num, len(tasks))
        with self._cond:
            while True:
                now = time.monotonic()
                self._drop_silent(current, now)
                succeeded = sum(1 for o in current.outcomes.values() if o.result is not None)
                if (
                    len(current.outcomes) >= len(tasks)
                    or (enough is not None and succeeded >= enough)
                    or now >= started + timeout_s
                ):
                    break
                self._cond.wait(timeout=min(started + timeout_s - now, 0.25))
            current.is_open = False
            self._round = None
            reason = (
                "not needed: enough clients answered"
                if enough is not None and succeeded >= enough
                else f"no result within the round deadline of {timeout_s:g} s"
            )
            outcomes = [current.outcomes.get(c) or _missing(current, c, reason) for c in tasks]
        self._wake_pollers()
        return outcomes

    def _task_body(
        self, round_num: int, ins: FitIns, digest: str, size: int, timeout_s: float, client_id: str
    ) -> dict[str, Any]:
        return {
            "done": False,
            "client_id": client_id,
            "round": round_num,
            "config": _json_config(ins.config, client_id),
            "model": {
                "digest": digest,
                "size_bytes": size,
                "chunks": max(1, math.ceil(size / self.chunk_bytes)),
                "chunk_bytes": self.chunk_bytes,
            },
            "upload": {"chunk_bytes": self.chunk_bytes, "max_bytes": self.max_upload_bytes},
            "heartbeat_s": self.heartbeat_timeout_s / 3,
            "timeout_s": timeout_s,
        }

    def _drop_silent(self, current: _Round, now: float) -> None:
        for client_id in current.tasks:
            if client_id in current.outcomes:
                continue
            seen = max(self._last_seen.get(client_id, current.started), current.started)
            if now - seen > self.heartbeat_timeout_s:
                logger.warning("round %d: lost contact with %s", current.round_num, client_id)
                reason = f"lost contact: no request for {now - seen:.0f} s"
                current.outcomes[client_id] = _missing(current, client_id, reason)

    def finish(self) -> None:
        """Tell every polling client that the run is over (their poll answers ``done``)."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()
        self._wake_pollers()

    def close(self) -> None:
        """Finish, let live clients learn it for up to ``linger_s``, then stop the server."""
        if self._closed:
            return
        self._closed = True
        self.finish()
        deadline = time.monotonic() + self.linger_s
        with self._cond:
            while time.monotonic() < deadline:
                if set(self.list_clients()) <= self._told_done:
                    break
                self._cond.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- waking long polls (the server's event loop) ---------------------------------------
    def _wake_pollers(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed in between: nobody polls any more
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _change_event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    # -- request plumbing ------------------------------------------------------------------
    def _guard(self, handler: _Endpoint) -> _Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ClientDisconnect:  # nobody is left to answer
                logger.info("%s %s: the client disconnected", request.method, request.url.path)
                return Response(status_code=400)
            except _HttpError as err:
                status, body = err.status, err.body
            except FedloopError as err:
                status, body = err.http_status, err.to_dict()
            except Exception:  # the server boundary: log it, answer 500 without a traceback
                logger.exception("internal error serving %s %s", request.method, request.url.path)
                status, body = 500, {"code": "internal_error", "message": "internal error."}
            logger.warning(
                "%s %s: %d %s", request.method, request.url.path, status, body["message"]
            )
            return _error_response(status, body)

        return endpoint

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization")
        client_id = self._tokens.authenticate(header)
        if client_id is None:
            reason = "no bearer token" if not header else "unknown or malformed bearer token"
            peer = request.client.host if request.client else "?"
            raise _HttpError(
                401,
                "unauthorized",
                f"{reason} (from {peer}).",
                "Authorization",
                "Send 'Authorization: Bearer <token>' with the token this client was enrolled with.",
            )
        self._touch(client_id)
        return client_id

    def _touch(self, client_id: str) -> None:
        with self._cond:
            self._last_seen[client_id] = time.monotonic()
            self._cond.notify_all()

    @staticmethod
    def _int_param(
        request: Request, name: str, *, low: int, high: int, default: int | None = None
    ) -> int:
        raw = request.query_params.get(name)
        if raw is None and default is not None:
            return default
        try:
            value = int(raw) if raw is not None else None
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise InvalidInput(
                f"query parameter `{name}` must be an integer in [{low}, {high}]; got {raw!r}.",
                field=name,
                value=raw,
            )
        return value

    @staticmethod
    async def _read_body(request: Request, limit: int, what: str) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(what, limit)
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise _too_large(what, limit)
        return bytes(body)

    def _open_round(self, client_id: str, round_num: int) -> _Round:
        """Return the round ``client_id`` may submit to, or raise Conflict (call under lock)."""
        current = self._round
        if self._finished:
            raise Conflict("the run is over; no more results are accepted.", field="round")
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
                f"client {client_id!r} already has an outcome for round {round_num}.",
                field="round",
                value=round_num,
            )
        return current

    def _record(self, current: _Round, client_id: str, answer: FitRes | str, up: int) -> None:
        """Record a client's result, or the reason it has none (call under the lock)."""
        current.outcomes[client_id] = FitOutcome(
            client_id,
            answer if isinstance(answer, FitRes) else None,
            answer if isinstance(answer, str) else None,
            seconds=time.monotonic() - current.started,
            bytes_up=up,
            bytes_down=current.bytes_down[client_id],
        )
        self._cond.notify_all()

    # -- endpoints -------------------------------------------------------------------------
    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _heartbeat(self, request: Request) -> Response:
        self._authenticate(request)
        return Response(status_code=204)

    def _poll(self, client_id: str) -> dict[str, Any] | None:
        with self._cond:
            self._last_seen[client_id] = time.monotonic()
            if self._finished:
                self._told_done.add(client_id)
                self._cond.notify_all()
                return {"done": True}
            current = self._round
            if current is None or not current.is_open or client_id in current.outcomes:
                return None
            return current.tasks.get(client_id)

    async def _task(self, request: Request) -> Response:
        client_id = self._authenticate(request)
        max_wait = int(self.heartbeat_timeout_s // 2)
        wait_s = self._int_param(request, "wait_s", low=0, high=3600, default=0)
        deadline = time.monotonic() + min(wait_s, max_wait)
        try:
            while True:
                changed = self._change_event()
                answer = self._poll(client_id)
                if answer is not None:
                    return JSONResponse(answer)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Response(status_code=204)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            self._touch(client_id)

    async def _model(self, request: Request) -> Response:
        client_id = self._authenticate(request)
        digest = request.path_params["digest"]
        if not _DIGEST.fullmatch(digest):
            raise InvalidInput("the model digest must be 64 lowercase hex digits.", field="digest")
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
            chunk = self._int_param(request, "chunk", low=0, high=task["model"]["chunks"] - 1)
            body = current.models[digest][chunk * self.chunk_bytes : (chunk + 1) * self.chunk_bytes]
            current.bytes_down[client_id] += len(body)
        return Response(body, media_type="application/octet-stream")

    async def _put_chunk(self, request: Request) -> Response:
        client_id = self._authenticate(request)
        round_num = int(request.path_params["round_num"])
        upload_id = str(request.path_params["upload_id"])
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise InvalidInput("upload ids are 1-64 of [A-Za-z0-9_-].", field="upload_id")
        of = self._int_param(request, "of", low=1, high=1 << 30)
        if (of - 1) * self.chunk_bytes >= self.max_upload_bytes:
            raise _too_large(f"a result of {of} chunks", self.max_upload_bytes)
        chunk = self._int_param(request, "chunk", low=0, high=of - 1)
        with self._cond:
            self._open_round(client_id, round_num)
        body = await self._read_body(request, self.chunk_bytes, "an upload chunk")
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
                raise _too_large("the result", self.max_upload_bytes)
            if of != upload.of:
                raise InvalidInput(f"this upload has {upload.of} chunks, not {of}.", field="of")
            size = upload.size - len(upload.parts.get(chunk, b"")) + len(body)
            if size > self.max_upload_bytes:
                upload.refused, upload.parts, upload.size = True, {}, 0
                raise _too_large("the result", self.max_upload_bytes)
            upload.parts[chunk], upload.size = body, size
        return JSONResponse({"received": len(body)})

    async def _commit(self, request: Request) -> Response:
        client_id = self._authenticate(request)
        round_num = int(request.path_params["round_num"])
        upload_id = str(request.path_params["upload_id"])
        raw = await self._read_body(request, _MAX_COMMIT_BYTES, "a commit body")
        with self._cond:
            current = self._open_round(client_id, round_num)
            upload = current.uploads.get((client_id, upload_id))
            received = sum(u.received for (c, _), u in current.uploads.items() if c == client_id)
            try:
                commit = _Commit.model_validate_json(raw)
                if commit.error is None and commit.num_examples is None:
                    raise ValueError("a commit needs `num_examples` (or `error`)")
            except (ValidationError, ValueError) as err:
                reason = f"rejected: malformed commit body: {err}".splitlines()[0]
                self._record(current, client_id, reason, received)
                raise InvalidInput(reason, field="body") from err
            if commit.error is not None:
                self._record(current, client_id, f"client error: {commit.error}", received)
                return JSONResponse({"status": "recorded"})
            if upload is None or upload.refused or len(upload.parts) != upload.of:
                have = sorted(upload.parts) if upload is not None else []
                raise InvalidInput(
                    f"upload {upload_id!r} is incomplete: have chunks {have[:10]} of "
                    f"{upload.of if upload is not None else '?'}.",
                    field="upload_id",
                    hint="PUT the missing chunks, then commit again.",
                )
            del current.uploads[(client_id, upload_id)]
            parts = [upload.parts[i] for i in range(upload.of)]
        try:
            params = await run_in_threadpool(_decode, parts, client_id)
        except InvalidInput as err:
            with self._cond:
                current = self._open_round(client_id, round_num)
                self._record(current, client_id, f"rejected: {err.message}", received)
            raise
        result = FitRes(
            params, int(commit.num_examples or 0), dict(commit.metrics), round_num=round_num
        )
        with self._cond:
            current = self._open_round(client_id, round_num)
            self._record(current, client_id, result, received)
        return JSONResponse({"status": "recorded"})


def _missing(current: _Round, client_id: str, reason: str) -> FitOutcome:
    """Return the outcome of a client that sent no result: timed out, with the reason."""
    seconds = time.monotonic() - current.started
    return FitOutcome(
        client_id,
        None,
        reason,
        timed_out=True,
        seconds=seconds,
        bytes_down=current.bytes_down[client_id],
    )


def _decode(parts: list[bytes], client_id: str) -> Any:
    return decode_parameters(b"".join(parts), field=f"update from {client_id}")
