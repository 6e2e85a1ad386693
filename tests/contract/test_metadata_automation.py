"""Contract suite of the closed loop's action records on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from fedloop.core import Conflict, InvalidInput, NotFound, Signature, TensorSpec
from fedloop.store import Project, SqlMetadataStore

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 4)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
)


@pytest.fixture
def model(store: SqlMetadataStore, project: Project) -> str:
    """Return the name of a registered model."""
    store.create_model_version(
        project.id, "fraud", weights_digest="a" * 64, onnx_digest="b" * 64, signature=SIGNATURE
    )
    return "fraud"


def test_one_trigger_starts_one_action(store: SqlMetadataStore, model: str) -> None:
    """The same (policy, trigger) is refused the second time; another policy may act on it."""
    # Arrange
    store.create_loop_action(
        "p", model, trigger_kind="drift", trigger_ref="event:7", champion_version=1
    )

    # Act / Assert
    with pytest.raises(Conflict) as info:
        store.create_loop_action(
            "p", model, trigger_kind="drift", trigger_ref="event:7", champion_version=1
        )
    assert info.value.field == "trigger_ref"
    store.create_loop_action(
        "q", model, trigger_kind="drift", trigger_ref="event:7", champion_version=1
    )
    assert [a.policy for a in store.list_loop_actions(model_name=model)] == ["p", "q"]


def test_each_transition_is_stored_and_audited(store: SqlMetadataStore, model: str) -> None:
    """State, versions, step and merged detail are stored; each move is an event with its reason."""
    # Arrange
    action = store.create_loop_action(
        "p", model, trigger_kind="manual", trigger_ref="manual:1", champion_version=1,
        reason="operator asked",
    )  # fmt: skip

    # Act
    store.update_loop_action(action.id, state="training", run_id="r" * 32, reason="start")
    store.update_loop_action(
        action.id, state="gating", challenger_version=2, detail={"gate": {"auc": 0.9}}
    )
    moved = store.update_loop_action(action.id, state="rolling_out", step=1, reason="10% canary")

    # Assert
    again = store.get_loop_action(action.id)
    assert (again.state, again.challenger_version, again.step, again.run_id) == (
        "rolling_out",
        2,
        1,
        "r" * 32,
    )
    assert again.detail == {"gate": {"auc": 0.9}} == moved.detail
    kinds = [e.kind for e in store.list_events() if e.kind.startswith("automation.")]
    assert kinds == [
        "automation.triggered",
        "automation.training",
        "automation.gating",
        "automation.rolling_out",
    ]
    assert store.list_events(kind="automation.rolling_out")[-1].payload["reason"] == "10% canary"
    assert store.list_loop_actions(open_only=True) == [again]


def test_final_actions_do_not_move(store: SqlMetadataStore, model: str) -> None:
    """A promoted action is closed: further updates are a Conflict; unknown ids are NotFound."""
    # Arrange
    action = store.create_loop_action(
        "p", model, trigger_kind="schedule", trigger_ref="schedule:1", champion_version=1
    )
    store.update_loop_action(action.id, state="promoted")

    # Act / Assert
    with pytest.raises(Conflict):
        store.update_loop_action(action.id, state="rolled_back")
    with pytest.raises(NotFound):
        store.get_loop_action("0" * 32)
    with pytest.raises(InvalidInput):
        store.update_loop_action(action.id, state="dancing")
    assert store.list_loop_actions(open_only=True) == []
