"""A silo's connection to the coordinator: TLS (and its client certificate), retries, fatal answers."""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from fedloop.core import ConfigError, FederationError

__all__ = ["Session", "Stopped", "response_message", "tls_context"]

logger = logging.getLogger("fedloop.federated.transports.http_client")

_KEEPALIVE_S = 30.0
# A coordinator that refuses a client certificate closes the connection during the handshake
# without an alert the client could read, so a refusal looks like a dropped connection.
_TLS_HINT = (
    "; over TLS, that --ca-file holds the CA of the coordinator's certificate and, if it "
    "requires client certificates, that --tls-cert/--tls-key hold this client's."
)
_CERT_HINT = (
    "Pass --tls-cert and --tls-key with the certificate issued for this client id by the "
    "coordinator's client CA (`fedloop certs client --name CLIENT_ID`)."
)


class Stopped(Exception):
    """``stop_event`` was set."""


def tls_context(
    url: str,
    *,
    ca_file: str | Path | None,
    certfile: str | Path | None,
    keyfile: str | Path | None,
) -> ssl.SSLContext | bool:
    """Return what httpx verifies the coordinator with, holding the client certificate if any.

    Raises
    ------
    ConfigError
        For a key without its certificate, a certificate over clear text, or unreadable files.
    """
    if keyfile is not None and certfile is None:
        raise ConfigError(
            "a TLS key needs its certificate.", field="tls_certfile", hint="Pass --tls-cert too."
        )
    if certfile is not None and not url.lower().startswith("https://"):
        raise ConfigError(
            f"a client certificate needs TLS, but the coordinator URL is {url!r}.",
            field="tls_certfile",
            hint="Connect to https://HOST:PORT.",
        )
    if ca_file is None and certfile is None:
        return True
    try:
        context = (
            ssl.create_default_context(cafile=str(ca_file))
            if ca_file is not None
            else httpx.create_ssl_context()
        )
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(
            f"cannot load the CA bundle {ca_file}: {err}.",
            field="ca_file",
            hint="Pass the coordinator's ca.pem with --ca-file.",
        ) from err
    if certfile is not None:
        try:
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile is not None else None)
        except (ssl.SSLError, OSError) as err:
            raise ConfigError(
                f"cannot load the client certificate {certfile} / key {keyfile}: {err}.",
                field="tls_certfile",
                hint=_CERT_HINT,
            ) from err
    return context


class Session:
    """An HTTP/2 connection to the coordinator, with retries and capped backoff."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ca_file: str | Path | None,
        stop_event: threading.Event,
        max_backoff_s: float,
        give_up_after_s: float | None,
        transport: httpx.BaseTransport | None,
        tls_certfile: str | Path | None = None,
        tls_keyfile: str | Path | None = None,
    ) -> None:
        verify = tls_context(url, ca_file=ca_file, certfile=tls_certfile, keyfile=tls_keyfile)
        self.url = url.rstrip("/")
        tls = self.url.lower().startswith("https://")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
            timeout=httpx.Timeout(60.0, connect=10.0),
            http2=True,  # also for the transports of proxies taken from the environment
            transport=transport
            or httpx.HTTPTransport(
                verify=verify,
                # One HTTP/2 connection carries polls, chunks and heartbeats: over TLS, ALPN
                # picks h2 (or HTTP/1.1 behind a proxy that only speaks that); in clear text,
                # h2c with prior knowledge.
                http1=tls,
                http2=True,
                # Close idle connections before the server does (after KEEPALIVE_S = 120 s): an
                # HTTP/2 connection the server closed fails the next request sent on it.
                limits=httpx.Limits(keepalive_expiry=_KEEPALIVE_S),
                # Without TCP_NODELAY, a body written after its headers waits for a delayed ACK
                # (~40 ms per request on Linux loopback).
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ),
        )
        self.stop_event = stop_event
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self._jitter = random.Random()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request, retrying network errors and 5xx answers; 401 and 403 are fatal."""
        failures, first_failure = 0, 0.0
        while True:
            if self.stop_event.is_set():
                raise Stopped
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                self._raise_refusal(response)
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {response_message(response)}"
            failures += 1
            now = time.monotonic()
            first_failure = first_failure or now
            if self.give_up_after_s is not None and now - first_failure > self.give_up_after_s:
                raise FederationError(
                    f"cannot reach the coordinator at {self.url} for "
                    f"{now - first_failure:.0f} s ({problem}).",
                    field="server",
                    hint="Check that the coordinator is running and reachable from this host"
                    + (_TLS_HINT if self.url.lower().startswith("https://") else "."),
                )
            delay = min(self.max_backoff_s, 0.25 * 2 ** min(failures - 1, 16))
            delay *= self._jitter.uniform(0.5, 1.0)  # spread reconnecting clients out
            logger.warning("%s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            if self.stop_event.wait(delay):
                raise Stopped

    def _raise_refusal(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            raise ConfigError(
                f"the coordinator at {self.url} refused this client's token (401): "
                f"{response_message(response)}",
                field="token",
                hint="Check --token-file / --token against the coordinator's token file.",
            )
        if response.status_code == 403:
            raise ConfigError(
                f"the coordinator at {self.url} refused this client (403): "
                f"{response_message(response)}",
                field="tls_certfile",
                hint=_CERT_HINT,
            )


def response_message(response: httpx.Response) -> str:
    """Return the ``message`` of an error body, or the start of the body."""
    try:
        body = response.json()
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
