"""The dashboard's login form (an API key for a session cookie) and logout."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedloop.core import FedloopError, Forbidden, InvalidInput
from fedloop.ui.pages import Dashboard, read_form, render, set_cookie
from fedloop.ui.sessions import SESSION_COOKIE

__all__ = ["login_routes", "safe_next"]

_log = logging.getLogger("fedloop.ui")


def safe_next(target: str | None, *, prefix: str) -> str:
    """Return where to go after logging in: a path of the dashboard, never another site.

    Parameters
    ----------
    target : str or None
        The ``next`` the login form carried.
    prefix : str
        The dashboard's path prefix.

    Returns
    -------
    str
        ``target`` when it is a path under ``prefix``, else the dashboard's runs page.
    """
    if (
        target
        and target.startswith(f"{prefix}/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(ch) < 32 for ch in target)
        and not target.startswith(f"{prefix}/login")
    ):
        return target
    return f"{prefix}/runs"


def login_routes(dash: Dashboard) -> list[Route]:
    """Return ``GET/POST /login`` and ``POST /logout``."""

    async def login_form(request: Request) -> Response:
        viewer = await run_in_threadpool(dash.sessions.viewer, request.cookies)
        target = safe_next(request.query_params.get("next"), prefix=dash.prefix)
        return render(dash, request, viewer, "login.html", next=target, error=None)

    async def login(request: Request) -> Response:
        target = f"{dash.prefix}/runs"
        try:
            form = await read_form(request)
            target = safe_next(form.get("next"), prefix=dash.prefix)
            if not dash.sessions.check_csrf(request.cookies, form.get("csrf")):
                raise Forbidden(
                    "the login form's CSRF token is missing or stale.",
                    field="csrf",
                    hint="Reload the login page and try again (cookies must be enabled).",
                )
            key = form.get("key", "")
            if not key.strip():
                raise InvalidInput("enter an API key.", field="key", hint="fedloop keys create")
            sid, viewer = await run_in_threadpool(dash.sessions.login, key)
        except FedloopError as err:
            peer = request.client.host if request.client else "?"
            _log.warning("dashboard login from %s refused: %s", peer, err.message)
            return render(
                dash, request, None, "login.html", status_code=err.http_status,
                next=target, error=err,
            )  # fmt: skip
        _log.info("dashboard login: %s (%s)", viewer.name, viewer.role)
        response = RedirectResponse(target, status_code=303)
        set_cookie(
            response, request, SESSION_COOKIE, sid, path=dash.prefix,
            max_age=int(dash.sessions.ttl_s),
        )  # fmt: skip
        return response

    async def logout(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FedloopError:
            form = {}
        if dash.sessions.check_csrf(request.cookies, form.get("csrf")):
            dash.sessions.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(dash.url("/login"), status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=dash.prefix, httponly=True, samesite="strict")
        return response

    return [
        Route("/login", login_form, methods=["GET"], name="login"),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"], name="logout"),
    ]
