"""Routing: weighted canary split, sticky keys, shadow traffic and atomic swaps when aliases move."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from _serving import MODEL, oip_body, reference, weights

from _graphs import make_graph
from _loopback import Receiver, metric
from fedloop.core import NotFound, ServingConfig
from fedloop.registry import ModelRegistry, parse_ref
from fedloop.serving import Deployment, Router, ServingMetrics, create_app

ROWS = np.random.default_rng(9).normal(size=(1, 4)).astype(np.float32)
CANARY = {MODEL: {"ref": f"{MODEL}@challenger", "fraction": 0.1}}


def _versions(url: str, *, requests: int, threads: int, headers: Any = None) -> list[str]:
    out: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(n):
                answer = http.post(url, json=oip_body(ROWS), headers=headers)
                assert answer.status_code == 200
                with lock:
                    out.append(answer.json()["model_version"])

    workers = [threading.Thread(target=work, args=(requests // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return out


def test_canary_gets_its_fraction(serve: Callable[..., Any], client: httpx.Client) -> None:
    """Over 2,000 requests the canary's share is 10% within sampling tolerance."""
    # Arrange
    live = serve(canary=CANARY)

    # Act
    versions = _versions(f"{live.url}/v2/models/{MODEL}/infer", requests=2000, threads=4)
    text = client.get(f"{live.url}/metrics").text

    # Assert
    share = Counter(versions)["2"] / len(versions)
    assert len(versions) == 2000
    assert 0.075 < share < 0.125  # 10% +- 3.7 standard deviations
    assert metric(text, "fedloop_serving_requests_total", version="2") == Counter(versions)["2"]
    assert metric(text, "fedloop_serving_model_loaded", version="2", role="canary") == 1


def test_sticky_keys_stick(serve: Callable[..., Any], client: httpx.Client) -> None:
    """Requests with the same sticky header value always reach the same version."""
    # Arrange
    canary = {MODEL: {**CANARY[MODEL], "fraction": 0.3, "sticky_header": "x-user"}}
    live = serve(canary=canary)
    url = f"{live.url}/v2/models/{MODEL}/infer"

    # Act
    seen: dict[str, set[str]] = {}
    for user in range(100):
        for _ in range(4):
            answer = client.post(url, json=oip_body(ROWS), headers={"x-user": f"u{user}"})
            seen.setdefault(f"u{user}", set()).add(answer.json()["model_version"])

    # Assert
    assert all(len(v) == 1 for v in seen.values())
    share = sum(v == {"2"} for v in seen.values()) / len(seen)
    assert 0.12 < share < 0.5


def test_pick_is_deterministic_per_key(registry: ModelRegistry) -> None:
    """The sticky draw depends only on the key (and the model name), not on history."""
    # Arrange
    with ThreadPoolExecutor(1) as pool:
        router = Router(
            registry,
            ServingConfig(models=(f"{MODEL}@champion",), canary=CANARY),
            metrics=ServingMetrics(),
            executor=pool,
        )
        router.load()
    deployment = router.get(MODEL)
    assert deployment is not None
    assert deployment.routes is not None

    # Act
    first = [deployment.pick(deployment.routes, f"k{i}").runtime.version for i in range(500)]
    again = [deployment.pick(deployment.routes, f"k{i}").runtime.version for i in range(500)]

    # Assert
    assert first == again
    assert 0.05 < first.count(2) / 500 < 0.15


def test_shadow_logs_both_predictions(
    serve: Callable[..., Any], client: httpx.Client, receiver: Receiver
) -> None:
    """The shadow sees every request; only the primary answers; both predictions are logged."""
    # Arrange
    live = serve(shadow={MODEL: f"{MODEL}@challenger"}, payload_log={"url": receiver.url})

    # Act
    answers = [
        client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS, id=f"s{i}"))
        for i in range(10)
    ]
    records = receiver.wait_for(lambda r: len(r) >= 20)
    text = client.get(f"{live.url}/metrics").text

    # Assert
    assert {a.json()["model_version"] for a in answers} == {"1"}
    by_role = {(r["request_id"], r["role"]): r for r in records}
    for i in range(10):
        primary, shadow = by_role[(f"s{i}", "primary")], by_role[(f"s{i}", "shadow")]
        assert (primary["version"], shadow["version"]) == (1, 2)
        np.testing.assert_allclose(
            shadow["prediction"]["probability"], reference(2, ROWS), rtol=1e-5
        )
        np.testing.assert_allclose(
            primary["prediction"]["probability"], reference(1, ROWS), rtol=1e-5
        )
    assert metric(text, "fedloop_serving_shadow_total", version="2", outcome="ok") == 10


def test_alias_swap_under_load_fails_no_request(
    serve: Callable[..., Any], registry: ModelRegistry
) -> None:
    """Promoting v2 while threads hammer the server: zero failures, and v2 takes over for good."""
    # Arrange
    live = serve(alias_poll_s=0.05)
    url = f"{live.url}/v2/models/{MODEL}/infer"
    stop = threading.Event()
    results: list[list[tuple[int, str]]] = [[] for _ in range(4)]

    def hammer(out: list[tuple[int, str]]) -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    answer = http.post(url, json=oip_body(ROWS))
                    out.append((answer.status_code, answer.json().get("model_version", "")))
                except httpx.HTTPError:
                    out.append((0, ""))

    threads = [threading.Thread(target=hammer, args=(r,)) for r in results]
    for t in threads:
        t.start()
    time.sleep(0.3)

    # Act
    registry.promote(MODEL, 2, alias="champion")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(r and r[-1][1] == "2" for r in results):
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()

    # Assert
    flat = [x for r in results for x in r]
    assert {status for status, _ in flat} == {200}
    assert {version for _, version in flat} == {"1", "2"}
    for r in results:  # once a thread saw v2 it never saw v1 again
        versions = [v for _, v in r]
        assert "1" not in versions[versions.index("2") :]
    text = httpx.get(f"{live.url}/metrics").text
    assert metric(text, "fedloop_serving_swaps_total", model=MODEL) == 1
    assert metric(text, "fedloop_serving_model_loaded", version="1", role="primary") == 0


def test_new_version_registered_and_promoted_is_served(
    serve: Callable[..., Any], registry: ModelRegistry, client: httpx.Client
) -> None:
    """A version registered after start-up is loaded when its alias points at it."""
    # Arrange
    live = serve(alias_poll_s=0.05)
    mv = registry.register(MODEL, weights=weights(), onnx_model=make_graph(3))

    # Act
    registry.promote(MODEL, mv.version, alias="champion")
    deadline = time.monotonic() + 10
    version = "1"
    while version != "3" and time.monotonic() < deadline:
        time.sleep(0.05)
        version = client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS)).json()[
            "model_version"
        ]

    # Assert
    assert version == "3"


def test_canary_for_unserved_model_is_refused(registry: ModelRegistry) -> None:
    """A canary naming a model that is not served is a NotFound naming the setting."""
    # Arrange
    config = ServingConfig(models=(f"{MODEL}@champion",), canary={"other": CANARY[MODEL]})

    # Act / Assert
    with pytest.raises(NotFound, match=r"serving\.canary\.other"):
        create_app(config, registry)


def test_unknown_alias_is_refused_at_start(registry: ModelRegistry) -> None:
    """Serving an alias that does not exist fails at start-up, naming the alias."""
    # Act / Assert
    with pytest.raises(NotFound, match=r"no alias 'staging'"):
        create_app(ServingConfig(models=(f"{MODEL}@staging",)), registry)


def test_deployment_without_canary_always_picks_primary(registry: ModelRegistry) -> None:
    """No canary configured: every pick is the primary."""
    # Arrange
    deployment = Deployment(MODEL, parse_ref(f"{MODEL}@champion"))

    # Assert
    assert deployment.refs() == [("primary", parse_ref(f"{MODEL}@champion"))]
    assert deployment.find_version("1") is None
