"""Aliases: parsing references, promotion with history and audit, stacked rollbacks."""

from __future__ import annotations

import pytest

from fedloop.core import Conflict, InvalidInput, NotFound, Parameters
from fedloop.registry import CHALLENGER, CHAMPION, ModelRef, ModelRegistry, parse_ref
from fedloop.registry import promote as promote_alias
from fedloop.registry import rollback as rollback_alias
from fedloop.store import Workspace


@pytest.fixture
def model(registry: ModelRegistry, weights: Parameters, graph: bytes) -> ModelRegistry:
    """Return a registry holding model ``m`` with versions 1-3 and no aliases."""
    for _ in range(3):
        registry.register("m", weights=weights, onnx_model=graph)
    return registry


def _champion(registry: ModelRegistry) -> int:
    return registry.get("m@champion").version


# -- parse_ref -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("fraud", ModelRef(name="fraud"), id="name"),
        pytest.param("fraud@champion", ModelRef(name="fraud", alias="champion"), id="alias"),
        pytest.param("fraud:3", ModelRef(name="fraud", version=3), id="colon"),
        pytest.param("fraud/12", ModelRef(name="fraud", version=12), id="slash"),
        pytest.param(
            "fraud-detector.v2:1", ModelRef(name="fraud-detector.v2", version=1), id="dots"
        ),
    ],
)
def test_parse_ref_reads_references(text: str, expected: ModelRef) -> None:
    """parse_ref reads NAME, NAME@ALIAS, NAME:VERSION and NAME/VERSION."""
    # Act
    ref = parse_ref(text)

    # Assert
    assert ref == expected


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        pytest.param(ModelRef(name="m"), "m", id="name"),
        pytest.param(ModelRef(name="m", alias="champion"), "m@champion", id="alias"),
        pytest.param(ModelRef(name="m", version=4), "m:4", id="version"),
    ],
)
def test_model_ref_str_round_trips(ref: ModelRef, text: str) -> None:
    """str(ModelRef) writes the form parse_ref reads back."""
    # Act
    written = str(ref)

    # Assert
    assert written == text
    assert parse_ref(written) == ref


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("m:abc", "version", id="letters"),
        pytest.param("m:0", "version", id="zero"),
        pytest.param("m:-1", "version", id="negative"),
        pytest.param("m:1.5", "version", id="fraction"),
        pytest.param("m:²", "version", id="superscript-digit"),
        pytest.param("", "model", id="empty"),
        pytest.param("bad name", "model", id="space"),
        pytest.param("m@", "model", id="empty-alias"),
        pytest.param("m:1:2", "model", id="two-selectors"),
        pytest.param("-m", "model", id="leading-dash"),
    ],
)
def test_parse_ref_rejects_malformed_text(text: str, field: str) -> None:
    """Malformed references raise InvalidInput naming the model or the version."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        parse_ref(text)
    assert info.value.field == field


# -- promote ---------------------------------------------------------------------------------


def test_promote_points_alias_at_version(model: ModelRegistry) -> None:
    """promote() makes NAME@ALIAS resolve to the version."""
    # Act
    change = model.promote("m", 2, alias=CHAMPION)

    # Assert
    assert _champion(model) == 2
    assert (change.from_version, change.to_version, change.action) == (None, 2, "set")


def test_promote_moves_alias_from_previous_version(model: ModelRegistry) -> None:
    """Promoting again reports the version the alias left and lists only the new holder."""
    # Arrange
    model.promote("m", 1)

    # Act
    change = model.promote("m", 3)

    # Assert
    assert (change.from_version, change.to_version) == (1, 3)
    assert model.get("m:1").aliases == ()
    assert model.get("m:3").aliases == (CHAMPION,)


def test_aliases_are_independent(model: ModelRegistry) -> None:
    """The champion and challenger aliases point at different versions at once."""
    # Act
    model.promote("m", 1, alias=CHAMPION)
    model.promote("m", 3, alias=CHALLENGER)

    # Assert
    assert (model.get("m@champion").version, model.get("m@challenger").version) == (1, 3)


def test_promote_records_history_with_actor_and_reason(model: ModelRegistry) -> None:
    """Each promotion is kept in the alias history with its actor and reason, oldest first."""
    # Arrange
    model.promote("m", 1, actor="alice", reason="first")

    # Act
    model.promote("m", 2, actor="bob", reason="better auc")

    # Assert
    history = model.alias_history("m", CHAMPION)
    assert [(h.from_version, h.to_version, h.actor, h.reason) for h in history] == [
        (None, 1, "alice", "first"),
        (1, 2, "bob", "better auc"),
    ]


def test_promote_appends_alias_moved_event(model: ModelRegistry, workspace: Workspace) -> None:
    """A promotion appends a model.alias_moved audit event with actor, versions and reason."""
    # Arrange
    model.promote("m", 1)

    # Act
    model.promote("m", 2, actor="bob", reason="better auc")

    # Assert
    event = workspace.metadata.list_events(kind="model.alias_moved")[-1]
    assert (event.subject, event.actor) == ("model:m@champion", "bob")
    assert event.payload == {
        "from_version": 1,
        "to_version": 2,
        "action": "set",
        "reason": "better auc",
    }
    assert workspace.metadata.verify_audit().ok


def test_promote_without_reason_records_default(model: ModelRegistry) -> None:
    """A promotion without a reason is recorded with the reason 'promoted'."""
    # Act
    change = model.promote("m", 1)

    # Assert
    assert change.reason == "promoted"


def test_promote_unknown_version_leaves_alias(model: ModelRegistry, workspace: Workspace) -> None:
    """Promoting a version that does not exist raises NotFound and leaves alias and log alone."""
    # Arrange
    model.promote("m", 2)
    events_before = workspace.metadata.verify_audit().head_seq

    # Act
    with pytest.raises(NotFound) as info:
        model.promote("m", 9)

    # Assert
    assert info.value.field == "version"
    assert _champion(model) == 2
    assert len(model.alias_history("m")) == 1
    assert workspace.metadata.verify_audit().head_seq == events_before


def test_promote_unknown_model_is_not_found(model: ModelRegistry) -> None:
    """Promoting a version of an unknown model raises NotFound on model."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        model.promote("nope", 1)
    assert info.value.field == "model"


@pytest.mark.parametrize(
    "alias",
    [
        pytest.param("", id="empty"),
        pytest.param("bad alias", id="space"),
        pytest.param("a" * 101, id="long"),
    ],
)
def test_promote_rejects_bad_alias(model: ModelRegistry, alias: str) -> None:
    """An alias that is empty, has spaces or is over 100 characters raises InvalidInput."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        model.promote("m", 1, alias=alias)
    assert info.value.field == "alias"


def test_module_functions_match_registry(model: ModelRegistry, workspace: Workspace) -> None:
    """The module-level promote/rollback work on a bare metadata store."""
    # Arrange
    promote_alias(workspace.metadata, "m", 1)
    promote_alias(workspace.metadata, "m", 2)

    # Act
    change = rollback_alias(workspace.metadata, "m")

    # Assert
    assert (change.from_version, change.to_version) == (2, 1)


# -- rollback --------------------------------------------------------------------------------


def test_rollbacks_stack(model: ModelRegistry) -> None:
    """After v1 -> v2 -> v3, rollbacks give v2, then v1."""
    # Arrange
    for version in (1, 2, 3):
        model.promote("m", version)

    # Act
    first = model.rollback("m").to_version
    second = model.rollback("m").to_version

    # Assert
    assert (first, second) == (2, 1)
    assert _champion(model) == 1


def test_rollback_past_first_version_is_conflict(model: ModelRegistry) -> None:
    """A third rollback after v1 -> v2 -> v3 raises Conflict and leaves the alias on v1."""
    # Arrange
    for version in (1, 2, 3):
        model.promote("m", version)
    model.rollback("m")
    model.rollback("m")

    # Act / Assert
    with pytest.raises(Conflict) as info:
        model.rollback("m")
    assert info.value.field == "alias"
    assert _champion(model) == 1


def test_rollback_is_recorded_as_rollback(model: ModelRegistry) -> None:
    """A rollback is kept in the history with action 'rollback', its actor and reason."""
    # Arrange
    model.promote("m", 1)
    model.promote("m", 2)

    # Act
    model.rollback("m", actor="oncall", reason="latency regression")

    # Assert
    last = model.alias_history("m")[-1]
    assert (last.from_version, last.to_version, last.action, last.actor, last.reason) == (
        2,
        1,
        "rollback",
        "oncall",
        "latency regression",
    )


def test_promotion_after_rollback_rolls_back_to_rolled_back_target(model: ModelRegistry) -> None:
    """After v1 -> v2 -> v3, rollback (v2), promote v3 again: a rollback returns to v2."""
    # Arrange
    for version in (1, 2, 3):
        model.promote("m", version)
    model.rollback("m")
    model.promote("m", 3)

    # Act
    change = model.rollback("m")

    # Assert
    assert change.to_version == 2


def test_rollback_after_single_promotion_is_conflict(model: ModelRegistry) -> None:
    """An alias set only once has nothing to roll back to: Conflict."""
    # Arrange
    model.promote("m", 1)

    # Act / Assert
    with pytest.raises(Conflict) as info:
        model.rollback("m")
    assert info.value.field == "alias"


def test_rollback_without_alias_is_not_found(model: ModelRegistry) -> None:
    """Rolling back an alias that was never set raises NotFound on alias."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        model.rollback("m", alias=CHALLENGER)
    assert info.value.field == "alias"


def test_rollback_of_unknown_model_is_not_found(model: ModelRegistry) -> None:
    """Rolling back an alias of an unknown model raises NotFound on model."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        model.rollback("nope")
    assert info.value.field == "model"


def test_rollback_only_touches_its_alias(model: ModelRegistry) -> None:
    """Rolling back champion leaves challenger where it is."""
    # Arrange
    model.promote("m", 1)
    model.promote("m", 2)
    model.promote("m", 3, alias=CHALLENGER)

    # Act
    model.rollback("m")

    # Assert
    assert (model.get("m@champion").version, model.get("m@challenger").version) == (1, 3)


def test_champion_if_first_promotes_only_when_the_model_has_no_champion(
    model: ModelRegistry,
) -> None:
    """The first call sets the champion with its reason; a later version is left a challenger."""
    # Act
    first = model.champion_if_first(model.get("m:1"), actor="trainer", reason="first model")
    later = model.champion_if_first(model.get("m:2"), actor="trainer", reason="first model")

    # Assert
    assert _champion(model) == 1
    assert first.version == 1
    assert later.version == 2
    history = model.alias_history("m", CHAMPION)
    assert [(h.to_version, h.actor, h.reason) for h in history] == [(1, "trainer", "first model")]
