"""``StoreAuthenticator``: bearer tokens checked against the store's credentials, briefly cached."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable

from fedloop.core import CredentialKind, Unauthenticated
from fedloop.store.metadata.records import Credential
from fedloop.store.metadata.sql import SqlMetadataStore

__all__ = ["DEFAULT_CACHE_S", "StoreAuthenticator", "bearer_token"]

_log = logging.getLogger("fedloop.store.credentials")

#: How long an answer about a token is reused; a revocation takes effect within this time.
DEFAULT_CACHE_S = 2.0
_MAX_ENTRIES = 4096


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` value, or None.

    Parameters
    ----------
    authorization : str or None
        The header value.

    Returns
    -------
    str or None
        The token, or None when the value is missing or not a bearer token.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class StoreAuthenticator:
    """Checks bearer tokens against the store's credentials of one kind.

    Each answer (a credential, or the refusal with its reason) is reused for ``cache_s``
    seconds, so a server does not read the store per request, and a token revoked while the
    server runs is refused within ``cache_s`` seconds. A refusal's reason (unknown token,
    revoked by whom and when) is logged on ``fedloop.store.credentials`` when first found.

    Parameters
    ----------
    metadata : SqlMetadataStore
        The store holding the credentials.
    kind : {"client", "api"}
        Which credentials authenticate: federated clients' tokens or API keys.
    cache_s : float, default 2.0
        How long an answer is reused, in seconds (0: never).
    clock : callable, default time.monotonic
        Seconds (tests pass a fake).

    Example
    -------
    >>> auth = StoreAuthenticator(ws.metadata, "client")  # doctest: +SKIP
    >>> HttpTransport(authenticator=auth)
    """

    def __init__(
        self,
        metadata: SqlMetadataStore,
        kind: CredentialKind,
        *,
        cache_s: float = DEFAULT_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metadata = metadata
        self.kind: CredentialKind = kind
        self.cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[bytes, tuple[float, Credential | Unauthenticated]] = {}
        self._exists: tuple[float, bool] | None = None

    def check(self, authorization: str | None) -> Credential:
        """Return the active credential an ``Authorization`` value carries.

        Parameters
        ----------
        authorization : str or None
            The header value, ``"Bearer <token>"``.

        Returns
        -------
        Credential
            The credential.

        Raises
        ------
        Unauthenticated
            For a missing, malformed, unknown or revoked token.
        StoreUnavailable
            When the store cannot be read.
        """
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated(
                "no bearer token (the Authorization header is missing or not 'Bearer <token>').",
                field="Authorization",
                hint="Send 'Authorization: Bearer <token>'.",
            )
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        with self._lock:
            cached = self._answers.get(key)
        if cached is None or cached[0] <= now:
            answer: Credential | Unauthenticated
            try:
                answer = self.metadata.authenticate_credential(token, kind=self.kind)
            except Unauthenticated as err:
                answer = err
                _log.warning("refused a %s token: %s", self.kind, err.message)
            self._remember(key, now + self.cache_s, answer)
        else:
            answer = cached[1]
        if isinstance(answer, Unauthenticated):
            raise Unauthenticated(answer.message, field=answer.field, hint=answer.hint)
        return answer

    def authenticate(self, authorization: str | None) -> str | None:
        """Return the name (the client id) an ``Authorization`` value belongs to, or None.

        The federated transport's authenticator interface (as :class:`TokenTable`'s).

        Parameters
        ----------
        authorization : str or None
            The header value, ``"Bearer <token>"``.

        Returns
        -------
        str or None
            The credential's name, or None for a missing, malformed, unknown or revoked token.
        """
        try:
            return self.check(authorization).name
        except Unauthenticated:
            return None

    def credentials_exist(self) -> bool:
        """Return whether any credential of this kind was ever created (cached like answers)."""
        now = self._clock()
        cached = self._exists
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self.metadata.has_credentials(self.kind)
        self._exists = (now + self.cache_s, found)
        return found

    def _remember(self, key: bytes, until: float, answer: Credential | Unauthenticated) -> None:
        if self.cache_s <= 0:
            return
        with self._lock:
            if len(self._answers) >= _MAX_ENTRIES:  # a flood of made-up tokens: start afresh
                now = self._clock()
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
                if len(self._answers) >= _MAX_ENTRIES:
                    self._answers.clear()
            self._answers[key] = (until, answer)
