"""Dashboard logins: API keys exchanged for server-side sessions, and CSRF tokens for its forms."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from fedloop.core import Forbidden, Role, Unauthenticated, role_allows
from fedloop.store import SqlMetadataStore, StoreAuthenticator

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "KeyAccess", "Sessions", "Viewer"]

#: The session cookie: an opaque random id; the key it was made from never leaves the server.
SESSION_COOKIE = "fedloop_session"
#: A random value that anchors the CSRF token of a visitor without a session (open dashboard,
#: login form).
CSRF_COOKIE = "fedloop_csrf"


class KeyAccess(Protocol):
    """What the dashboard needs of the control plane's API-key checks (``fedloop.api.auth.Access``)."""

    authenticator: StoreAuthenticator

    def required(self) -> bool:
        """Return whether requests need a key now."""
        ...

    def caller(self, authorization: str | None, needs: Role, route: str) -> str | None:
        """Return the key's name (None when no key is required), or raise 401/403 errors."""
        ...


@dataclass(frozen=True)
class Viewer:
    """Who looks at the dashboard.

    Attributes
    ----------
    name : str or None
        The API key's name; None when the dashboard is open (no keys required).
    role : str
        The key's role (``admin`` for an open dashboard, as the open API allows everything).
    """

    name: str | None
    role: str

    @property
    def is_open(self) -> bool:
        """Whether nobody logged in because no key is required."""
        return self.name is None

    def may(self, needs: Role) -> bool:
        """Return whether this viewer's role reaches ``needs``."""
        return role_allows(self.role, needs)

    @property
    def actor(self) -> str:
        """The audit actor of what this viewer does: ``ui:<key name>`` or ``ui``."""
        return f"ui:{self.name}" if self.name else "ui"


@dataclass(frozen=True)
class _Session:
    credential_id: str
    name: str
    role: str
    expires_at: float


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Sessions:
    """Server-side dashboard sessions made from API keys, and CSRF tokens.

    A login checks the key with the control plane's authenticator and keeps only the key's
    name, role and credential id under the sha256 of a random session id; the cookie carries
    that id. A session ends at logout, after ``ttl_s``, or within ``recheck_s`` of its key
    being revoked.

    Parameters
    ----------
    access : KeyAccess or None
        The control plane's key checks; None: the dashboard is open (an embedded app).
    metadata : SqlMetadataStore
        The store holding the keys (to notice revocations).
    ttl_s : float, default 28800
        Lifetime of a session, in seconds (8 hours).
    recheck_s : float, default 2.0
        How long the list of active keys is reused before it is read again.
    max_sessions : int, default 10000
        Sessions kept at once; the oldest are dropped beyond it.
    clock : callable, default time.monotonic
        Seconds (tests pass a fake).
    """

    def __init__(
        self,
        access: KeyAccess | None,
        metadata: SqlMetadataStore,
        *,
        ttl_s: float = 8 * 3600.0,
        recheck_s: float = 2.0,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access = access
        self.metadata = metadata
        self.ttl_s = ttl_s
        self.recheck_s = recheck_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._active: tuple[float, frozenset[str]] | None = None

    def required(self) -> bool:
        """Return whether the dashboard needs a login now (the API's rule)."""
        return self.access is not None and self.access.required()

    def login(self, key: str) -> tuple[str, Viewer]:
        """Check an API key and open a session for it.

        Parameters
        ----------
        key : str
            The API key, as ``fedloop keys create`` printed it.

        Returns
        -------
        (str, Viewer)
            The session id for the cookie, and who logged in.

        Raises
        ------
        Unauthenticated
            For an unknown, malformed or revoked key.
        Forbidden
            For a ``client`` key (those only send payload logs).
        StoreUnavailable
            When the store cannot be read.
        """
        if self.access is None:
            raise Forbidden("this dashboard is open; there is nothing to log in to.", field="key")
        try:
            credential = self.access.authenticator.check(f"Bearer {key.strip()}")
        except Unauthenticated as err:  # the store logged the reason; the form says less
            raise Unauthenticated(
                "that is not a valid fedloop API key (unknown, mistyped or revoked).",
                field="key",
                hint="Paste the key `fedloop keys create` printed; `fedloop keys list` shows "
                "which keys are active.",
            ) from err
        if not role_allows(credential.role, "viewer"):
            raise Forbidden(
                f"API key {credential.name!r} has role {credential.role!r}, which may only send "
                "payload logs; the dashboard needs viewer, operator or admin.",
                field="key",
                value=credential.role,
                hint="Log in with a key from `fedloop keys create --role viewer NAME`.",
            )
        sid = secrets.token_urlsafe(32)
        session = _Session(
            credential.id, credential.name, credential.role, self._clock() + self.ttl_s
        )
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                self._prune()
            self._sessions[_digest(sid)] = session
        return sid, Viewer(credential.name, credential.role)

    def logout(self, sid: str | None) -> None:
        """End a session (nothing happens for an unknown one)."""
        if sid:
            with self._lock:
                self._sessions.pop(_digest(sid), None)

    def viewer(self, cookies: Mapping[str, str]) -> Viewer | None:
        """Return who a request's cookies belong to, or None when a login is needed.

        Raises
        ------
        StoreUnavailable
            When the store cannot be read.
        """
        if not self.required():
            return Viewer(None, "admin")
        sid = cookies.get(SESSION_COOKIE)
        if not sid:
            return None
        key = _digest(sid)
        with self._lock:
            session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at <= self._clock() or session.credential_id not in self._keys():
            with self._lock:
                self._sessions.pop(key, None)
            return None
        return Viewer(session.name, session.role)

    def csrf_token(self, cookies: Mapping[str, str]) -> tuple[str, str | None]:
        """Return the CSRF token a page's forms carry, and a new anchor cookie value if needed.

        The token is an HMAC of the session id (or of the :data:`CSRF_COOKIE` anchor for a
        visitor without a session) under a secret of this process; the cookies are
        ``SameSite=Strict``, so another site's page can neither read nor send a valid pair.

        Returns
        -------
        (str, str or None)
            The token, and the anchor to set as :data:`CSRF_COOKIE` (None: keep the cookie).
        """
        sid = cookies.get(SESSION_COOKIE)
        if sid and self._known(sid):
            return self._mac("session", sid), None
        anchor = cookies.get(CSRF_COOKIE)
        fresh = None
        if not anchor:
            anchor = fresh = secrets.token_urlsafe(24)
        return self._mac("anchor", anchor), fresh

    def check_csrf(self, cookies: Mapping[str, str], token: str | None) -> bool:
        """Return whether a submitted form's token matches the request's cookies."""
        if not token:
            return False
        sid = cookies.get(SESSION_COOKIE)
        if sid and self._known(sid):
            return hmac.compare_digest(token, self._mac("session", sid))
        anchor = cookies.get(CSRF_COOKIE)
        return bool(anchor) and hmac.compare_digest(token, self._mac("anchor", anchor or ""))

    def _known(self, sid: str) -> bool:
        with self._lock:
            return _digest(sid) in self._sessions

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _keys(self) -> frozenset[str]:
        now = self._clock()
        cached = self._active
        if cached is not None and cached[0] > now:
            return cached[1]
        ids = frozenset(c.id for c in self.metadata.list_credentials(kind="api"))
        self._active = (now + self.recheck_s, ids)
        return ids

    def _prune(self) -> None:
        """Drop expired sessions, then the oldest ones (called with the lock held)."""
        now = self._clock()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
        excess = len(self._sessions) - self.max_sessions + 1
        if excess > 0:
            for k in sorted(self._sessions, key=lambda k: self._sessions[k].expires_at)[:excess]:
                del self._sessions[k]
