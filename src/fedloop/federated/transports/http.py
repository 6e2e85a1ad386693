"""``HttpTransport``: the coordinator's HTTP/2 endpoint, polled by clients that connect outbound.

Clients in a bank's or hospital's network can usually open connections but not accept them, so
the coordinator serves and the clients pull: they long-poll ``GET /v1/task``, download the
global model in binary chunks, train, upload their weights in binary chunks and commit. The
app is Starlette under hypercorn in a background thread, speaking HTTP/2 (negotiated by ALPN
over TLS, with prior knowledge in clear text) and HTTP/1.1; :meth:`HttpTransport.fit` waits on
a condition for the uploads.

Endpoints (all but ``/v1/health`` need ``Authorization: Bearer <token>``)::

    GET  /v1/health                                         {"status": "ok"}
    GET  /v1/task?wait_s=N                                  task JSON, {"done": true} or 204
    POST /v1/heartbeat                                      204 (sent while training)
    GET  /v1/model/{digest}?chunk=i                         raw safetensors bytes
    PUT  /v1/result/{round}/{upload_id}?chunk=i&of=n        raw safetensors bytes
    POST /v1/result/{round}/{upload_id}/commit              {"num_examples", "metrics"} or {"error"}

Errors answer ``{"error": {"code", "message", "field", "hint"}}``: 401 for a missing or unknown
token, 403 for a client certificate that does not name the token's client (mTLS), 409 for a
round the client was not selected for, a closed round, a replayed commit or a second result,
413 for an oversized upload, 422 for malformed bytes or bodies (recorded as the client's
failure; the bytes never reach the model). Every refusal is logged at warning level on
``fedloop.federated.transports.http`` with the client id, the round and the reason (for an
unknown token, a sha256 prefix of it, never the token).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from fedloop.core import ConfigError, Conflict, InvalidInput, encode_parameters
from fedloop.federated.messages import FitIns, FitOutcome
from fedloop.federated.transports._auth import Authenticator, TokenTable
from fedloop.federated.transports._http_app import Waker, make_app
from fedloop.federated.transports._http_rounds import Round, RoundBoard
from fedloop.federated.transports._http_server import ServerThread
from fedloop.federated.transports._http_tls import plan_tls

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_MAX_UPLOAD_BYTES", "HttpTransport"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 4 << 20
DEFAULT_MAX_UPLOAD_BYTES = 2 << 30


def _json_config(config: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    try:
        out = json.loads(json.dumps(dict(config), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise InvalidInput(
            f"the round settings for client {client_id!r} are not JSON-serializable: {err}.",
            field="config",
        ) from err
    return dict(out)


def _authenticator(
    tokens: Mapping[str, str] | None, authenticator: Authenticator | None
) -> Authenticator:
    if (tokens is None) == (authenticator is None):
        raise ConfigError(
            "pass exactly one of `tokens` and `authenticator` to HttpTransport.",
            field="tokens",
            hint="Give a client id -> token mapping, or a StoreAuthenticator over the store.",
        )
    return authenticator if authenticator is not None else TokenTable(tokens or {})


class HttpTransport:
    """Serve rounds over HTTP/2 to clients that poll for them (one process per silo).

    Over TLS, ALPN negotiates HTTP/2 (``h2``) or HTTP/1.1; in clear text (loopback by default)
    the same port takes HTTP/2 with prior knowledge (``h2c``) and HTTP/1.1, so ``curl`` works.

    TLS is on off loopback, with a certificate given, with ``tls=True``, with a client CA and
    with ``tls_sans``.
    Without a certificate, the server uses one issued for ``host`` and ``tls_sans`` by the
    development CA in ``tls_dir`` (made on first use; clients verify with :attr:`ca_file`).

    Parameters
    ----------
    host : str, default "127.0.0.1"
        Interface to bind. Anything but loopback speaks TLS unless ``tls=False``.
    port : int, default 0
        TCP port; 0 picks a free one (see :attr:`url`).
    tokens : Mapping[str, str] or None
        Enrolled clients: client id -> bearer token. Only their sha256 is kept.
    authenticator : Authenticator or None
        Instead of ``tokens``: who a client is from its ``Authorization`` header, asked on
        every request, e.g. :class:`fedloop.store.StoreAuthenticator` over the store's
        client credentials (a token revoked while the server runs is refused within its
        cache time). Exactly one of ``tokens`` and ``authenticator`` is given.
    tls_certfile, tls_keyfile : str or Path or None
        PEM certificate (chain) and private key (which may sit in the certificate's file);
        with them the server speaks HTTPS.
    tls : bool or None, default None
        None: TLS as described above. True: TLS on loopback too. False: clear text even off
        loopback, only for a coordinator behind a proxy that terminates TLS (warns with a
        :class:`~fedloop.core.FedloopWarning`).
    client_ca : str or Path or None
        PEM CA bundle: every client must present a certificate chaining to it (refused at
        the TLS handshake otherwise) whose common name or DNS name is the client id its
        bearer token belongs to (403 otherwise). Implies TLS.
    tls_dir : str or Path or None
        Folder of the development CA used when TLS is needed and no certificate is given
        (``fedloop federated serve`` passes ``<project.dir>/certs``).
    tls_sans : sequence of str, default ()
        More host names or IP addresses for that certificate (it always covers ``host``,
        localhost and the loopback addresses; for 0.0.0.0, the machine's host name).
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
        For a bad token table, TLS needed without a certificate or ``tls_dir``, contradicting
        TLS settings, unreadable certificates or a port that cannot be bound.

    Example
    -------
    >>> transport = HttpTransport(tokens={"bank-a": token_a, "bank-b": token_b})  # doctest: +SKIP
    >>> transport.wait_for_clients(2, timeout_s=300)
    >>> Coordinator(transport, FedAvg(), config=cfg, metadata=..., artifacts=...).run(run_id)
    >>> transport.close()
    """

    #: One open round at a time: FedBuff's asynchronous loop falls back to synchronous rounds.
    concurrent_fit: ClassVar[bool] = False

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[str, str] | None = None,
        authenticator: Authenticator | None = None,
        tls_certfile: str | Path | None = None,
        tls_keyfile: str | Path | None = None,
        tls: bool | None = None,
        client_ca: str | Path | None = None,
        tls_dir: str | Path | None = None,
        tls_sans: Sequence[str] = (),
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        heartbeat_timeout_s: float = 30.0,
        linger_s: float = 5.0,
    ) -> None:
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
        self.chunk_bytes = chunk_bytes
        self.max_upload_bytes = max_upload_bytes
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.linger_s = float(linger_s)
        self._closed = False
        waker = Waker()
        self._board = RoundBoard(
            _authenticator(tokens, authenticator),
            chunk_bytes=chunk_bytes,
            max_upload_bytes=max_upload_bytes,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            on_change=waker.wake,
        )
        plan = plan_tls(
            host,
            tls=tls,
            certfile=tls_certfile,
            keyfile=tls_keyfile,
            client_ca=client_ca,
            tls_dir=tls_dir,
            tls_sans=tls_sans,
        )
        #: The server certificate in use (None in clear text).
        self.certfile = plan.certfile if plan is not None else None
        #: The development CA clients verify this server with, when it issued its own
        #: certificate (None otherwise).
        self.ca_file = plan.ca_file if plan is not None else None
        #: The CA bundle client certificates must chain to (None: none are required).
        self.client_ca = plan.client_ca if plan is not None else None
        self._server = ServerThread(
            make_app(self._board, waker, require_client_cert=self.client_ca is not None),
            host=host,
            port=port,
            certfile=self.certfile,
            keyfile=plan.keyfile if plan is not None else None,
            client_ca=self.client_ca,
        )
        bound, bound_port = self._server.address
        shown = f"[{bound}]" if ":" in bound else bound
        #: The base URL clients connect to (with the port actually bound).
        self.url = f"{'https' if plan is not None else 'http'}://{shown}:{bound_port}"

    # -- the Transport protocol ------------------------------------------------------------
    def list_clients(self) -> Sequence[str]:
        """Return the enrolled clients heard from within ``heartbeat_timeout_s``, sorted."""
        return self._board.list_clients()

    def wait_for_clients(self, num: int, *, timeout_s: float) -> list[str]:
        """Block until at least ``num`` clients are connected; return them.

        Raises
        ------
        RoundTimeout
            When fewer than ``num`` connected within ``timeout_s`` seconds.
        """
        return self._board.wait_for_clients(num, timeout_s=timeout_s)

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
        if self._board.finished:
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
        current = Round(round_num, tasks, models, started, timeout_s)
        self._board.publish(current)
        logger.info("round %d: published to %d clients", round_num, len(tasks))
        return self._board.collect(current, enough=enough)

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

    def finish(self) -> None:
        """Tell every polling client that the run is over (their poll answers ``done``)."""
        self._board.finish()

    def close(self) -> None:
        """Finish, let live clients learn it for up to ``linger_s``, then stop the server."""
        if self._closed:
            return
        self._closed = True
        self.finish()
        self._board.wait_told_done(self.linger_s)
        self._server.stop()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
