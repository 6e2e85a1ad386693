"""``run_http_client``: a silo's side of the HTTP/2 transport (outbound connections only)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fedloop.core import (
    ConfigError,
    FederationError,
    FedloopError,
    InvalidInput,
    decode_parameters,
    encode_parameters,
)
from fedloop.federated.client import Client, run_task
from fedloop.federated.messages import FitIns
from fedloop.federated.transports._http_session import Session as _Session
from fedloop.federated.transports._http_session import Stopped as _Stopped
from fedloop.federated.transports._http_session import response_message as _message

__all__ = ["ClientReport", "run_http_client"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientReport:
    """What happened to one task on the client side.

    Attributes
    ----------
    round_num : int
        The round.
    status : str
        ``submitted`` (the coordinator has the result), ``failed`` (training failed; the error
        was reported), ``rejected`` (the coordinator refused the result: too large or
        malformed) or ``abandoned`` (the round closed before the result arrived).
    message : str or None
        Why, for anything but ``submitted``.
    num_examples : int or None
        Examples trained on.
    seconds : float
        From receiving the task to the coordinator's answer.
    bytes_down, bytes_up : int
        Model bytes downloaded and result bytes uploaded.
    """

    round_num: int
    status: str
    message: str | None = None
    num_examples: int | None = None
    seconds: float = 0.0
    bytes_down: int = 0
    bytes_up: int = 0


class _Abandon(Exception):
    """The round closed (or moved on) before this client could finish it."""


def _expect(response: httpx.Response, *ok: int) -> httpx.Response:
    if response.status_code in ok:
        return response
    if response.status_code in (404, 409):
        raise _Abandon(_message(response))
    raise FederationError(
        f"unexpected answer from the coordinator: HTTP {response.status_code}: "
        f"{_message(response)}",
        field="server",
    )


@contextlib.contextmanager
def _heartbeat(session: _Session, interval_s: float) -> Iterator[None]:
    """Tell the coordinator this client is alive while it trains."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(interval_s):
            try:
                session.http.post("/v1/heartbeat", timeout=max(interval_s, 1.0))
            except httpx.HTTPError as err:  # the next request will retry properly
                logger.debug("heartbeat failed: %s", err)

    thread = threading.Thread(target=beat, name="fedloop-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _download(session: _Session, model: dict[str, Any]) -> bytes:
    digest, size, chunks = str(model["digest"]), int(model["size_bytes"]), int(model["chunks"])
    parts, received = [], 0
    for index in range(chunks):
        response = session.request("GET", f"/v1/model/{digest}", params={"chunk": index})
        parts.append(_expect(response, 200).content)
        received += len(parts[-1])
        if received > size:
            raise _Abandon(f"the model download exceeds its announced {size} bytes")
    data = b"".join(parts)
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        raise _Abandon(f"the downloaded model ({len(data)} bytes) does not match its digest")
    return data


def _upload(session: _Session, round_num: int, data: bytes, limits: dict[str, Any]) -> str:
    chunk_bytes, max_bytes = int(limits["chunk_bytes"]), int(limits["max_bytes"])
    if len(data) > max_bytes:
        raise InvalidInput(
            f"the result ({len(data)} bytes) exceeds the coordinator's limit of {max_bytes} bytes.",
            field="result",
        )
    upload_id = secrets.token_hex(8)
    total = max(1, math.ceil(len(data) / chunk_bytes))
    for index in range(total):
        response = session.request(
            "PUT",
            f"/v1/result/{round_num}/{upload_id}",
            params={"chunk": index, "of": total},
            content=data[index * chunk_bytes : (index + 1) * chunk_bytes],
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code == 413:
            raise InvalidInput(_message(response), field="result")
        _expect(response, 200)
    return upload_id


def _commit(session: _Session, round_num: int, upload_id: str, body: dict[str, Any]) -> None:
    response = session.request("POST", f"/v1/result/{round_num}/{upload_id}/commit", json=body)
    if response.status_code == 422:
        raise InvalidInput(_message(response), field="result")
    _expect(response, 200)


@dataclass
class _Traffic:
    down: int = 0
    up: int = 0


def _work(
    session: _Session, client: Client, task: dict[str, Any], traffic: _Traffic
) -> tuple[str, str | None, int | None]:
    """Download, train, upload and commit; return (status, message, examples)."""
    round_num = int(task["round"])
    data = _download(session, task["model"])
    traffic.down = len(data)
    try:
        with _heartbeat(session, float(task.get("heartbeat_s", 10.0))):
            params = decode_parameters(data, field="global model")
            result = run_task(client, FitIns(round_num, params, dict(task.get("config") or {})))
        payload = encode_parameters(result.parameters)
    except (FedloopError, ArithmeticError, ValueError, RuntimeError, KeyError) as err:
        message = f"{type(err).__name__}: {err}"
        _commit(session, round_num, "error", {"error": message[:4000]})
        return "failed", message, None
    traffic.up = len(payload)
    metrics = {k: float(v) for k, v in result.metrics.items() if math.isfinite(float(v))}
    try:
        upload_id = _upload(session, round_num, payload, task["upload"])
    except InvalidInput as err:  # too large: say so, so that the round does not wait for us
        _commit(session, round_num, "refused", {"error": f"result refused: {err.message}"})
        raise
    body = {"num_examples": int(result.num_examples), "metrics": metrics}
    _commit(session, round_num, upload_id, body)
    return "submitted", None, int(result.num_examples)


def _answer(session: _Session, client: Client, task: dict[str, Any]) -> ClientReport:
    """Answer one task and say what became of it."""
    round_num = int(task["round"])
    started = time.perf_counter()
    traffic = _Traffic()
    examples: int | None = None
    try:
        status, message, examples = _work(session, client, task, traffic)
    except _Abandon as err:
        logger.warning("round %d abandoned: %s", round_num, err)
        status, message = "abandoned", str(err)
    except InvalidInput as err:
        status, message = "rejected", err.message
    seconds = time.perf_counter() - started
    return ClientReport(round_num, status, message, examples, seconds, traffic.down, traffic.up)


def run_http_client(
    url: str,
    client_id: str,
    token: str,
    client: Client,
    *,
    ca_file: str | Path | None = None,
    tls_certfile: str | Path | None = None,
    tls_keyfile: str | Path | None = None,
    stop_event: threading.Event | None = None,
    poll_wait_s: int = 20,
    max_rounds: int | None = None,
    max_backoff_s: float = 10.0,
    give_up_after_s: float | None = None,
    on_round: Callable[[ClientReport], None] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Serve one silo: poll the coordinator for tasks, train on local data, send the weights.

    Only outbound connections are made: one HTTP/2 connection (ALPN over TLS, prior knowledge
    in clear text) carries the polls, the chunks and the heartbeats. Each task is answered
    once: the global model is downloaded in chunks (checked against its sha256),
    ``client.fit`` trains, and the result is uploaded in chunks and committed. Network errors
    and 5xx answers are retried with capped exponential backoff; a round that closed
    meanwhile is abandoned (the client simply joins the next one).

    Parameters
    ----------
    url : str
        The coordinator's base URL (``https://coordinator:8443``).
    client_id : str
        This client's enrolled id (checked against the id its token belongs to).
    token : str
        Its bearer token.
    client : Client
        What trains (e.g. an :class:`~fedloop.federated.client.AdapterClient`).
    ca_file : str or Path or None
        PEM bundle to verify the coordinator's certificate (default: the system's).
    tls_certfile, tls_keyfile : str or Path or None
        This client's certificate and key (the key may sit in the certificate's file), for a
        coordinator that requires client certificates (mTLS); the certificate must be issued
        for ``client_id``.
    stop_event : threading.Event or None
        Set it to stop after the current request.
    poll_wait_s : int, default 20
        Long-poll duration in seconds (the server may shorten it).
    max_rounds : int or None
        Stop after answering this many tasks.
    max_backoff_s : float, default 10
        Longest wait between retries, in seconds.
    give_up_after_s : float or None
        Fail when the coordinator stays unreachable this long (default: retry forever).
    on_round : callable or None
        Called with a :class:`ClientReport` after each task.
    transport : httpx.BaseTransport or None
        An httpx transport (tests).

    Returns
    -------
    int
        The number of tasks answered.

    Raises
    ------
    ConfigError
        When the coordinator refuses the token or the client certificate, the token belongs
        to another client, or the TLS files cannot be loaded.
    FederationError
        When the coordinator stays unreachable for ``give_up_after_s`` or answers nonsense.

    Example
    -------
    >>> run_http_client("https://coord:8443", "bank-a", token, client,
    ...                 ca_file="ca.pem")  # doctest: +SKIP
    """
    stop = stop_event or threading.Event()
    session = _Session(
        url,
        token,
        ca_file=ca_file,
        tls_certfile=tls_certfile,
        tls_keyfile=tls_keyfile,
        stop_event=stop,
        max_backoff_s=max_backoff_s,
        give_up_after_s=give_up_after_s,
        transport=transport,
    )
    answered = 0
    try:
        while max_rounds is None or answered < max_rounds:
            response = session.request(
                "GET", "/v1/task", params={"wait_s": poll_wait_s}, timeout=poll_wait_s + 30.0
            )
            if response.status_code == 204:
                continue
            if response.status_code != 200:
                raise FederationError(
                    f"unexpected answer to a poll: HTTP {response.status_code}: "
                    f"{_message(response)}",
                    field="server",
                )
            task = response.json()
            if task.get("done"):
                logger.info("the coordinator says the run is over")
                break
            if task.get("client_id", client_id) != client_id:
                raise ConfigError(
                    f"this token belongs to client {task['client_id']!r}, not {client_id!r}.",
                    field="client_id",
                    hint="Pass the --client-id the token was enrolled for.",
                )
            report = _answer(session, client, task)
            answered += 1
            if on_round is not None:
                on_round(report)
    except _Stopped:
        pass
    finally:
        session.close()
    return answered
