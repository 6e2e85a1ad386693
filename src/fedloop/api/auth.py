"""Who may call which route of the control plane and the monitor: API keys and their roles."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fedloop.core import ROLES, ApiConfig, FedloopError, Forbidden, Role, role_allows
from fedloop.store import StoreAuthenticator, bearer_token

__all__ = ["SERVING_KEY_ENV", "SERVING_KEY_NAME", "Access", "actor", "deny", "guarded"]

_log = logging.getLogger("fedloop.api.auth")

#: How ``fedloop up`` hands the control plane the key it gave its own inference server.
SERVING_KEY_ENV = "_FEDLOOP_CONTROL_SERVING_KEY"
#: The name that key's requests are known by (it is never stored; it lives with the process).
SERVING_KEY_NAME = "fedloop-up:serving"

Endpoint = Callable[[Request], Awaitable[Response]]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Access:
    """Decides whether a request may call a route: is a key needed, whose is it, may its role.

    Parameters
    ----------
    authenticator : StoreAuthenticator
        The store's API keys (kind ``api``), cached briefly (a revoked key is refused within
        its ``cache_s``).
    config : ApiConfig
        ``[api]``: when keys are required (see :class:`~fedloop.core.ApiConfig`).
    host : str
        The interface the server binds (off loopback, keys are always required).
    serving_key : str or None
        A key with role ``client`` that is never stored: ``fedloop up`` gives it to the
        inference server it runs, and it is valid while that process lives.

    Raises
    ------
    ConfigError
        When ``api.auth = "off"`` for a server bound off loopback.
    """

    def __init__(
        self,
        authenticator: StoreAuthenticator,
        config: ApiConfig,
        *,
        host: str,
        serving_key: str | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.config = config
        self.host = host
        self._always = config.auth_required(host, keys_exist=False)
        self._serving = _digest(serving_key) if serving_key else None

    def required(self) -> bool:
        """Return whether requests need a key now (``auto`` follows the store's keys)."""
        if self._always:
            return True
        if self.config.auth == "off":
            return False
        return self.authenticator.credentials_exist()

    def caller(self, authorization: str | None, needs: Role, route: str) -> str | None:
        """Return who calls (a key's name; None when no key is required), or refuse.

        Parameters
        ----------
        authorization : str or None
            The ``Authorization`` header.
        needs : {"admin", "operator", "viewer", "client"}
            The least role the route needs.
        route : str
            ``"<METHOD> <path>"``, for messages.

        Returns
        -------
        str or None
            The key's name.

        Raises
        ------
        Unauthenticated
            For a missing, malformed, unknown or revoked key (401).
        Forbidden
            For a key whose role does not reach ``needs`` (403).
        StoreUnavailable
            When the store cannot be read (503).
        """
        if not self.required():
            return None
        token = bearer_token(authorization)
        if (
            token is not None
            and self._serving is not None
            and hmac.compare_digest(_digest(token), self._serving)
        ):
            name, role = SERVING_KEY_NAME, "client"
        else:
            credential = self.authenticator.check(authorization)
            name, role = credential.name, credential.role
        if not role_allows(role, needs):
            enough = [r for r in ROLES if role_allows(r, needs)]
            raise Forbidden(
                f"API key {name!r} has role {role!r}; {route} needs one of {', '.join(enough)}.",
                field="Authorization",
                value=role,
                hint=f"Call it with a key of role {enough[-1]} or above "
                f"(`fedloop keys create --role {enough[-1]} NAME`).",
            )
        return name


def deny(err: FedloopError) -> JSONResponse:
    """Answer ``{"error": {code, message, field, hint}}``; a 401 also names the Bearer scheme."""
    headers = {"WWW-Authenticate": 'Bearer realm="fedloop"'} if err.http_status == 401 else None
    return JSONResponse({"error": err.to_dict()}, status_code=err.http_status, headers=headers)


def guarded(access: Access | None, needs: Role, endpoint: Endpoint) -> Endpoint:
    """Wrap a route's endpoint so that only callers whose role reaches ``needs`` get through.

    The caller's key name is left in ``request.state.caller`` (None without auth). With
    ``access`` None the endpoint is returned as is (an app embedded in a process, such as
    ``fedloop demo``'s).

    Parameters
    ----------
    access : Access or None
        The decision maker.
    needs : {"admin", "operator", "viewer", "client"}
        The least role the route needs.
    endpoint : async callable
        The route's endpoint.

    Returns
    -------
    async callable
        The guarded endpoint.
    """
    if access is None:
        return endpoint

    async def checked(request: Request) -> Response:
        route = f"{request.method} {request.url.path}"
        try:
            caller = await run_in_threadpool(
                access.caller, request.headers.get("authorization"), needs, route
            )
        except FedloopError as err:
            peer = request.client.host if request.client else "?"
            _log.warning("%s from %s refused (%d): %s", route, peer, err.http_status, err.message)
            return deny(err)
        request.state.caller = caller
        return await endpoint(request)

    return checked


def actor(request: Request, default: str = "api") -> str:
    """Return the audit actor of a guarded request: ``api:<key name>``, or ``default``."""
    caller = getattr(request.state, "caller", None)
    return f"api:{caller}" if caller else default
