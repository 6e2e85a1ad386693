"""Serve an ASGI app with hypercorn (HTTP/2 and HTTP/1.1, TLS or not) from a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, cast

import h2.settings
import hypercorn.asyncio.run
import hypercorn.protocol
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.run import worker_serve
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config, Sockets
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.typing import AppWrapper, ASGIFramework, LifespanState
from starlette.types import ASGIApp, Receive, Scope, Send

from fedloop.core import ConfigError
from fedloop.federated.transports._http_tls import PEER_CERT_STATE

__all__ = ["H2_WINDOW_BYTES", "KEEPALIVE_S", "ServerThread"]

#: hypercorn's own messages ("Running on ...", errors outside the app).
logger = logging.getLogger("fedloop.federated.transports.http.server")

#: How long an idle connection stays open, in seconds. Clients drop theirs sooner (30 s):
#: hypercorn closes an idle HTTP/2 connection without a GOAWAY, and httpx's HTTP/2 pool only
#: notices when the next request on it fails.
KEEPALIVE_S = 120.0

#: The HTTP/2 receive window the server opens, per stream and per connection, in bytes. With the
#: protocol's default of 64 KiB, which hypercorn keeps, an upload moves 64 KiB per round trip
#: (1.6 MiB/s at 40 ms); httpx opens 16 MiB windows for downloads, and so does the server now.
H2_WINDOW_BYTES = 16 << 20


def _widen_h2_windows() -> None:
    """Make hypercorn's HTTP/2 connections open ``H2_WINDOW_BYTES`` receive windows.

    hypercorn has no setting for it, so its HTTP/2 protocol class is replaced, once for the
    process, by a subclass that only changes the advertised window sizes.
    """
    if getattr(vars(hypercorn.protocol)["H2Protocol"], "fedloop_wide_window", False):
        return

    class WideWindowH2Protocol(H2Protocol):
        fedloop_wide_window = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            codes = h2.settings.SettingCodes
            values = {codes(k): v for k, v in self.connection.local_settings.items()}
            values[codes.INITIAL_WINDOW_SIZE] = H2_WINDOW_BYTES
            self.connection.local_settings = h2.settings.Settings(
                client=False, initial_values=values
            )

        async def initiate(self, *args: Any, **kwargs: Any) -> None:
            await super().initiate(*args, **kwargs)
            opened = H2_WINDOW_BYTES - self.connection.inbound_flow_control_window
            self.connection.increment_flow_control_window(opened)
            await self._flush()

    hypercorn.protocol.H2Protocol = WideWindowH2Protocol  # type: ignore[attr-defined]


def _pass_peer_certificates() -> None:
    """Make each request's scope state carry its connection's verified client certificate.

    hypercorn puts no TLS details in the ASGI scope, so its asyncio connection class is
    replaced, once for the process, by a subclass that copies the certificate (as
    :meth:`ssl.SSLObject.getpeercert` returns it) into the state every request on that
    connection starts from, under ``PEER_CERT_STATE``. Connections without one are unchanged.
    """
    if getattr(vars(hypercorn.asyncio.run)["TCPServer"], "fedloop_peer_cert", False):
        return

    class PeerCertTCPServer(TCPServer):
        fedloop_peer_cert = True

        def __init__(
            self,
            app: AppWrapper,
            loop: asyncio.AbstractEventLoop,
            config: Config,
            context: WorkerContext,
            state: LifespanState,
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
        ) -> None:
            ssl_object = writer.get_extra_info("ssl_object")
            cert = ssl_object.getpeercert() if ssl_object is not None else None
            if cert:
                state = {**state, PEER_CERT_STATE: cert}  # this connection's own copy
            super().__init__(app, loop, config, context, state, reader, writer)

    hypercorn.asyncio.run.TCPServer = PeerCertTCPServer  # type: ignore[attr-defined]


class _LoggedHandshakes(ssl.SSLObject):
    """A server-side TLS connection that logs why its handshake failed (hypercorn does not)."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as err:  # e.g. no client certificate, or one from another CA
            logger.warning("refused a TLS connection at the handshake: %s", err.reason or err)
            raise


class _Config(Config):
    """hypercorn's settings, with handshake failures logged."""

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context = super().create_ssl_context()
        if context is not None:
            context.sslobject_class = _LoggedHandshakes
        return context


def _config(
    certfile: str | Path | None, keyfile: str | Path | None, client_ca: str | Path | None
) -> Config:
    config = _Config()
    config.errorlog = logger
    config.accesslog = None
    config.keep_alive_timeout = KEEPALIVE_S
    # After this many requests hypercorn ends an HTTP/2 connection with a GOAWAY that fails the
    # request in flight (the client sees a protocol error), so never.
    config.keep_alive_max_requests = 1 << 62
    config.graceful_timeout = 5.0
    if certfile is None:
        return config
    # ALPN offers h2 first; a PEM file may hold the certificate chain and the key together.
    config.alpn_protocols = ["h2", "http/1.1"]
    config.certfile = str(certfile)
    config.keyfile = str(keyfile if keyfile is not None else certfile)
    if client_ca is not None:  # mTLS: a client without a certificate from it fails the handshake
        config.ca_certs = str(client_ca)
        config.verify_mode = ssl.VerifyMode.CERT_REQUIRED
    try:
        config.create_ssl_context()
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(
            f"cannot load the TLS certificate {certfile} / key {keyfile}: {err}.",
            field="tls_certfile",
            hint="Pass a PEM certificate with --tls-cert and its private key with --tls-key.",
        ) from err
    return config


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


class _Lifespan:
    """Answer the server's lifespan messages; set ``started`` once it is about to accept."""

    def __init__(self, app: ASGIApp, started: threading.Event) -> None:
        self.app = app
        self.started = started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                self.started.set()
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


class ServerThread:
    """hypercorn serving one ASGI app on its own event loop, in a daemon thread.

    With a certificate the server speaks TLS and ALPN picks HTTP/2 (``h2``) or HTTP/1.1;
    without, it speaks HTTP/1.1 and HTTP/2 with prior knowledge (``h2c``) on the same port.

    Parameters
    ----------
    app : ASGIApp
        What to serve.
    host : str
        Interface to bind.
    port : int
        TCP port; 0 picks a free one (see :attr:`address`).
    certfile, keyfile : str or Path or None
        PEM certificate (chain) and private key; the key may live in the certificate's file.
    client_ca : str or Path or None
        With a certificate: require client certificates chaining to this PEM CA bundle; each
        request's scope state then holds the client's under ``PEER_CERT_STATE``.

    Raises
    ------
    ConfigError
        For unreadable certificates, a port that cannot be bound or a server that does not start.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        client_ca: str | Path | None = None,
    ) -> None:
        self._config = _config(certfile, keyfile, client_ca)
        _widen_h2_windows()
        _pass_peer_certificates()
        self._sock = _bind(host, port)
        #: The (host, port) actually bound.
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._started = threading.Event()
        self._app = _Lifespan(app, self._started)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fedloop-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._started.wait(0.01):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the HTTP server on {host}:{port} did not start.", field="port")

    def _run(self) -> None:
        try:
            with asyncio.Runner() as runner:
                runner.run(self._serve())
        except Exception:  # the thread's boundary: nobody else would see it
            logger.exception("the HTTP server failed")
        finally:
            self._sock.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        tls = self._config.ssl_enabled
        sockets = Sockets([self._sock] if tls else [], [] if tls else [self._sock], [])
        await worker_serve(
            ASGIWrapper(cast(ASGIFramework, self._app)),
            self._config,
            sockets=sockets,
            shutdown_trigger=self._stop.wait,
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, let requests in flight finish (up to 5 s), and end the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: it stopped already
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=timeout_s)
