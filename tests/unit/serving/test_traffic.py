"""A running server follows the traffic spec in the store: canary, shadow, clear, under load."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from _serving import MODEL, oip_body

from _loopback import metric
from fedloop.registry import ModelRegistry, clear_traffic, set_traffic
from fedloop.serving import Routes

ROWS = np.random.default_rng(11).normal(size=(1, 4)).astype(np.float32)


class _Load:
    """Threads posting OIP requests until stopped; each answer is tagged with the phase it was sent in."""

    def __init__(self, url: str, *, threads: int = 4) -> None:
        self.url = url
        self.phase = "start"
        self.answers: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._hammer) for _ in range(threads)]

    def _hammer(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                phase = self.phase  # read before sending: the answer came from this phase's routes
                try:
                    answer = http.post(self.url, json=oip_body(ROWS))
                    result = (phase, answer.status_code, answer.json().get("model_version", ""))
                except (httpx.HTTPError, ValueError):
                    result = (phase, 0, "")
                with self._lock:
                    self.answers.append(result)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def versions(self, phase: str) -> Counter[str]:
        """Return the versions that answered requests sent in ``phase``."""
        with self._lock:
            return Counter(v for p, _, v in self.answers if p == phase)

    def enter(self, phase: str, *, answers: int) -> Counter[str]:
        """Tag requests from now on with ``phase``; return its versions once ``answers`` came back."""
        self.phase = phase
        deadline = time.monotonic() + 30
        while sum(self.versions(phase).values()) < answers and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.versions(phase)


def _routes(live: Any) -> Routes:
    routes = live.state.router.get(MODEL).routes
    assert routes is not None
    return routes


def _until(live: Any, check: Callable[[Routes], bool]) -> None:
    """Wait (at most 10 s) until the server's routes pass ``check``."""
    deadline = time.monotonic() + 10
    while not check(_routes(live)):
        assert time.monotonic() < deadline, f"the server never took the change: {_routes(live)}"
        time.sleep(0.01)


def _canary(fraction: float) -> Callable[[Routes], bool]:
    return lambda r: r.canary is not None and r.fraction == fraction and r.shadow is None


def test_rollout_under_load_fails_no_request(
    serve: Callable[..., Any], registry: ModelRegistry
) -> None:
    """Canary 50%, 100%, a shadow, then clear, with 4 threads hammering: every request is a 200."""
    # Arrange
    store = registry.metadata
    live = serve(alias_poll_s=0.05)
    load = _Load(f"{live.url}/v2/models/{MODEL}/infer")
    load.start()

    # Act
    before = load.enter("none", answers=100)
    set_traffic(store, MODEL, canary_ref=f"{MODEL}:2", canary_fraction=0.5, reason="half")
    _until(live, _canary(0.5))
    half = load.enter("half", answers=400)
    set_traffic(store, MODEL, canary_ref=f"{MODEL}:2", canary_fraction=1.0, reason="all")
    _until(live, _canary(1.0))
    full = load.enter("full", answers=100)
    set_traffic(store, MODEL, shadow_ref=f"{MODEL}@challenger", reason="mirror")
    _until(live, lambda r: r.canary is None and r.shadow is not None)
    mirrored = load.enter("shadow", answers=100)
    clear_traffic(store, MODEL, reason="done")
    _until(live, lambda r: r.canary is None and r.shadow is None)
    after = load.enter("cleared", answers=100)
    load.stop()
    deadline = time.monotonic() + 10
    while live.state._shadow_tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    text = httpx.get(f"{live.url}/metrics").text

    # Assert
    assert {status for _, status, _ in load.answers} == {200}
    assert set(before) == {"1"}
    assert 0.35 < half["2"] / sum(half.values()) < 0.65
    assert set(full) == {"2"}
    assert set(mirrored) == {"1"}
    assert set(after) == {"1"}
    assert metric(text, "fedloop_serving_shadow_total", version="2", outcome="ok") >= sum(
        mirrored.values()
    )
    assert metric(text, "fedloop_serving_shadow_total", outcome="failed") == 0
    assert metric(text, "fedloop_serving_traffic_changes_total", model=MODEL) == 4
    assert metric(text, "fedloop_serving_swaps_total", model=MODEL) == 0
    for role in ("canary", "shadow"):
        assert metric(text, "fedloop_serving_model_loaded", version="2", role=role) == 0
    assert metric(text, "fedloop_serving_model_loaded", version="1", role="primary") == 1


def test_promotion_flow_under_load_fails_no_request(
    serve: Callable[..., Any], registry: ModelRegistry
) -> None:
    """Canary 10%, promote the canary to champion, clear: v2 ends up alone, no request fails."""
    # Arrange
    store = registry.metadata
    live = serve(alias_poll_s=0.05)
    load = _Load(f"{live.url}/v2/models/{MODEL}/infer")
    load.start()

    # Act
    set_traffic(store, MODEL, canary_ref=f"{MODEL}:2", canary_fraction=0.1, reason="canary")
    _until(live, _canary(0.1))
    canary = load.enter("canary", answers=200)
    registry.promote(MODEL, 2, alias="champion", reason="canary healthy")
    _until(live, lambda r: r.primary.runtime.version == 2)
    promoted = load.enter("promoted", answers=100)
    clear_traffic(store, MODEL, reason="promoted")
    _until(live, lambda r: r.canary is None)
    cleared = load.enter("cleared", answers=100)
    load.stop()
    text = httpx.get(f"{live.url}/metrics").text

    # Assert
    assert {status for _, status, _ in load.answers} == {200}
    assert set(canary) == {"1", "2"}
    assert set(promoted) == {"2"}
    assert set(cleared) == {"2"}
    assert metric(text, "fedloop_serving_swaps_total", model=MODEL) == 1
    assert metric(text, "fedloop_serving_traffic_changes_total", model=MODEL) == 2
    assert metric(text, "fedloop_serving_model_loaded", version="1", role="primary") == 0
    assert metric(text, "fedloop_serving_model_loaded", version="2", role="canary") == 0
    assert metric(text, "fedloop_serving_model_loaded", version="2", role="primary") == 1
    assert live.state.router._targets.keys() == {str(registry.get(f"{MODEL}:2").id)}


def test_canary_version_is_its_own_metrics_label(
    serve: Callable[..., Any], registry: ModelRegistry
) -> None:
    """/metrics counts the canary's answers under its version, apart from the primary's."""
    # Arrange
    live = serve(alias_poll_s=0.05)
    set_traffic(registry.metadata, MODEL, canary_ref=f"{MODEL}:2", canary_fraction=0.3)
    _until(live, _canary(0.3))
    load = _Load(f"{live.url}/v2/models/{MODEL}/infer", threads=2)

    # Act
    load.start()
    load.enter("canary", answers=300)
    load.stop()
    versions = load.versions("canary")
    text = httpx.get(f"{live.url}/metrics").text

    # Assert
    for version in ("1", "2"):
        assert versions[version] > 0
        assert (
            metric(
                text, "fedloop_serving_requests_total", model=MODEL, version=version, status="200"
            )
            == versions[version]
        )
    assert metric(text, "fedloop_serving_model_loaded", version="2", role="canary") == 1


def test_failures_count_against_the_routed_version(
    serve: Callable[..., Any],
    registry: ModelRegistry,
    client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failing canary's 500s and a 422 carry the routed version; a body that is not JSON none."""
    # Arrange
    live = serve(alias_poll_s=0.05)
    set_traffic(registry.metadata, MODEL, canary_ref=f"{MODEL}:2", canary_fraction=0.5)
    _until(live, _canary(0.5))
    canary = _routes(live).canary
    assert canary is not None

    def broken(feeds: Any) -> Any:
        raise RuntimeError("the canary's graph fails")

    monkeypatch.setattr(canary.runtime, "run", broken)
    url = f"{live.url}/v2/models/{MODEL}/infer"

    # Act
    statuses = Counter(client.post(url, json=oip_body(ROWS)).status_code for _ in range(100))
    set_traffic(registry.metadata, MODEL, canary_ref=f"{MODEL}:2", canary_fraction=1.0)
    _until(live, _canary(1.0))
    bad = client.post(url, json=oip_body(np.zeros((1, 3), dtype=np.float32)))
    garbled = client.post(url, content=b"{")
    text = client.get(f"{live.url}/metrics").text

    # Assert
    assert statuses[500] > 0
    assert statuses[200] > 0
    assert (bad.status_code, garbled.status_code) == (422, 400)
    requests = "fedloop_serving_requests_total"
    assert metric(text, requests, version="2", status="500") == statuses[500]
    assert metric(text, requests, version="1", status="200") == statuses[200]
    assert metric(text, requests, version="2", status="422") == 1
    assert metric(text, requests, version="", status="400") == 1  # not a request to a version
    assert metric(text, requests, version="") == 1


def test_spec_overrides_config_and_clear_restores_it(
    serve: Callable[..., Any], registry: ModelRegistry, client: httpx.Client
) -> None:
    """A spec replaces the configured canary and shadow as a whole; clearing it brings them back."""
    # Arrange
    live = serve(
        alias_poll_s=0.05,
        canary={MODEL: {"ref": f"{MODEL}@challenger", "fraction": 1.0}},
        shadow={MODEL: f"{MODEL}@challenger"},
    )
    url = f"{live.url}/v2/models/{MODEL}/infer"

    def answered() -> set[str]:
        return {client.post(url, json=oip_body(ROWS)).json()["model_version"] for _ in range(20)}

    configured = answered()
    assert live.state.router.get(MODEL).split_source == "config"

    # Act
    set_traffic(registry.metadata, MODEL, canary_ref=f"{MODEL}:2", canary_fraction=0.0)
    _until(live, lambda r: r.fraction == 0.0)
    overridden, overridden_routes = answered(), _routes(live)
    clear_traffic(registry.metadata, MODEL)
    _until(live, lambda r: r.fraction == 1.0)
    restored, restored_routes = answered(), _routes(live)

    # Assert
    assert configured == {"2"}
    assert overridden == {"1"}
    assert overridden_routes.canary is not None
    assert overridden_routes.shadow is None
    assert restored == {"2"}
    assert restored_routes.shadow is not None
    assert live.state.router.get(MODEL).split_source == "config"


def test_spec_in_store_applies_from_start(
    serve: Callable[..., Any], registry: ModelRegistry, client: httpx.Client
) -> None:
    """A server started while a spec is set serves it at once, sticky header included."""
    # Arrange
    set_traffic(
        registry.metadata,
        MODEL,
        canary_ref=f"{MODEL}@challenger",
        canary_fraction=0.5,
        sticky_header="X-User",
    )

    # Act
    live = serve(alias_poll_s=0)
    seen: dict[str, set[str]] = {}
    for user in range(40):
        for _ in range(3):
            answer = client.post(
                f"{live.url}/v2/models/{MODEL}/infer",
                json=oip_body(ROWS),
                headers={"x-user": f"u{user}"},
            )
            seen.setdefault(f"u{user}", set()).add(answer.json()["model_version"])

    # Assert
    assert live.state.router.get(MODEL).split_source == "store"
    assert all(len(v) == 1 for v in seen.values())
    assert {next(iter(v)) for v in seen.values()} == {"1", "2"}


def test_unservable_spec_at_start_serves_the_config(
    serve: Callable[..., Any], registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A spec whose alias was deleted since is logged; the server starts on its configured split."""
    # Arrange
    set_traffic(registry.metadata, MODEL, canary_ref=f"{MODEL}@challenger", canary_fraction=0.5)
    registry.metadata.delete_alias(MODEL, "challenger")

    # Act
    live = serve(alias_poll_s=0)

    # Assert
    assert _routes(live).canary is None
    assert live.state.router.get(MODEL).split_source == "config"
    assert "cannot be served" in caplog.text
