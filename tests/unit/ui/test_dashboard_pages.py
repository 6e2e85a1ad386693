"""The dashboard on the control plane: every page, its JSON, logins, roles and the CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from _dashboard import MODEL, FilledStore, automation_config, fill_store, serving_metrics
from _loopback import running
from fedloop.api.auth import Access
from fedloop.api.control import create_control_app
from fedloop.automation import Controller
from fedloop.core import ApiConfig, MonitoringConfig
from fedloop.monitoring import Monitor
from fedloop.store import StoreAuthenticator


@dataclass
class Plane:
    """A control plane with the dashboard over a filled store; keys of every role."""

    store: FilledStore
    url: str
    keys: dict[str, str]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    store = fill_store(tmp_path_factory.mktemp("dashboard") / ".fedloop")
    ws = store.ws
    keys = {
        role: ws.metadata.create_credential("api", role, role=role)[1]
        for role in ("admin", "operator", "viewer", "client")
    }

    text = serving_metrics()

    async def metrics(request: object) -> Response:
        return PlainTextResponse(text)

    server = Starlette(routes=[Route("/metrics", metrics)])
    with running(server) as serving_url:
        access = Access(
            StoreAuthenticator(ws.metadata, "api", cache_s=0), ApiConfig(), host="127.0.0.1"
        )
        app = create_control_app(
            Monitor(ws, MonitoringConfig()),
            Controller(ws, automation_config(), serving_url=serving_url),
            run_controller=False,
            access=access,
        )
        with running(app) as url:
            yield Plane(store, url, keys)
    ws.close()


@pytest.fixture
def web(plane: Plane) -> Iterator[Web]:
    """Yield a maker of HTTP clients (a browser each: own cookies), closed after the test."""
    made = Web(plane)
    yield made
    for http in made.clients:
        http.close()


class Web:
    """Makes cookie-keeping HTTP clients for a plane; logs them in."""

    def __init__(self, plane: Plane) -> None:
        self.plane = plane
        self.clients: list[httpx.Client] = []

    def client(self) -> httpx.Client:
        """Return a new client without a session."""
        http = httpx.Client(base_url=self.plane.url, timeout=10, follow_redirects=False)
        self.clients.append(http)
        return http

    def login(self, role: str) -> httpx.Client:
        """Return a new client logged in with the key of ``role``."""
        http = self.client()
        form = http.get("/ui/login")
        answer = http.post(
            "/ui/login",
            data={"key": self.plane.keys[role], "csrf": _csrf(form.text), "next": "/ui/runs"},
        )
        assert answer.status_code == 303, answer.text
        return http


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _pages(plane: Plane) -> list[tuple[str, str]]:
    s = plane.store
    return [
        ("/ui/runs", "fraud-federated"),
        (f"/ui/runs/{s.run_id}", 'id="chart-loss"'),
        (f"/ui/runs/{s.secure_run_id}", "bank-002"),
        ("/ui/models", MODEL),
        (f"/ui/models/{MODEL}", 'id="version-tree"'),
        (f"/ui/models/{MODEL}/2", "secagg"),
        (f"/ui/models/{MODEL}/3", 'id="lineage-graph"'),
        ("/ui/deployments", "canary step 2 of 3"),
        ("/ui/loop", "fraud-drift"),
        ("/ui/monitoring", "of which drift"),
        (f"/ui/monitoring/{MODEL}", 'id="chart-heatmap"'),
        ("/ui/audit", "Chain verified"),
    ]


def test_every_page_renders_for_a_viewer(plane: Plane, web: Web) -> None:
    """Each page answers 200 with its content and the security headers."""
    # Arrange
    http = web.login("viewer")

    # Act
    answers = {path: (http.get(path), marker) for path, marker in _pages(plane)}

    # Assert
    for path, (answer, marker) in answers.items():
        assert answer.status_code == 200, (path, answer.text[:300])
        assert marker in answer.text, path
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert "<script>" not in answer.text  # no inline script: figures are JSON data blocks


@pytest.mark.parametrize("index", range(12))
def test_a_page_without_a_login_redirects_to_it(plane: Plane, web: Web, index: int) -> None:
    """Without a session, every page answers 303 to the login form, which returns there."""
    # Arrange
    path = _pages(plane)[index][0]

    # Act
    answer = web.client().get(path)

    # Assert
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?next=")


def test_the_session_cookie_is_opaque_httponly_and_strict(plane: Plane, web: Web) -> None:
    """The cookie is a random id (never the key), HttpOnly and SameSite=Strict."""
    # Arrange
    http = web.client()
    token = _csrf(http.get("/ui/login").text)

    # Act
    answer = http.post("/ui/login", data={"key": plane.keys["viewer"], "csrf": token})

    # Assert
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("fedloop_session=")
    assert plane.keys["viewer"] not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        pytest.param("not-a-key", 401, "not a valid fedloop API key", id="unknown"),
        pytest.param("client", 403, "payload logs", id="client-role"),
    ],
)
def test_a_bad_login_is_refused_with_its_reason(
    plane: Plane, web: Web, key: str, status: int, message: str
) -> None:
    """An unknown key is 401 and a client key 403, each shown on the login form."""
    # Arrange
    http = web.client()
    token = _csrf(http.get("/ui/login").text)

    # Act
    answer = http.post("/ui/login", data={"key": plane.keys.get(key, key), "csrf": token})

    # Assert
    assert answer.status_code == status
    assert message in answer.text
    assert "fedloop_session" not in answer.headers.get("set-cookie", "")


def test_a_login_without_its_csrf_token_is_refused(plane: Plane, web: Web) -> None:
    """A login form posted without the token of the page it came from is 403."""
    # Act
    answer = web.client().post("/ui/login", data={"key": plane.keys["viewer"]})

    # Assert
    assert answer.status_code == 403
    assert "CSRF" in answer.text


def test_logout_ends_the_session(plane: Plane, web: Web) -> None:
    """After logout, the old session cookie leads back to the login form."""
    # Arrange
    http = web.login("viewer")
    sid = http.cookies["fedloop_session"]
    token = _csrf(http.get("/ui/runs").text)

    # Act
    http.post("/ui/logout", data={"csrf": token})
    replay = web.client()
    replay.cookies.set("fedloop_session", sid)
    again = replay.get("/ui/runs")

    # Assert
    assert again.status_code == 303


def test_the_rounds_json_needs_a_session_or_a_bearer_key(plane: Plane, web: Web) -> None:
    """401 with the error body without either; a viewer's bearer key reads the rounds."""
    # Arrange
    path = f"/ui/api/runs/{plane.store.run_id}/rounds"

    # Act
    refused = web.client().get(path)
    read = web.client().get(path, headers={"Authorization": f"Bearer {plane.keys['viewer']}"})
    as_client = web.client().get(path, headers={"Authorization": f"Bearer {plane.keys['client']}"})

    # Assert
    assert refused.status_code == 401
    assert refused.json()["error"]["field"] == "Authorization"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert as_client.status_code == 403
    body = read.json()
    assert (body["status"], body["rounds"], body["planned"]) == ("finished", 2, 2)
    assert set(body["figures"]) == {"loss", "clients", "bytes", "seconds"}
    assert body["figures"]["loss"]["data"][0]["x"] == [1, 2]
    assert [c["client"] for c in body["clients"]] == ["bank-000", "bank-001", "bank-002"]
    assert all(c["ok"] == 2 for c in body["clients"])


def test_a_viewer_sees_no_trigger_and_cannot_post_one(plane: Plane, web: Web) -> None:
    """The loop page has no trigger form for a viewer; a forged POST is 403 and changes nothing."""
    # Arrange
    http = web.login("viewer")
    page = http.get("/ui/loop")
    before = len(plane.store.ws.metadata.list_loop_actions())

    # Act
    answer = http.post("/ui/loop/policies/fraud-drift/trigger", data={"csrf": _csrf(page.text)})

    # Assert
    assert "trigger-form" not in page.text
    assert "operator role needed" in page.text
    assert answer.status_code == 403
    assert len(plane.store.ws.metadata.list_loop_actions()) == before


def test_an_operator_triggers_a_policy_with_the_csrf_token(plane: Plane, web: Web) -> None:
    """Without the token it is refused; with it, the action is recorded with the key's name."""
    # Arrange
    http = web.login("operator")
    page = http.get("/ui/loop")

    # Act
    forged = http.post("/ui/loop/policies/fraud-drift/trigger", data={"reason": "x"})
    answer = http.post(
        "/ui/loop/policies/fraud-drift/trigger",
        data={"reason": "new quarter", "csrf": _csrf(page.text)},
    )

    # Assert
    assert "trigger-form" in page.text
    assert forged.status_code == 403
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/loop?triggered=")
    action = plane.store.ws.metadata.list_loop_actions()[-1]
    assert action.trigger_kind == "manual"
    event = plane.store.ws.metadata.list_events(kind="automation.triggered")[-1]
    assert event.actor == "ui:operator"


def test_deployments_show_latency_and_error_rate_from_the_server(plane: Plane, web: Web) -> None:
    """The served versions' requests, 5xx rate and quantiles come from the server's /metrics."""
    # Arrange
    http = web.login("viewer")

    # Act
    page = http.get("/ui/deployments").text

    # Assert
    table = page[page.index('id="serving-table"') :]
    assert "952" in table  # v1's requests
    assert "0.21%" in table  # 2 of 952 failed
    assert "20.0%" in page  # the canary's share


def test_text_from_the_store_is_escaped(plane: Plane, web: Web) -> None:
    """An event payload with markup is shown as text."""
    # Arrange
    http = web.login("viewer")

    # Act
    page = http.get("/ui/audit").text

    # Assert
    assert "&lt;b&gt;not markup&lt;/b&gt;" in page
    assert "<b>not markup</b>" not in page


def test_unknown_things_are_404_pages(plane: Plane, web: Web) -> None:
    """An unknown run, model or version is a 404 page naming it."""
    # Arrange
    http = web.login("viewer")

    # Act
    answers = [http.get(p) for p in ("/ui/runs/nope", "/ui/models/nope", f"/ui/models/{MODEL}/9")]

    # Assert
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert "nope" in answers[0].text


def test_the_root_and_the_plotly_bundle(plane: Plane, web: Web) -> None:
    """/ leads to the dashboard; plotly.js comes from the plotly package, cached for good."""
    # Arrange
    http = web.login("viewer")
    page = http.get("/ui/runs").text
    bundle = re.search(r'<script src="(/ui/static/plotly-[^"]+)"', page)
    assert bundle

    # Act
    root = web.client().get("/")
    script = web.client().get(bundle.group(1))

    # Assert
    assert root.status_code == 303
    assert root.headers["location"] == "/ui/runs"
    assert script.status_code == 200
    assert "immutable" in script.headers["cache-control"]
    assert b"plotly" in script.content[:200].lower()
