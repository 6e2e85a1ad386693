"""The coordinator's HTTP endpoints (Starlette): request parsing, authentication, error answers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fedloop.core import FedloopError, InvalidInput, Parameters, decode_parameters
from fedloop.federated.messages import FitRes
from fedloop.federated.transports._http_rounds import HttpError, RoundBoard, too_large
from fedloop.federated.transports._http_tls import PEER_CERT_STATE, peer_identities

__all__ = ["MAX_COMMIT_BYTES", "Waker", "make_app"]

#: Every refused request is logged here, at warning level, with these ``extra`` attributes:
#: ``client_id`` (None before authentication), ``round_num`` (None where the path has none),
#: ``status``, ``code``, ``reason`` and, for a 401, ``token_sha256`` (12 hex digits).
logger = logging.getLogger("fedloop.federated.transports.http")

#: The largest commit body accepted (a JSON header: example count and metrics).
MAX_COMMIT_BYTES = 64 << 10
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_Endpoint = Callable[[Request], Awaitable[Response]]
#: Where :meth:`_Endpoints.authenticate` leaves the client id, for the refusal log.
_CLIENT_SCOPE = "fedloop.client_id"


class _Commit(BaseModel):
    """The body of a commit: the result's header, or the error the client hit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_examples: StrictInt | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = Field(default=None, max_length=4_000)


class Waker:
    """Wakes the long polls, which wait on the server's event loop, from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def event(self) -> asyncio.Event:
        """Return the event that the next :meth:`wake` sets (call on the server's loop)."""
        self._loop = asyncio.get_running_loop()
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def wake(self) -> None:
        """Wake every poll waiting now (thread-safe; nothing once the loop is closed)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed in between: nobody polls any more
            loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None


class _DrainBody:
    """ASGI middleware: read what is left of a request body before the answer starts.

    hypercorn's HTTP/2 protocol drops the whole connection, with every stream multiplexed on it,
    when DATA arrives for a stream whose response is complete (pgjones/hypercorn#329). An early
    401/409/413/422 to an upload would then also kill the client's heartbeat, and the client
    would see a network error instead of the answer. At most ``limit_bytes`` are read (and
    dropped); a client sending more loses its connection, as an HTTP/1.1 server would close it.
    """

    def __init__(self, app: ASGIApp, *, limit_bytes: int) -> None:
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending = True

        async def tracked() -> Message:
            nonlocal pending
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                pending = False
            return message

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                left = self.limit_bytes
                while pending and left >= 0:
                    left -= len((await tracked()).get("body", b""))
            await send(message)

        await self.app(scope, tracked, answer)


def _error_response(status: int, body: Mapping[str, Any]) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    full = {"code": "error", "message": "", "field": None, "hint": None, **body}
    return JSONResponse({"error": full}, status_code=status, headers=headers)


def _token_sha256(authorization: str | None) -> str | None:
    """Return 12 hex digits of the sha256 of the credential sent: enough to match, not to use."""
    credential = (authorization or "").partition(" ")[2].strip()
    return hashlib.sha256(credential.encode()).hexdigest()[:12] if credential else None


def _log_refusal(request: Request, status: int, body: Mapping[str, Any]) -> None:
    """Log one refused request: who (client id, or peer and token digest), round, reason."""
    client_id = request.scope.get(_CLIENT_SCOPE)
    round_num = request.path_params.get("round_num")
    extra = {
        "client_id": client_id,
        "round_num": round_num,
        "status": status,
        "code": body["code"],
        "reason": body["message"],
        "token_sha256": None,
    }
    who = f"client {client_id}"
    if client_id is None:
        extra["token_sha256"] = _token_sha256(request.headers.get("authorization"))
        peer = request.client.host if request.client else "?"
        who = f"{peer} (token sha256 {extra['token_sha256'] or 'none'})"
    logger.warning(
        "refused %s %s from %s, round %s: %d %s: %s",
        request.method,
        request.url.path,
        who,
        "-" if round_num is None else round_num,
        status,
        body["code"],
        body["message"],
        extra=extra,
    )


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


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(what, limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large(what, limit)
    return bytes(body)


def _decode(parts: list[bytes], client_id: str) -> Parameters:
    return decode_parameters(b"".join(parts), field=f"update from {client_id}")


def _upload_target(request: Request) -> tuple[int, str]:
    upload_id = str(request.path_params["upload_id"])
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise InvalidInput("upload ids are 1-64 of [A-Za-z0-9_-].", field="upload_id")
    return int(request.path_params["round_num"]), upload_id


class _Endpoints:
    """The handlers: they parse and check requests, then act on the round board."""

    def __init__(self, board: RoundBoard, waker: Waker, *, require_client_cert: bool) -> None:
        self.board = board
        self.waker = waker
        self.require_client_cert = require_client_cert

    def guard(self, handler: _Endpoint) -> _Endpoint:
        """Wrap a handler so that every error becomes the JSON error body and is logged."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ClientDisconnect:  # nobody is left to answer
                logger.info("%s %s: the client disconnected", request.method, request.url.path)
                return Response(status_code=400)
            except HttpError as err:
                status, body = err.status, err.body
            except FedloopError as err:
                status, body = err.http_status, err.to_dict()
            except Exception:  # the server boundary: log it, answer 500 without a traceback
                logger.exception("internal error serving %s %s", request.method, request.url.path)
                status, body = 500, {"code": "internal_error", "message": "internal error."}
            _log_refusal(request, status, body)
            return _error_response(status, body)

        return endpoint

    def authenticate(self, request: Request) -> str:
        """Return the client the bearer token belongs to, or raise the 401 answer."""
        header = request.headers.get("authorization")
        client_id = self.board.authenticate(header)
        if client_id is None:
            reason = "no bearer token" if not header else "unknown or malformed bearer token"
            peer = request.client.host if request.client else "?"
            raise HttpError(
                401,
                "unauthorized",
                f"{reason} (from {peer}).",
                "Authorization",
                "Send 'Authorization: Bearer <token>' with the token this client was enrolled with.",
            )
        request.scope[_CLIENT_SCOPE] = client_id
        if self.require_client_cert:
            self._check_certificate(request, client_id)
        return client_id

    @staticmethod
    def _check_certificate(request: Request, client_id: str) -> None:
        """Raise the 403 answer unless the TLS client certificate names ``client_id``."""
        names = peer_identities(request.scope.get("state", {}).get(PEER_CERT_STATE))
        if client_id not in names:
            shown = ", ".join(sorted(names)) or "none"
            raise HttpError(
                403,
                "forbidden",
                f"the client certificate names {shown}, not client {client_id!r}, whose token "
                "was sent.",
                "certificate",
                "Present the certificate issued for this client id "
                "(`fedloop certs client --name CLIENT_ID`) together with its own token.",
            )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def heartbeat(self, request: Request) -> Response:
        self.authenticate(request)
        return Response(status_code=204)

    async def task(self, request: Request) -> Response:
        client_id = self.authenticate(request)
        max_wait = int(self.board.heartbeat_timeout_s // 2)
        wait_s = _int_param(request, "wait_s", low=0, high=3600, default=0)
        deadline = time.monotonic() + min(wait_s, max_wait)
        try:
            while True:
                changed = self.waker.event()  # before looking, so that no change is missed
                answer = self.board.poll(client_id)
                if answer is not None:
                    return JSONResponse(answer)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Response(status_code=204)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            self.board.touch(client_id)

    async def model(self, request: Request) -> Response:
        client_id = self.authenticate(request)
        digest = request.path_params["digest"]
        if not _DIGEST.fullmatch(digest):
            raise InvalidInput("the model digest must be 64 lowercase hex digits.", field="digest")
        chunk = _int_param(request, "chunk", low=0, high=1 << 30)
        body = self.board.model_chunk(client_id, digest, chunk)
        return Response(body, media_type="application/octet-stream")

    async def put_chunk(self, request: Request) -> Response:
        client_id = self.authenticate(request)
        round_num, upload_id = _upload_target(request)
        of = _int_param(request, "of", low=1, high=1 << 30)
        if (of - 1) * self.board.chunk_bytes >= self.board.max_upload_bytes:
            raise too_large(f"a result of {of} chunks", self.board.max_upload_bytes)
        chunk = _int_param(request, "chunk", low=0, high=of - 1)
        self.board.check_open(client_id, round_num)
        body = await _read_body(request, self.board.chunk_bytes, "an upload chunk")
        self.board.put_chunk(client_id, round_num, upload_id, of=of, chunk=chunk, body=body)
        return JSONResponse({"received": len(body)})

    async def commit(self, request: Request) -> Response:
        client_id = self.authenticate(request)
        round_num, upload_id = _upload_target(request)
        raw = await _read_body(request, MAX_COMMIT_BYTES, "a commit body")
        board, key = self.board, (client_id, round_num, upload_id)
        try:
            commit = _Commit.model_validate_json(raw)
            if commit.error is None and commit.num_examples is None:
                raise ValueError("a commit needs `num_examples` (or `error`)")
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            reason = f"rejected: malformed commit body: {err}".splitlines()[0]
            board.record(*key, reason)
            raise InvalidInput(reason, field="body") from err
        if commit.error is not None:
            board.record(*key, f"client error: {commit.error}")
            return JSONResponse({"status": "recorded"})
        parts, received = board.take_upload(*key)
        try:
            params = await run_in_threadpool(_decode, parts, client_id)
        except InvalidInput as err:
            board.record(*key, f"rejected: {err.message}", bytes_up=received)
            raise
        result = FitRes(params, commit.num_examples or 0, dict(commit.metrics), round_num=round_num)
        board.record(*key, result, bytes_up=received)
        return JSONResponse({"status": "recorded"})


def make_app(board: RoundBoard, waker: Waker, *, require_client_cert: bool = False) -> ASGIApp:
    """Return the ASGI app serving ``board`` (see :mod:`fedloop.federated.transports.http`).

    Parameters
    ----------
    board : RoundBoard
        The round state the endpoints read and update.
    waker : Waker
        What the board calls to wake the long polls.
    require_client_cert : bool, default False
        Refuse (403) a token whose client is not named by the connection's TLS client
        certificate (the server must require one: ``ServerThread(client_ca=...)``).

    Returns
    -------
    ASGIApp
        The Starlette app, behind the middleware that drains unread request bodies.
    """
    endpoints = _Endpoints(board, waker, require_client_cert=require_client_cert)
    guard = endpoints.guard
    routes = [
        Route("/v1/health", guard(endpoints.health), methods=["GET"]),
        Route("/v1/task", guard(endpoints.task), methods=["GET"]),
        Route("/v1/heartbeat", guard(endpoints.heartbeat), methods=["POST"]),
        Route("/v1/model/{digest}", guard(endpoints.model), methods=["GET"]),
        Route(
            "/v1/result/{round_num:int}/{upload_id}", guard(endpoints.put_chunk), methods=["PUT"]
        ),
        Route(
            "/v1/result/{round_num:int}/{upload_id}/commit",
            guard(endpoints.commit),
            methods=["POST"],
        ),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error_response(status, {"code": "http_error", "message": str(exc)})

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return _DrainBody(app, limit_bytes=board.chunk_bytes + MAX_COMMIT_BYTES)
