"""API keys and roles on the control plane and the monitor: every route's least role, 401 and 403."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from _loopback import running
from fedloop.api.auth import Access
from fedloop.api.control import create_control_app
from fedloop.api.monitor import create_monitor_app
from fedloop.automation import Controller
from fedloop.core import ApiConfig, AutomationConfig, ConfigError, MonitoringConfig, resolve
from fedloop.monitoring import Monitor
from fedloop.store import StoreAuthenticator, Workspace, open_workspace

SERVING_KEY = "the-key-fedloop-up-gives-its-inference-server"

#: (method, route template, concrete path, least role; None: open to anyone).
CONTROL_ROUTES = [
    ("POST", "/v1/monitor/ingest", "/v1/monitor/ingest", "client"),
    ("GET", "/v1/monitor/models/{name}/windows", "/v1/monitor/models/fraud/windows", "viewer"),
    ("GET", "/v1/loop/actions", "/v1/loop/actions", "viewer"),
    ("POST", "/v1/loop/policies/{name}/trigger", "/v1/loop/policies/nightly/trigger", "operator"),
    ("GET", "/v1/credentials", "/v1/credentials", "admin"),
    ("POST", "/v1/credentials", "/v1/credentials", "admin"),
    ("POST", "/v1/credentials/{kind}/{name}/revoke", "/v1/credentials/api/nobody/revoke", "admin"),
    ("GET", "/metrics", "/metrics", "viewer"),
    ("GET", "/health/live", "/health/live", None),
    # a redirect to the dashboard, whose pages ask for a login themselves (tests/unit/ui)
    ("GET", "/", "/", None),
]
MONITOR_ROUTES = [
    r for r in CONTROL_ROUTES if r[1].startswith(("/v1/monitor/", "/metrics", "/health/"))
]
#: Who may call a route needing each role (written out, not derived from the code under test).
ALLOWED = {
    "client": {"admin", "operator", "client", "serving"},
    "viewer": {"admin", "operator", "viewer"},
    "operator": {"admin", "operator"},
    "admin": {"admin"},
}
CALLERS = ["nobody", "revoked", "admin", "operator", "viewer", "client", "serving"]


@dataclass
class Plane:
    """A control plane over a workspace with one API key per role, one of them revoked."""

    ws: Workspace
    apps: tuple[Starlette, Starlette]
    control: httpx.Client
    monitor: httpx.Client
    keys: dict[str, str]

    def headers(self, caller: str) -> dict[str, str]:
        """Return the Authorization header of ``caller`` (none for nobody)."""
        return {"Authorization": f"Bearer {self.keys[caller]}"} if caller in self.keys else {}


def _access(ws: Workspace, auth: str, host: str = "127.0.0.1") -> Access:
    return Access(
        StoreAuthenticator(ws.metadata, "api", cache_s=0),
        ApiConfig(auth=auth),  # type: ignore[arg-type]
        host=host,
        serving_key=SERVING_KEY,
    )


def _apps(ws: Workspace, access: Access) -> tuple[Starlette, Starlette]:
    monitor = Monitor(ws, MonitoringConfig())
    controller = Controller(ws, AutomationConfig())
    control = create_control_app(monitor, controller, run_controller=False, access=access)
    return control, create_monitor_app(monitor, access=access)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """Return the control plane and the monitor app with ``api.auth = "required"``."""
    folder = tmp_path_factory.mktemp("roles")
    with open_workspace(resolve({"project": {"dir": str(folder)}}, {}, {}).config) as ws:
        keys = {r: ws.metadata.create_credential("api", r, role=r)[1] for r in CALLERS[2:6]}
        keys["revoked"] = ws.metadata.create_credential("api", "old", role="admin")[1]
        ws.metadata.revoke_credential("api", "old")
        keys["serving"] = SERVING_KEY
        apps = _apps(ws, _access(ws, "required"))
        with ExitStack() as stack:
            control, monitor = (_client(stack, app) for app in apps)
            yield Plane(ws, apps, control, monitor, keys)


def _client(stack: ExitStack, app: Starlette) -> httpx.Client:
    url = stack.enter_context(running(app))
    return stack.enter_context(httpx.Client(base_url=url, timeout=10))


def _expected(needs: str | None, caller: str) -> int | None:
    """Return 401 or 403 when ``caller`` is refused, None when it gets through."""
    if needs is None:
        return None
    if caller in ("nobody", "revoked"):
        return 401
    return None if caller in ALLOWED[needs] else 403


def _templates(app: Starlette) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_every_control_plane_route_has_a_role_in_the_table(plane: Plane) -> None:
    """The table below covers each route of the control plane: a new route needs a decision."""
    # Assert
    assert _templates(plane.apps[0]) == {(m, t) for m, t, _, _ in CONTROL_ROUTES}
    assert _templates(plane.apps[1]) == {(m, t) for m, t, _, _ in MONITOR_ROUTES}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "needs"),
    [pytest.param(m, p, n, id=f"{m} {t}") for m, t, p, n in CONTROL_ROUTES],
)
def test_control_plane_route_needs_its_least_role(
    plane: Plane, method: str, path: str, needs: str | None, caller: str
) -> None:
    """Each caller gets through exactly the routes its role reaches; others get 401 or 403."""
    # Act
    answer = plane.control.request(
        method, path, headers=plane.headers(caller), json=None if method == "GET" else {}
    )

    # Assert
    expected = _expected(needs, caller)
    if expected is None:
        assert answer.status_code not in (401, 403), answer.text
    else:
        assert answer.status_code == expected, answer.text
        error = answer.json()["error"]
        assert error["field"] == "Authorization"
        assert error["hint"]


@pytest.mark.parametrize("caller", ["nobody", "viewer", "client", "serving"])
@pytest.mark.parametrize(
    ("method", "path", "needs"),
    [pytest.param(m, p, n, id=f"{m} {t}") for m, t, p, n in MONITOR_ROUTES],
)
def test_monitor_route_needs_its_least_role(
    plane: Plane, method: str, path: str, needs: str | None, caller: str
) -> None:
    """The monitor's own app takes the same roles for the same routes."""
    # Act
    answer = plane.monitor.request(method, path, headers=plane.headers(caller))

    # Assert
    expected = _expected(needs, caller)
    assert (answer.status_code if expected else None) == expected


def test_unauthenticated_is_401_with_the_bearer_challenge(plane: Plane) -> None:
    """A missing key answers the JSON error body, code unauthenticated, and WWW-Authenticate."""
    # Act
    answer = plane.control.get("/v1/loop/actions")

    # Assert
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["error"]["code"] == "unauthenticated"


def test_a_weaker_role_is_403_naming_the_roles_that_would_do(plane: Plane) -> None:
    """A viewer triggering a policy is forbidden; the message names the roles it needs."""
    # Act
    answer = plane.control.post(
        "/v1/loop/policies/nightly/trigger", headers=plane.headers("viewer")
    )

    # Assert
    error = answer.json()["error"]
    assert (answer.status_code, error["code"]) == (403, "forbidden")
    assert "admin, operator" in error["message"]
    assert "fedloop keys create --role operator" in error["hint"]


def test_an_admin_manages_keys_over_the_api_and_is_the_audit_actor(plane: Plane) -> None:
    """POST /v1/credentials returns the token once; revoking is audited with the caller."""
    # Arrange
    admin = plane.headers("admin")

    # Act
    created = plane.control.post(
        "/v1/credentials", headers=admin, json={"name": "ci", "role": "operator"}
    )
    token = created.json()["token"]
    works = plane.control.get("/v1/loop/actions", headers={"Authorization": f"Bearer {token}"})
    revoked = plane.control.post("/v1/credentials/api/ci/revoke", headers=admin, json={})
    refused = plane.control.get("/v1/loop/actions", headers={"Authorization": f"Bearer {token}"})
    listed = plane.control.get("/v1/credentials?all=1", headers=admin).json()["credentials"]

    # Assert
    assert (created.status_code, works.status_code, revoked.status_code) == (201, 200, 200)
    assert refused.status_code == 401
    assert "token" not in str(listed)
    event = plane.ws.metadata.list_events(kind="credential.revoked")[-1]
    assert event.actor == "api:admin"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"name": "x", "role": "root"}, "role", id="role"),
        pytest.param({"name": "x", "colour": "red"}, "colour", id="extra"),
        pytest.param({"kind": "user", "name": "x"}, "kind", id="kind"),
        pytest.param({"name": "has space"}, "name", id="name"),
    ],
)
def test_a_bad_credential_body_names_its_field(
    plane: Plane, body: dict[str, str], field: str
) -> None:
    """Bad bodies are 422 with the field named."""
    # Act
    answer = plane.control.post("/v1/credentials", headers=plane.headers("admin"), json=body)

    # Assert
    assert (answer.status_code, answer.json()["error"]["field"]) == (422, field)


def test_auto_opens_loopback_until_the_first_key(tmp_path: Path) -> None:
    """api.auth = auto: a loopback store without keys is open; the first key closes it for good."""
    # Arrange
    config = resolve({"project": {"dir": str(tmp_path)}}, {}, {}).config
    with open_workspace(config) as ws, ExitStack() as stack:
        client = _client(stack, _apps(ws, _access(ws, "auto"))[0])
        before = client.get("/v1/loop/actions").status_code

        # Act
        ws.metadata.create_credential("api", "ops", role="admin")
        with_key = client.get("/v1/loop/actions").status_code
        ws.metadata.revoke_credential("api", "ops")
        after_revoking = client.get("/v1/loop/actions").status_code

    # Assert
    assert (before, with_key, after_revoking) == (200, 401, 401)


@pytest.mark.parametrize(
    ("auth", "host", "required"),
    [
        pytest.param("auto", "127.0.0.1", False, id="auto-loopback"),
        pytest.param("auto", "::1", False, id="auto-ipv6-loopback"),
        pytest.param("auto", "localhost", False, id="auto-localhost"),
        pytest.param("auto", "0.0.0.0", True, id="auto-public"),
        pytest.param("auto", "10.1.2.3", True, id="auto-lan"),
        pytest.param("required", "127.0.0.1", True, id="required"),
        pytest.param("off", "127.0.0.1", False, id="off-loopback"),
    ],
)
def test_when_keys_are_required(auth: str, host: str, required: bool) -> None:
    """Keys are needed off loopback, when required, or once keys exist (auto)."""
    # Act
    config = ApiConfig(auth=auth)  # type: ignore[arg-type]

    # Assert
    assert config.auth_required(host, keys_exist=False) is required
    assert config.auth_required(host, keys_exist=True) is (auth != "off")


def test_auth_off_is_refused_off_loopback() -> None:
    """api.auth = off on a public interface is a ConfigError naming api.auth."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0") as info:
        ApiConfig(auth="off").auth_required("0.0.0.0", keys_exist=False)
    assert info.value.field == "api.auth"


def test_an_unknown_auth_mode_is_a_config_error() -> None:
    """The [api] section takes auto, required or off only; resolve names the key."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"api\.auth"):
        resolve({"api": {"auth": "sometimes"}}, {}, {})
