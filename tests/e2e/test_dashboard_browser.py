"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, on loopback.

The control plane runs under uvicorn over a store filled by short federated runs; Chromium
logs in, loads every page, checks that the plotly charts rendered (an SVG with traces), follows
the links between pages, watches a running run's charts update, and saves a screenshot of each
page under the test's temporary folder. Skipped when /usr/bin/chromium or playwright is missing
locally; ``.ci/run`` installs both and sets FEDLOOP_TEST_BROWSER=required, so CI never skips.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from _dashboard import (
    MODEL,
    FilledStore,
    automation_config,
    fill_store,
    serving_metrics,
    start_slow_run,
)
from _loopback import running
from fedloop.api.auth import Access
from fedloop.api.control import create_control_app
from fedloop.automation import Controller
from fedloop.core import ApiConfig, MonitoringConfig
from fedloop.monitoring import Monitor
from fedloop.store import StoreAuthenticator

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
#: The flags this machine's Chromium needs (no sandbox as root, no GPU, no calls home).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Read at import, before the autouse fixture clears FEDLOOP_* variables.
REQUIRED = os.environ.get("FEDLOOP_TEST_BROWSER") == "required"
#: Per chart: drawn by plotly (its class and SVG), and its traces and points.
CHARTS_JS = """() => Array.from(document.querySelectorAll('.chart')).map(el => ({
  id: el.id,
  rendered: el.classList.contains('js-plotly-plot') && !!el.querySelector('svg.main-svg'),
  traces: (el.data || []).length,
  points: (el.data || []).reduce((n, t) => n + ((t.x || t.z || []).length), 0),
  longest: Math.max(0, ...(el.data || []).map(t => (t.x || t.z || []).length)),
}))"""


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return 'playwright is missing: pip install -e ".[dev]" (it drives Debian\'s chromium)'
    if not CHROMIUM.exists():
        return "Debian's chromium is missing (/usr/bin/chromium): apt-get install chromium"
    return None


@dataclass
class Site:
    """The control plane over a filled store, with a viewer's and an operator's key."""

    store: FilledStore
    url: str
    keys: dict[str, str]
    shots: Path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(f"FEDLOOP_TEST_BROWSER=required but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    store = fill_store(tmp_path_factory.mktemp("dashboard-browser") / ".fedloop")
    ws = store.ws
    keys = {
        role: ws.metadata.create_credential("api", f"ana-{role}", role=role)[1]
        for role in ("viewer", "operator")
    }
    text = serving_metrics()

    async def metrics(request: object) -> Response:
        return PlainTextResponse(text)

    with running(Starlette(routes=[Route("/metrics", metrics)])) as serving_url:
        access = Access(StoreAuthenticator(ws.metadata, "api"), ApiConfig(), host="127.0.0.1")
        app = create_control_app(
            Monitor(ws, MonitoringConfig()),
            Controller(ws, automation_config(), serving_url=serving_url),
            run_controller=False,
            access=access,
        )
        with running(app) as url:
            yield Site(store, url, keys, tmp_path_factory.mktemp("dashboard-screenshots"))
    ws.close()


class Visit:
    """One browser context (its own cookies) with its console errors and screenshots."""

    def __init__(self, browser: Any, site: Site) -> None:
        self.site = site
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        self.page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )

    def login(self, role: str) -> None:
        self.page.goto(f"{self.site.url}/ui/runs")
        assert "/ui/login" in self.page.url, self.page.url
        self.page.fill("#key", self.site.keys[role])
        self.shot("login")
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_url("**/ui/runs")

    def shot(self, name: str) -> Path:
        path = self.site.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def charts(self, name: str, *, at_least: int) -> list[dict[str, Any]]:
        """Screenshot the page; check its charts rendered with data; return them."""
        self.page.wait_for_load_state("load")
        if at_least:
            self.page.wait_for_selector(".js-plotly-plot svg.main-svg")
        found: list[dict[str, Any]] = self.page.evaluate(CHARTS_JS)
        path = self.shot(name)
        assert len(found) >= at_least, f"{name}: {found} (screenshot {path})"
        for chart in found:
            assert chart["rendered"], f"{name}: {chart} did not render (screenshot {path})"
            assert chart["traces"] > 0, f"{name}: {chart} has no trace (screenshot {path})"
        assert not self.errors, f"{name}: {self.errors} (screenshot {path})"
        return found

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, site: Site) -> Iterator[Visit]:
    made = Visit(browser, site)
    yield made
    made.close()


def test_a_viewer_sees_every_page_with_its_charts(visit: Visit, site: Site) -> None:
    """After logging in, each page loads without errors and its plotly charts hold data."""
    # Arrange
    visit.login("viewer")
    s = site.store
    pages = [
        ("runs", "/ui/runs", 0),
        ("run-fedavg", f"/ui/runs/{s.run_id}", 4),
        ("run-dp-secagg", f"/ui/runs/{s.secure_run_id}", 4),
        ("models", "/ui/models", 0),
        ("model", f"/ui/models/{MODEL}", 1),
        ("version-3", f"/ui/models/{MODEL}/3", 0),
        ("version-2", f"/ui/models/{MODEL}/2", 0),
        ("deployments", "/ui/deployments", 1),
        ("loop", "/ui/loop", 0),
        ("monitoring", "/ui/monitoring", 0),
        ("monitoring-model", f"/ui/monitoring/{MODEL}", 4),
        ("audit", "/ui/audit", 0),
    ]

    # Act / Assert
    for name, path, at_least in pages:
        answer = visit.page.goto(f"{site.url}{path}")
        assert answer is not None
        assert answer.status == 200, f"{path}: {answer.status}"
        visit.charts(name, at_least=at_least)
    assert visit.page.locator("#audit-state[data-ok=true]").count() == 1


def test_links_lead_from_a_run_to_its_model_lineage_and_back(visit: Visit, site: Site) -> None:
    """Runs -> run -> version -> lineage graph -> run; model -> version tree -> parent -> audit."""
    # Arrange
    visit.login("viewer")
    page = visit.page

    # Act / Assert
    page.click(f'a.run-link[href$="/{site.store.run_id}"]')
    page.wait_for_url(f"**/ui/runs/{site.store.run_id}")
    visit.charts("link-run", at_least=4)
    page.click("a.version-link")
    page.wait_for_url(f"**/ui/models/{MODEL}/1")
    assert page.locator("#lineage-graph svg .node").count() >= 5  # data set, 3 banks, run, v1
    page.click('#lineage-graph a[href*="/ui/runs/"]')
    page.wait_for_url(f"**/ui/runs/{site.store.run_id}")
    page.go_back()
    page.click(f'.crumbs a[href="/ui/models/{MODEL}"]')
    page.wait_for_url(f"**/ui/models/{MODEL}")
    page.click(f'#version-tree a[href="/ui/models/{MODEL}/3"]')
    page.wait_for_url(f"**/ui/models/{MODEL}/3")
    visit.shot("link-version-3")
    page.click("#parent-link")
    page.wait_for_url(f"**/ui/models/{MODEL}/2")
    assert "ε =" in page.inner_text("#epsilon")
    assert "secagg" in page.inner_text("#privacy")
    page.goto(f"{site.url}/ui/audit")
    page.locator("a.subject-link").first.click()
    page.wait_for_load_state("load")
    assert "/ui/models/" in page.url or "/ui/runs/" in page.url or "/deployments" in page.url
    page.goto(f"{site.url}/ui/monitoring")
    page.click("a.monitor-link")
    page.wait_for_url(f"**/ui/monitoring/{MODEL}")
    visit.charts("link-monitoring", at_least=4)
    page.goto(f"{site.url}/ui/deployments")
    served = page.inner_text("#serving-table")
    assert "v1" in served
    assert "v3" in served
    assert "0.21%" in served
    assert not visit.errors


def test_a_viewer_gets_no_operator_action(visit: Visit) -> None:
    """The loop page shows a viewer the policies without any trigger button."""
    # Arrange
    visit.login("viewer")

    # Act
    visit.page.goto(f"{visit.site.url}/ui/loop")
    path = visit.shot("loop-viewer")

    # Assert
    assert visit.page.locator(".trigger-form, button.trigger").count() == 0, path
    assert "operator role needed" in visit.page.inner_text("#policies-table"), path


def test_an_operator_triggers_a_policy_then_logs_out(visit: Visit) -> None:
    """The trigger form starts an action in the store; logging out needs a new login."""
    # Arrange
    visit.login("operator")
    page = visit.page
    page.goto(f"{visit.site.url}/ui/loop")

    # Act
    page.fill(".trigger-form input[name=reason]", "checked by hand")
    page.click("button.trigger")
    page.wait_for_url("**/ui/loop?triggered=*")
    path = visit.shot("loop-operator-triggered")
    page.click("#logout")
    page.wait_for_url("**/ui/login")
    page.goto(f"{visit.site.url}/ui/runs")

    # Assert
    assert "/ui/login" in page.url, path
    action = visit.site.store.ws.metadata.list_loop_actions()[-1]
    assert action.trigger_kind == "manual"
    event = visit.site.store.ws.metadata.list_events(kind="automation.triggered")[-1]
    assert (event.actor, event.payload["reason"]) == ("ui:ana-operator", "checked by hand")


def test_a_running_run_page_updates_its_charts_live(visit: Visit, site: Site) -> None:
    """While rounds finish, the page's round charts gain points without a reload."""
    # Arrange
    visit.login("viewer")
    run_id, thread = start_slow_run(site.store.ws, num_rounds=4, delay_s=0.35)

    # Act
    visit.page.goto(f"{site.url}/ui/runs/{run_id}")
    first = {c["id"]: c["longest"] for c in visit.page.evaluate(CHARTS_JS)}
    visit.page.locator("#live[data-status=finished]").wait_for(timeout=30_000)
    last = {c["id"]: c for c in visit.charts("run-live-finished", at_least=4)}
    polls = int(visit.page.get_attribute("#live", "data-polls") or 0)
    thread.join(10)

    # Assert
    path = site.shots / "run-live-finished.png"
    assert first["chart-loss"] < 4, (first, path)  # loaded before the last round
    assert last["chart-loss"]["longest"] == 4, (last, path)
    assert last["chart-clients"]["longest"] == 4, (last, path)
    assert polls >= 2, path
    assert visit.page.inner_text("#round-count") == "4 / 4"
    assert visit.page.inner_text("#run-status") == "finished"
