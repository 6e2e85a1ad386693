"""Rendering the dashboard: its shared state, templates, security headers and guarded endpoints."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from fedloop.core import FedloopError, Forbidden, InvalidInput, Role, Unauthenticated
from fedloop.store import Workspace
from fedloop.ui.sessions import CSRF_COOKIE, Sessions, Viewer

if TYPE_CHECKING:
    from fedloop.automation import Controller, ServingStats

__all__ = [
    "Dashboard",
    "Endpoint",
    "data_endpoint",
    "error_page",
    "form_endpoint",
    "page_endpoint",
    "read_form",
    "render",
    "set_cookie",
]

_log = logging.getLogger("fedloop.ui")
_TEMPLATES = Path(__file__).with_name("templates")

Endpoint = Callable[[Request], Awaitable[Response]]
#: A page's view: runs in a worker thread (it reads the store) and returns the response.
PageView = Callable[[Request, Viewer], Response]
#: A JSON view: returns the body.
DataView = Callable[[Request, Viewer], Mapping[str, Any]]

#: Sent with every page: scripts only from the dashboard itself (no inline script), no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


#: Shown for a missing value.
_DASH = "\u2013"


def _fmt_time(value: datetime | None) -> str:
    return _DASH if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _fmt_num(value: Any, digits: int = 4) -> str:
    if value is None:
        return _DASH
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != value:  # NaN
        return _DASH
    if value != 0 and (abs(value) < 10**-digits or abs(value) >= 10**6):
        return f"{value:.3e}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def _fmt_bytes(value: float | None) -> str:
    if value is None:
        return _DASH
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop returns


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # A NaN would make the page's JSON.parse fail: refuse it here (the figures map it to None).
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "allow_nan": False}
    env.filters.update(
        time=_fmt_time,
        num=_fmt_num,
        bytes=_fmt_bytes,
        short=lambda s: (s or "")[:10],
        url=lambda s: quote(str(s), safe=""),
    )
    return env


@dataclass
class Dashboard:
    """What every page of the dashboard reads from.

    Attributes
    ----------
    ws : Workspace
        The project's stores.
    sessions : Sessions
        Logins and CSRF tokens.
    prefix : str
        Where the dashboard is mounted (``"/ui"``).
    serving_url : str or None
        The inference server whose ``/metrics`` give latency and error rates.
    controller : Controller or None
        The closed loop's controller (manual triggers); None: a read-only dashboard.
    poll_ms : int
        How often a live page asks for new data.
    stats_reader : callable
        ``stats_reader(url) -> ServingStats``.
    """

    ws: Workspace
    sessions: Sessions
    prefix: str
    serving_url: str | None
    controller: Controller | None
    poll_ms: int
    stats_reader: Callable[[str], ServingStats]
    plotly_path: str
    env: jinja2.Environment

    @classmethod
    def create(cls, **kwargs: Any) -> Dashboard:
        """Build the state with the dashboard's template environment."""
        return cls(env=_environment(), **kwargs)

    def url(self, path: str, **query: Any) -> str:
        """Return ``prefix + path`` with the non-empty query parameters."""
        params = {k: v for k, v in query.items() if v not in (None, "")}
        return f"{self.prefix}{path}" + (f"?{urlencode(params)}" if params else "")


def set_cookie(response: Response, request: Request, name: str, value: str, **extra: Any) -> None:
    """Set an HttpOnly, SameSite=Strict cookie scoped to the dashboard (Secure over HTTPS)."""
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        **extra,
    )


def render(
    dash: Dashboard,
    request: Request,
    viewer: Viewer | None,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a template with the common context (viewer, CSRF token, links) and headers."""
    token, anchor = dash.sessions.csrf_token(request.cookies)
    page = dash.env.get_template(template).render(
        base=dash.prefix,
        viewer=viewer,
        csrf=token,
        plotly_js=dash.plotly_path,
        path=request.url.path,
        login_required=dash.sessions.required(),
        **context,
    )
    response = HTMLResponse(page, status_code=status_code, headers=SECURITY_HEADERS)
    if anchor is not None:
        set_cookie(response, request, CSRF_COOKIE, anchor, path=dash.prefix)
    return response


def error_page(
    dash: Dashboard, request: Request, viewer: Viewer | None, err: FedloopError
) -> Response:
    """Render a typed error as a page with its status, message and hint."""
    return render(dash, request, viewer, "error.html", status_code=err.http_status, error=err)


def page_endpoint(dash: Dashboard, needs: Role, view: PageView) -> Endpoint:
    """Wrap a page view: a login when needed (redirect), the role check, typed errors as pages.

    Parameters
    ----------
    dash : Dashboard
        The dashboard's state.
    needs : {"admin", "operator", "viewer"}
        The least role the page needs.
    view : callable
        ``view(request, viewer) -> Response``, run in a worker thread.

    Returns
    -------
    async callable
        The endpoint.
    """

    async def endpoint(request: Request) -> Response:
        viewer = None
        try:
            viewer = await run_in_threadpool(dash.sessions.viewer, request.cookies)
            if viewer is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(dash.url("/login", next=target), status_code=303)
            if not viewer.may(needs):
                return render(
                    dash, request, viewer, "error.html", status_code=403, error=None,
                    message=f"This page needs the {needs} role; {viewer.name} has {viewer.role}.",
                )  # fmt: skip
            return await run_in_threadpool(view, request, viewer)
        except FedloopError as err:
            return error_page(dash, request, viewer, err)

    return endpoint


def data_endpoint(dash: Dashboard, needs: Role, view: DataView) -> Endpoint:
    """Wrap a JSON view: a session cookie or an ``Authorization: Bearer`` key, else 401/403.

    Errors answer ``{"error": {code, message, field, hint}}`` with their HTTP status, as the
    rest of the control plane's API does.
    """

    async def endpoint(request: Request) -> Response:
        try:
            viewer = await run_in_threadpool(dash.sessions.viewer, request.cookies)
            if viewer is not None and not viewer.may(needs):
                raise Forbidden(
                    f"dashboard user {viewer.name!r} has role {viewer.role!r}; "
                    f"{request.url.path} needs {needs}.",
                    field="Authorization",
                    value=viewer.role,
                    hint=f"Log in with a key of role {needs} or above.",
                )
            if viewer is None:
                access = dash.sessions.access
                auth = request.headers.get("authorization")
                if access is None or auth is None:
                    raise Unauthenticated(
                        "no dashboard session and no bearer token.",
                        field="Authorization",
                        hint=f"Log in at {dash.prefix}/login, or send 'Authorization: Bearer <key>'.",
                    )
                route = f"{request.method} {request.url.path}"
                name = await run_in_threadpool(access.caller, auth, needs, route)
                viewer = Viewer(name, needs)
            body = await run_in_threadpool(view, request, viewer)
        except FedloopError as err:
            headers = (
                {"WWW-Authenticate": 'Bearer realm="fedloop"'} if err.http_status == 401 else None
            )
            return JSONResponse(
                {"error": err.to_dict()}, status_code=err.http_status, headers=headers
            )
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return endpoint


#: Largest form body taken (a login key, a trigger's reason).
MAX_FORM_BYTES = 64 * 1024
FormView = Callable[[Request, Viewer, Mapping[str, str]], Response]


async def read_form(request: Request) -> dict[str, str]:
    """Read an ``application/x-www-form-urlencoded`` body (first value of each field).

    Raises
    ------
    InvalidInput
        When the body is too large or of another type.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput(
            f"a dashboard form is sent as application/x-www-form-urlencoded; got {kind!r}.",
            field="content-type",
            value=kind,
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidInput(
                f"the form is larger than {MAX_FORM_BYTES} bytes.", field="body", value=len(body)
            )
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def form_endpoint(dash: Dashboard, needs: Role, view: FormView) -> Endpoint:
    """Wrap a form's POST view: login, role and CSRF token checked before ``view`` runs.

    Parameters
    ----------
    dash : Dashboard
        The dashboard's state.
    needs : {"admin", "operator", "viewer"}
        The least role the action needs.
    view : callable
        ``view(request, viewer, form) -> Response``, run in a worker thread.

    Returns
    -------
    async callable
        The endpoint (403 page for a weaker role or a missing or stale CSRF token).
    """

    async def endpoint(request: Request) -> Response:
        viewer = None
        try:
            viewer = await run_in_threadpool(dash.sessions.viewer, request.cookies)
            if viewer is None:
                return RedirectResponse(dash.url("/login"), status_code=303)
            form = await read_form(request)
            if not dash.sessions.check_csrf(request.cookies, form.get("csrf")):
                raise Forbidden(
                    "the form's CSRF token is missing or stale.",
                    field="csrf",
                    hint="Reload the page and submit the form again.",
                )
            if not viewer.may(needs):
                raise Forbidden(
                    f"{viewer.name!r} has role {viewer.role!r}; this action needs {needs}.",
                    field="role",
                    value=viewer.role,
                    hint=f"Log in with a key of role {needs} or above.",
                )
            return await run_in_threadpool(view, request, viewer, form)
        except FedloopError as err:
            return error_page(dash, request, viewer, err)

    return endpoint
