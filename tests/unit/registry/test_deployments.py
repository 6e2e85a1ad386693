"""Traffic specs: set, find and clear a served model's split; validation before any write; audit."""

from __future__ import annotations

from typing import Any

import pytest

from fedloop.core import Conflict, InvalidInput, NotFound, Parameters
from fedloop.registry import (
    CanarySpec,
    ModelRegistry,
    TrafficSpec,
    clear_traffic,
    find_traffic,
    set_traffic,
)
from fedloop.store import SqlMetadataStore


@pytest.fixture
def store(registry: ModelRegistry, weights: Parameters, graph: bytes) -> SqlMetadataStore:
    """Return a store holding ``m`` v1-v2 (v1 champion, v2 challenger) and ``other`` v1."""
    for _ in range(2):
        registry.register("m", weights=weights, onnx_model=graph)
    registry.register("other", weights=weights, onnx_model=graph)
    registry.promote("m", 1, alias="champion")
    registry.promote("m", 2, alias="challenger")
    return registry.metadata


def _deployment_events(store: SqlMetadataStore) -> list[Any]:
    return store.list_events(kind="deployment.changed", limit=1000)


def test_no_record_finds_nothing(store: SqlMetadataStore) -> None:
    """A model nobody set a split for has no traffic spec."""
    # Act / Assert
    assert find_traffic(store, "m") is None


def test_set_then_find_round_trips(store: SqlMetadataStore) -> None:
    """What set_traffic records is what find_traffic returns."""
    # Act
    written = set_traffic(
        store,
        "m",
        canary_ref="m:2",
        canary_fraction=0.1,
        sticky_header="x-user",
        shadow_ref="m@challenger",
        actor="controller",
        reason="canary 10%",
    )
    found = find_traffic(store, "m")

    # Assert
    assert found == written
    assert found == TrafficSpec(
        canary=CanarySpec(ref="m:2", fraction=0.1, sticky_header="x-user"),
        shadow="m@challenger",
        reason="canary 10%",
    )
    assert not found.cleared
    assert store.get_deployment("m").status == "active"


def test_clear_leaves_a_cleared_spec(store: SqlMetadataStore) -> None:
    """After clear_traffic the spec has neither canary nor shadow and says why."""
    # Arrange
    set_traffic(store, "m", canary_ref="m:2", canary_fraction=0.5)

    # Act
    cleared = clear_traffic(store, "m", actor="controller", reason="rolled back")

    # Assert
    assert find_traffic(store, "m") == cleared
    assert cleared.cleared
    assert cleared.reason == "rolled back"
    assert store.get_deployment("m").status == "cleared"


def test_each_change_is_audited(store: SqlMetadataStore) -> None:
    """Every set and clear appends a deployment.changed event with the actor and the spec."""
    # Act
    set_traffic(store, "m", canary_ref="m:2", canary_fraction=0.1, actor="ctl", reason="start")
    set_traffic(store, "m", canary_ref="m:2", canary_fraction=1.0, actor="ctl", reason="all in")
    clear_traffic(store, "m", actor="ctl", reason="promoted")

    # Assert
    events = _deployment_events(store)
    assert [e.subject for e in events] == ["deployment:m"] * 3
    assert {e.actor for e in events} == {"ctl"}
    assert [e.payload["spec"]["reason"] for e in events] == ["start", "all in", "promoted"]
    assert events[1].payload["spec"]["canary"]["fraction"] == 1.0
    assert store.verify_audit().ok


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        pytest.param({"canary_ref": "m:9", "canary_fraction": 0.1}, NotFound, "canary_ref", id="unknown-version"),
        pytest.param({"canary_ref": "m@staging", "canary_fraction": 0.1}, NotFound, "canary_ref", id="unknown-alias"),
        pytest.param({"canary_ref": "other:1", "canary_fraction": 0.1}, InvalidInput, "canary_ref", id="other-model"),
        pytest.param({"canary_ref": "m:x y", "canary_fraction": 0.1}, InvalidInput, "canary_ref", id="unparsable"),
        pytest.param({"canary_ref": "m:2", "canary_fraction": 1.5}, InvalidInput, "canary_fraction", id="above-one"),
        pytest.param({"canary_ref": "m:2", "canary_fraction": -0.1}, InvalidInput, "canary_fraction", id="negative"),
        pytest.param({"canary_ref": "m:2", "canary_fraction": float("nan")}, InvalidInput, "canary_fraction", id="nan"),
        pytest.param({"canary_fraction": 0.2}, InvalidInput, "canary_fraction", id="fraction-without-canary"),
        pytest.param({"canary_ref": "m:2", "sticky_header": "x user"}, InvalidInput, "sticky_header", id="bad-header"),
        pytest.param({"sticky_header": "x-user"}, InvalidInput, "sticky_header", id="header-without-canary"),
        pytest.param({"shadow_ref": "m:7"}, NotFound, "shadow_ref", id="unknown-shadow"),
        pytest.param({"shadow_ref": "other@champion"}, InvalidInput, "shadow_ref", id="other-model-shadow"),
    ],
)  # fmt: skip
def test_bad_spec_is_refused_and_nothing_written(
    store: SqlMetadataStore, kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    """A bad reference or fraction raises naming the field; no record and no event appear."""
    # Act / Assert
    with pytest.raises(error, match=field) as caught:
        set_traffic(store, "m", **kwargs)
    assert getattr(caught.value, "field", None) == field
    assert find_traffic(store, "m") is None
    assert _deployment_events(store) == []


def test_unknown_model_is_refused(store: SqlMetadataStore) -> None:
    """A split for a model that does not exist is a NotFound; nothing is written."""
    # Act / Assert
    with pytest.raises(NotFound, match="nope"):
        set_traffic(store, "nope")
    assert store.list_deployments() == []


def test_deployment_of_another_model_conflicts(store: SqlMetadataStore) -> None:
    """A deployment name already bound to another model is not taken over."""
    # Arrange
    store.put_deployment("m", "other", {"canary": None, "shadow": None})

    # Act / Assert
    with pytest.raises(Conflict, match=r"serves model 'other'"):
        set_traffic(store, "m", canary_ref="m:2", canary_fraction=0.1)
    assert find_traffic(store, "m") is None


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"canary": {"ref": "m:2", "fraction": 7}}, id="fraction"),
        pytest.param({"canary": {"ref": "other:1", "fraction": 0.1}}, id="other-model"),
        pytest.param({"canary": None, "shadow": None, "weights": [1]}, id="unknown-key"),
        pytest.param({"shadow": "m:x y"}, id="bad-ref"),
    ],
)
def test_unreadable_record_is_ignored(
    store: SqlMetadataStore, spec: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A record written around set_traffic that is not a valid spec is logged and ignored."""
    # Arrange
    store.put_deployment("m", "m", spec)

    # Act
    found = find_traffic(store, "m")

    # Assert
    assert found is None
    assert "ignoring the traffic spec of m" in caplog.text


def test_fraction_zero_keeps_the_canary(store: SqlMetadataStore) -> None:
    """A canary at fraction 0 is a set (not cleared) spec: it overrides the config's split."""
    # Act
    spec = set_traffic(store, "m", canary_ref="m@challenger", canary_fraction=0)

    # Assert
    assert spec.canary == CanarySpec(ref="m@challenger", fraction=0.0)
    assert not spec.cleared
