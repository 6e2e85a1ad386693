"""Contract suite of the metadata store, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import text

from fedloop.core import (
    Conflict,
    InvalidInput,
    ModelVersionId,
    NotFound,
    RunId,
    SchemaTooNew,
    Signature,
    TensorSpec,
)
from fedloop.store import (
    Contributor,
    MetadataStore,
    MetricPoint,
    ModelVersion,
    Project,
    Run,
    SqlMetadataStore,
)

MakeStore = Callable[[], SqlMetadataStore]

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 4)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
)
WEIGHTS = "a" * 64
ONNX = "b" * 64
UNKNOWN_ID = "0" * 32


@pytest.fixture
def run(store: SqlMetadataStore, project: Project) -> Run:
    """Return a running run in the project."""
    return store.create_run(project.id, name="baseline", params={"lr": 0.05}, tags={"team": "risk"})


def _point(key: str, value: float, step: int, timestamp_ms: int = 1_000) -> MetricPoint:
    return MetricPoint(key=key, value=value, step=step, timestamp_ms=timestamp_ms)


def _register(
    store: SqlMetadataStore, project: Project, model: str = "fraud", **kwargs: object
) -> ModelVersion:
    return store.create_model_version(
        project.id,
        model,
        weights_digest=WEIGHTS,
        onnx_digest=ONNX,
        signature=SIGNATURE,
        **kwargs,  # type: ignore[arg-type]
    )


# -- the protocol ------------------------------------------------------------------------------


def test_store_satisfies_metadata_store_protocol(store: SqlMetadataStore) -> None:
    """The SQL store is a MetadataStore."""
    # Act / Assert
    assert isinstance(store, MetadataStore)


# -- projects ----------------------------------------------------------------------------------


def test_ensure_project_is_idempotent(store: SqlMetadataStore) -> None:
    """Ensuring a project twice returns the same row."""
    # Arrange
    first = store.ensure_project("demo", description="first")

    # Act
    second = store.ensure_project("demo", description="second")

    # Assert
    assert second == first
    assert second.description == "first"
    assert [p.name for p in store.list_projects()] == ["demo"]


def test_ensure_project_refuses_bad_name(store: SqlMetadataStore) -> None:
    """A project name with spaces is refused."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"project\.name") as info:
        store.ensure_project("bad name")
    assert info.value.field == "project.name"


def test_get_project_unknown_raises_not_found(store: SqlMetadataStore) -> None:
    """get_project raises NotFound for a missing project, find_project returns None."""
    # Act / Assert
    assert store.find_project("missing") is None
    with pytest.raises(NotFound, match=r"missing") as info:
        store.get_project("missing")
    assert info.value.field == "project"


def test_stored_times_are_aware_utc(store: SqlMetadataStore, run: Run) -> None:
    """Datetimes come back timezone-aware on every backend."""
    # Act
    loaded = store.get_run(run.id)

    # Assert
    assert loaded.created_at.utcoffset() is not None
    assert loaded.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


# -- data sets ---------------------------------------------------------------------------------


def test_register_dataset_same_fingerprint_returns_same_row(
    store: SqlMetadataStore, project: Project
) -> None:
    """Registering the same content twice returns the first row."""
    # Arrange
    first = store.register_dataset(project.id, "transactions", fingerprint="c" * 64, num_rows=10)

    # Act
    second = store.register_dataset(project.id, "transactions", fingerprint="c" * 64, num_rows=99)

    # Assert
    assert second == first
    assert store.get_dataset(first.id).num_rows == 10
    assert len(store.list_datasets(project.id)) == 1


def test_register_dataset_new_fingerprint_makes_new_row(
    store: SqlMetadataStore, project: Project
) -> None:
    """New content under the same name is a new data set."""
    # Arrange
    first = store.register_dataset(project.id, "transactions", fingerprint="c" * 64)

    # Act
    second = store.register_dataset(project.id, "transactions", fingerprint="d" * 64)

    # Assert
    assert second.id != first.id
    assert len(store.list_datasets(project.id)) == 2


@pytest.mark.parametrize(
    "fingerprint",
    [
        pytest.param("c" * 63, id="too-short"),
        pytest.param("c" * 65, id="too-long"),
        pytest.param("C" * 64, id="uppercase"),
        pytest.param("g" * 64, id="not-hex"),
        pytest.param("", id="empty"),
    ],
)
def test_register_dataset_refuses_bad_fingerprint(
    store: SqlMetadataStore, project: Project, fingerprint: str
) -> None:
    """A fingerprint that is not 64 lowercase hex characters is refused."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"fingerprint") as info:
        store.register_dataset(project.id, "transactions", fingerprint=fingerprint)
    assert info.value.field == "fingerprint"
    assert store.list_datasets(project.id) == []


def test_get_dataset_unknown_raises_not_found(store: SqlMetadataStore) -> None:
    """An unknown data set id raises NotFound naming dataset_id."""
    # Act / Assert
    with pytest.raises(NotFound, match=UNKNOWN_ID) as info:
        store.get_dataset(UNKNOWN_ID)  # type: ignore[arg-type]
    assert info.value.field == "dataset_id"


# -- runs --------------------------------------------------------------------------------------


def test_create_run_round_trips_through_get_run(store: SqlMetadataStore, project: Project) -> None:
    """A created run reads back with its params and tags as text."""
    # Act
    created = store.create_run(
        project.id, name="baseline", kind="federated", params={"lr": 0.05, "rounds": 3}
    )

    # Assert
    loaded = store.get_run(created.id)
    assert loaded.id == created.id
    assert loaded.name == "baseline"
    assert loaded.kind == "federated"
    assert loaded.status == "running"
    assert loaded.params == {"lr": "0.05", "rounds": "3"}
    assert loaded.ended_at is None


def test_find_run_returns_run(store: SqlMetadataStore, run: Run) -> None:
    """find_run returns a stored run."""
    # Act
    found = store.find_run(run.id)

    # Assert
    assert found is not None
    assert found.id == run.id


def test_find_run_unknown_returns_none(store: SqlMetadataStore) -> None:
    """find_run returns None for an unknown id."""
    # Act / Assert
    assert store.find_run(RunId(UNKNOWN_ID)) is None


def test_get_run_unknown_raises_not_found(store: SqlMetadataStore) -> None:
    """get_run raises NotFound naming run_id."""
    # Act / Assert
    with pytest.raises(NotFound, match=UNKNOWN_ID) as info:
        store.get_run(RunId(UNKNOWN_ID))
    assert info.value.field == "run_id"


def test_create_run_refuses_unknown_kind(store: SqlMetadataStore, project: Project) -> None:
    """A run kind outside local/federated/data-parallel is refused."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"kind") as info:
        store.create_run(project.id, kind="batch")
    assert info.value.field == "kind"
    assert store.count_runs(project.id) == 0


# -- params and tags ---------------------------------------------------------------------------


def test_log_params_accepts_same_value_again(store: SqlMetadataStore, run: Run) -> None:
    """Logging a param again with the same value is a no-op."""
    # Act
    store.log_params(run.id, {"lr": 0.05, "epochs": 3})

    # Assert
    assert store.get_run(run.id).params == {"lr": "0.05", "epochs": "3"}


def test_log_params_other_value_raises_conflict(store: SqlMetadataStore, run: Run) -> None:
    """A param cannot change its value once logged."""
    # Act / Assert
    with pytest.raises(Conflict, match=r"lr") as info:
        store.log_params(run.id, {"epochs": 3, "lr": 0.1})
    assert info.value.field == "params.lr"
    assert store.get_run(run.id).params == {"lr": "0.05"}


def test_log_params_unknown_run_raises_not_found(store: SqlMetadataStore) -> None:
    """Params for an unknown run raise NotFound."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        store.log_params(RunId(UNKNOWN_ID), {"lr": 0.1})
    assert info.value.field == "run_id"


def test_set_tags_upserts(store: SqlMetadataStore, run: Run) -> None:
    """set_tags overwrites existing tags and adds new ones."""
    # Act
    store.set_tags(run.id, {"team": "ops", "stage": "dev"})

    # Assert
    assert store.get_run(run.id).tags == {"team": "ops", "stage": "dev"}


# -- metrics -----------------------------------------------------------------------------------


def test_log_metric_points_writes_batch_in_step_order(
    store: SqlMetadataStore, project: Project, run: Run
) -> None:
    """One batch writes points of several runs; history comes back by step."""
    # Arrange
    other = store.create_run(project.id, name="other")
    points = [
        (run.id, _point("loss", 0.3, 2)),
        (run.id, _point("loss", 0.9, 0)),
        (other.id, _point("loss", 0.7, 0)),
        (run.id, _point("loss", 0.5, 1)),
    ]

    # Act
    written = store.log_metric_points(points)

    # Assert
    assert written == 4
    history = store.get_metric_history(run.id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert [p.value for p in store.get_metric_history(other.id, "loss")] == [0.7]
    assert store.list_metric_keys(run.id) == ["loss"]


def test_latest_metric_is_point_with_max_step(store: SqlMetadataStore, run: Run) -> None:
    """Within one batch the latest metric is the point with the highest step."""
    # Act
    store.log_metric_points([(run.id, _point("auc", 0.9, 5)), (run.id, _point("auc", 0.6, 1))])

    # Assert
    assert store.get_run(run.id).latest_metrics == {"auc": 0.9}


def test_latest_metric_keeps_max_step_when_older_step_arrives_later(
    store: SqlMetadataStore, run: Run
) -> None:
    """A late point with a lower step does not replace the latest metric."""
    # Arrange
    store.log_metric_points([(run.id, _point("auc", 0.9, 5, timestamp_ms=1_000))])

    # Act
    store.log_metric_points([(run.id, _point("auc", 0.1, 2, timestamp_ms=2_000))])

    # Assert
    assert store.get_run(run.id).latest_metrics == {"auc": 0.9}
    assert [p.step for p in store.get_metric_history(run.id, "auc")] == [2, 5]


def test_latest_metric_moves_to_higher_step(store: SqlMetadataStore, run: Run) -> None:
    """A later batch with a higher step replaces the latest metric."""
    # Arrange
    store.log_metric_points([(run.id, _point("auc", 0.5, 1))])

    # Act
    store.log_metric_points([(run.id, _point("auc", 0.8, 2))])

    # Assert
    assert store.get_run(run.id).latest_metrics == {"auc": 0.8}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        pytest.param(_point("loss", math.nan, 1), "metrics.loss", id="nan"),
        pytest.param(_point("loss", math.inf, 1), "metrics.loss", id="inf"),
        pytest.param(_point("loss", -math.inf, 1), "metrics.loss", id="minus-inf"),
        pytest.param(_point("loss", 0.5, -1), "step", id="negative-step"),
        pytest.param(_point("loss$", 0.5, 1), "metrics", id="bad-key"),
        pytest.param(_point("", 0.5, 1), "metrics", id="empty-key"),
    ],
)
def test_invalid_metric_point_writes_nothing(
    store: SqlMetadataStore, run: Run, bad: MetricPoint, field: str
) -> None:
    """One bad point rejects the whole batch with InvalidInput and writes nothing."""
    # Arrange
    points = [(run.id, _point("loss", 0.9, 0)), (run.id, bad)]

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        store.log_metric_points(points)
    assert info.value.field == field
    assert store.get_metric_history(run.id, "loss") == []
    assert store.get_run(run.id).latest_metrics == {}


def test_metric_points_for_unknown_run_write_nothing(store: SqlMetadataStore, run: Run) -> None:
    """A batch naming an unknown run raises NotFound and writes nothing."""
    # Arrange
    points = [(run.id, _point("loss", 0.9, 0)), (RunId(UNKNOWN_ID), _point("loss", 0.8, 0))]

    # Act / Assert
    with pytest.raises(NotFound, match=UNKNOWN_ID) as info:
        store.log_metric_points(points)
    assert info.value.field == "run_id"
    assert store.get_metric_history(run.id, "loss") == []


def test_log_metric_points_empty_batch_writes_nothing(store: SqlMetadataStore) -> None:
    """An empty batch returns 0."""
    # Act / Assert
    assert store.log_metric_points([]) == 0


# -- run status --------------------------------------------------------------------------------


def test_set_run_status_finished_sets_end_time(store: SqlMetadataStore, run: Run) -> None:
    """Finishing a run sets its status and end time."""
    # Act
    store.set_run_status(run.id, "finished")

    # Assert
    loaded = store.get_run(run.id)
    assert loaded.status == "finished"
    assert loaded.ended_at is not None
    assert loaded.error is None


def test_set_run_status_failed_keeps_error(store: SqlMetadataStore, run: Run) -> None:
    """A failed run keeps its error text."""
    # Act
    store.set_run_status(run.id, "failed", error="ValueError: diverged")

    # Assert
    loaded = store.get_run(run.id)
    assert (loaded.status, loaded.error) == ("failed", "ValueError: diverged")


def test_set_run_status_refuses_unknown_status(store: SqlMetadataStore, run: Run) -> None:
    """A status outside running/finished/failed/killed is refused and nothing changes."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"status") as info:
        store.set_run_status(run.id, "done")
    assert info.value.field == "status"
    assert store.get_run(run.id).status == "running"


def test_set_run_status_unknown_run_raises_not_found(store: SqlMetadataStore) -> None:
    """Setting the status of an unknown run raises NotFound and writes no event."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        store.set_run_status(RunId(UNKNOWN_ID), "finished")
    assert info.value.field == "run_id"
    assert store.list_events(kind="run.*") == []


# -- search ------------------------------------------------------------------------------------


@pytest.fixture
def search_runs(store: SqlMetadataStore, project: Project) -> dict[str, Run]:
    """Return four runs with different params, tags, metrics and status."""
    specs = {
        "r1": ({"optimizer": "sgd", "lr": 0.1}, {"team": "risk"}, 0.95, "finished"),
        "r2": ({"optimizer": "adam", "lr": 0.01}, {"team": "ops"}, 0.80, "finished"),
        "r3": ({"optimizer": "sgd", "lr": 0.05}, {"team": "risk"}, 0.91, "running"),
        "r4": ({"optimizer": "adam", "lr": 0.2}, {"team": "ops"}, None, "failed"),
    }
    out: dict[str, Run] = {}
    for name, (params, tags, auc, status) in specs.items():
        created = store.create_run(project.id, name=name, params=params, tags=tags)
        if auc is not None:
            store.log_metric_points([(created.id, _point("auc", auc, 0))])
        if status != "running":
            store.set_run_status(created.id, status)
        out[name] = created
    return out


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param("", {"r1", "r2", "r3", "r4"}, id="empty"),
        pytest.param("metrics.auc > 0.9", {"r1", "r3"}, id="metric"),
        pytest.param("metrics.auc <= 0.8", {"r2"}, id="metric-le"),
        pytest.param("params.optimizer = 'sgd'", {"r1", "r3"}, id="param-text"),
        pytest.param("params.lr < 0.06", {"r2", "r3"}, id="param-number"),
        pytest.param("tags.team = 'ops'", {"r2", "r4"}, id="tag"),
        pytest.param('tags.team != "ops"', {"r1", "r3"}, id="tag-ne-double-quotes"),
        pytest.param("status = 'finished'", {"r1", "r2"}, id="status"),
        pytest.param("metrics.auc > 0.9 and status = 'finished'", {"r1"}, id="and"),
        pytest.param(
            "params.optimizer = 'adam' AND tags.team = 'ops' and metrics.auc >= 0.5",
            {"r2"},
            id="and-three",
        ),
    ],
)
def test_search_runs_filters(
    store: SqlMetadataStore,
    project: Project,
    search_runs: dict[str, Run],
    filter_text: str,
    expected: set[str],
) -> None:
    """search_runs returns exactly the runs matching the filter."""
    # Act
    found = store.search_runs(project.id, filter=filter_text)

    # Assert
    assert {r.name for r in found} == expected


def test_search_runs_orders_by_metric_desc(
    store: SqlMetadataStore, project: Project, search_runs: dict[str, Run]
) -> None:
    """order_by metrics.<key> desc sorts by the latest value, runs without it last."""
    # Act
    found = store.search_runs(project.id, order_by="metrics.auc desc")

    # Assert
    assert [r.name for r in found] == ["r1", "r3", "r2", "r4"]
    assert found[0].latest_metrics == {"auc": 0.95}


def test_search_runs_respects_max_results(
    store: SqlMetadataStore, project: Project, search_runs: dict[str, Run]
) -> None:
    """max_results caps the number of runs returned."""
    # Act
    found = store.search_runs(project.id, order_by="metrics.auc desc", max_results=2)

    # Assert
    assert [r.name for r in found] == ["r1", "r3"]


def test_search_numeric_param_filter_skips_text_values(
    store: SqlMetadataStore, project: Project
) -> None:
    """A numeric comparison on a param matches numeric values only and never errors."""
    # Arrange
    store.create_run(project.id, name="numeric", params={"lr": 0.001})
    store.create_run(project.id, name="text", params={"lr": "auto"})

    # Act
    found = store.search_runs(project.id, filter="params.lr < 0.01")

    # Assert
    assert [r.name for r in found] == ["numeric"]


@pytest.mark.parametrize(
    "filter_text",
    [
        pytest.param("metrics.auc >> 0.9", id="bad-operator"),
        pytest.param("auc > 0.9", id="no-entity"),
        pytest.param("metrics.auc = 'high'", id="metric-vs-text"),
        pytest.param("params.lr = 0.1 or params.lr = 0.2", id="or"),
        pytest.param("metrics.auc > 0.9 and", id="dangling-and"),
        pytest.param("params.lr = 0.1; DROP TABLE runs", id="injection"),
    ],
)
def test_search_runs_refuses_bad_filter(
    store: SqlMetadataStore, project: Project, filter_text: str
) -> None:
    """An unreadable filter raises InvalidInput naming the filter."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"filter|metric") as info:
        store.search_runs(project.id, filter=filter_text)
    assert info.value.field == "filter"


def test_search_runs_refuses_bad_order_by(store: SqlMetadataStore, project: Project) -> None:
    """An unreadable order_by raises InvalidInput naming order_by."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"order_by") as info:
        store.search_runs(project.id, order_by="params.lr desc")
    assert info.value.field == "order_by"


# -- model versions ----------------------------------------------------------------------------


def test_model_versions_are_numbered_from_one(store: SqlMetadataStore, project: Project) -> None:
    """Versions of one model are numbered 1, 2, 3; another model starts at 1 again."""
    # Act
    numbers = [_register(store, project).version for _ in range(3)]
    other = _register(store, project, model="churn")

    # Assert
    assert numbers == [1, 2, 3]
    assert other.version == 1
    assert [v.version for v in store.list_model_versions("fraud")] == [3, 2, 1]


def test_model_version_lineage_round_trips(
    store: SqlMetadataStore, project: Project, run: Run
) -> None:
    """Data sets, contributors, parent, privacy and the rest read back unchanged."""
    # Arrange
    dataset = store.register_dataset(project.id, "transactions", fingerprint="c" * 64)
    parent = _register(store, project)
    contributors = (
        Contributor(contributor="bank-a", kind="client", rounds=(1, 2, 3), num_examples=500),
        Contributor(contributor="bank-b", kind="client", rounds=(2,), num_examples=None),
    )
    privacy = {"epsilon": 1.5, "delta": 1e-5, "accountant": "rdp"}

    # Act
    created = _register(
        store,
        project,
        run_id=run.id,
        parent_version_id=parent.id,
        dataset_ids=[(dataset.id, "train")],
        contributors=contributors,
        privacy=privacy,
        metrics={"auc": 0.93},
        tags={"stage": "candidate"},
        description="warm-started",
    )

    # Assert
    loaded = store.get_model_version("fraud", 2)
    assert loaded == created
    assert loaded.run_id == run.id
    assert loaded.parent_version_id == parent.id
    assert loaded.dataset_ids == (dataset.id,)
    assert loaded.contributors == contributors
    assert loaded.privacy == privacy
    assert loaded.signature == SIGNATURE
    assert (loaded.metrics, loaded.tags) == ({"auc": 0.93}, {"stage": "candidate"})
    assert store.get_model_version_by_id(created.id) == loaded


def test_get_model_version_unknown_raises_not_found(
    store: SqlMetadataStore, project: Project
) -> None:
    """A missing version number raises NotFound naming the version."""
    # Arrange
    _register(store, project)

    # Act / Assert
    assert store.find_model_version("fraud", 2) is None
    with pytest.raises(NotFound, match=r"no version 2") as info:
        store.get_model_version("fraud", 2)
    assert info.value.field == "version"


def test_list_model_versions_unknown_model_raises_not_found(store: SqlMetadataStore) -> None:
    """Listing versions of an unknown model raises NotFound naming the model."""
    # Act / Assert
    with pytest.raises(NotFound, match=r"fraud") as info:
        store.list_model_versions("fraud")
    assert info.value.field == "model"


def test_failed_create_model_version_leaves_nothing(
    store: SqlMetadataStore, project: Project
) -> None:
    """A version whose parent does not exist is not stored, nor is its audit event."""
    # Arrange
    _register(store, project)
    events_before = store.list_events()

    # Act / Assert
    with pytest.raises(NotFound, match=UNKNOWN_ID) as info:
        _register(store, project, parent_version_id=ModelVersionId(UNKNOWN_ID))
    assert info.value.field == "parent_version_id"
    assert [v.version for v in store.list_model_versions("fraud")] == [1]
    assert store.list_events() == events_before
    assert _register(store, project).version == 2


def test_failed_create_model_version_does_not_create_model(
    store: SqlMetadataStore, project: Project
) -> None:
    """A failed first version leaves no registered model behind."""
    # Act / Assert
    with pytest.raises(NotFound):
        _register(store, project, model="churn", parent_version_id=ModelVersionId(UNKNOWN_ID))
    assert store.list_registered_models() == []
    assert store.list_events() == []


def test_list_registered_models_shows_latest_version_and_aliases(
    store: SqlMetadataStore, project: Project
) -> None:
    """Registered models list their latest version and alias targets."""
    # Arrange
    _register(store, project)
    _register(store, project)
    store.set_alias("fraud", "champion", 1)

    # Act
    (model,) = store.list_registered_models(project.id)

    # Assert
    assert (model.name, model.latest_version, model.aliases) == ("fraud", 2, {"champion": 1})


# -- aliases -----------------------------------------------------------------------------------


@pytest.fixture
def three_versions(store: SqlMetadataStore, project: Project) -> list[ModelVersion]:
    """Return versions 1, 2 and 3 of the model 'fraud'."""
    return [_register(store, project) for _ in range(3)]


def test_set_alias_points_alias_at_version(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """find_alias returns the version an alias was set to."""
    # Act
    change = store.set_alias("fraud", "champion", 2, actor="alice", reason="better auc")

    # Assert
    found = store.find_alias("fraud", "champion")
    assert found is not None
    assert found.version == 2
    assert found.aliases == ("champion",)
    assert (change.from_version, change.to_version, change.actor) == (None, 2, "alice")


def test_find_alias_unset_returns_none(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """find_alias returns None for an alias that was never set."""
    # Act / Assert
    assert store.find_alias("fraud", "champion") is None


def test_alias_history_records_every_move(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """Each set and delete adds a history row with its from and to versions."""
    # Arrange
    store.set_alias("fraud", "champion", 1)
    store.set_alias("fraud", "champion", 3, reason="promote")
    store.set_alias("fraud", "challenger", 2)

    # Act
    store.delete_alias("fraud", "champion", reason="rollback")

    # Assert
    history = store.alias_history("fraud", "champion")
    assert [(h.from_version, h.to_version) for h in history] == [(None, 1), (1, 3), (3, None)]
    assert [h.reason for h in history] == ["", "promote", "rollback"]
    assert [h.action for h in history] == ["set", "set", "delete"]
    assert len(store.alias_history("fraud")) == 4


def test_delete_alias_unsets_it(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """A deleted alias no longer resolves."""
    # Arrange
    store.set_alias("fraud", "champion", 1)

    # Act
    change = store.delete_alias("fraud", "champion")

    # Assert
    assert store.find_alias("fraud", "champion") is None
    assert (change.from_version, change.to_version) == (1, None)


def test_delete_unset_alias_raises_not_found(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """Deleting an alias that is not set raises NotFound naming the alias."""
    # Act / Assert
    with pytest.raises(NotFound, match=r"champion") as info:
        store.delete_alias("fraud", "champion")
    assert info.value.field == "alias"
    assert store.alias_history("fraud") == []


def test_set_alias_to_unknown_version_keeps_alias(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """Moving an alias to a missing version raises NotFound and leaves it where it was."""
    # Arrange
    store.set_alias("fraud", "champion", 1)

    # Act / Assert
    with pytest.raises(NotFound, match=r"no version 9") as info:
        store.set_alias("fraud", "champion", 9)
    assert info.value.field == "version"
    found = store.find_alias("fraud", "champion")
    assert found is not None
    assert found.version == 1
    assert len(store.alias_history("fraud", "champion")) == 1


def test_set_alias_on_unknown_model_raises_not_found(store: SqlMetadataStore) -> None:
    """An alias on an unknown model raises NotFound naming the model."""
    # Act / Assert
    with pytest.raises(NotFound, match=r"fraud") as info:
        store.set_alias("fraud", "champion", 1)
    assert info.value.field == "model"


@pytest.mark.parametrize(
    "alias",
    [
        pytest.param("3", id="digits"),
        pytest.param("bad name", id="space"),
        pytest.param("", id="empty"),
        pytest.param("-lead", id="leading-dash"),
        pytest.param("champ/ion", id="slash"),
        pytest.param("a" * 101, id="longer-than-100"),
    ],
)
def test_set_alias_refuses_invalid_name(
    store: SqlMetadataStore, three_versions: list[ModelVersion], alias: str
) -> None:
    """An alias that is not a 1-100 character name, or looks like a number, is refused."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"alias") as info:
        store.set_alias("fraud", alias, 1)
    assert info.value.field == "alias"
    assert store.alias_history("fraud") == []


# -- deployments -------------------------------------------------------------------------------


def test_put_deployment_round_trips(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """A deployment reads back by name and in the list."""
    # Act
    created = store.put_deployment("fraud-prod", "fraud", {"alias": "champion", "replicas": 2})

    # Assert
    assert store.get_deployment("fraud-prod") == created
    assert created.spec == {"alias": "champion", "replicas": 2}
    assert created.status == "pending"
    assert store.list_deployments() == [created]


def test_put_deployment_replaces_spec(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """Putting a deployment again replaces its spec and keeps its id and creation time."""
    # Arrange
    first = store.put_deployment("fraud-prod", "fraud", {"replicas": 1})

    # Act
    second = store.put_deployment("fraud-prod", "fraud", {"replicas": 3}, status="ready")

    # Assert
    loaded = store.get_deployment("fraud-prod")
    assert (loaded.id, loaded.created_at) == (first.id, first.created_at)
    assert (loaded.spec, loaded.status) == ({"replicas": 3}, "ready")
    assert loaded == second


def test_list_deployments_sorted_by_name(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """Deployments are listed by name."""
    # Arrange
    store.put_deployment("zeta", "fraud", {})
    store.put_deployment("alpha", "fraud", {})

    # Act / Assert
    assert [d.name for d in store.list_deployments()] == ["alpha", "zeta"]


def test_put_deployment_of_other_model_raises_conflict(
    store: SqlMetadataStore, project: Project, three_versions: list[ModelVersion]
) -> None:
    """A deployment name cannot be taken over by another model."""
    # Arrange
    _register(store, project, model="churn")
    store.put_deployment("prod", "fraud", {})

    # Act / Assert
    with pytest.raises(Conflict, match=r"fraud") as info:
        store.put_deployment("prod", "churn", {})
    assert info.value.field == "model_name"
    assert store.get_deployment("prod").model_name == "fraud"


def test_put_deployment_unknown_model_raises_not_found(store: SqlMetadataStore) -> None:
    """A deployment of an unknown model raises NotFound."""
    # Act / Assert
    with pytest.raises(NotFound, match=r"fraud") as info:
        store.put_deployment("prod", "fraud", {})
    assert info.value.field == "model"
    assert store.list_deployments() == []


def test_get_deployment_unknown_raises_not_found(store: SqlMetadataStore) -> None:
    """An unknown deployment name raises NotFound."""
    # Act / Assert
    with pytest.raises(NotFound, match=r"prod") as info:
        store.get_deployment("prod")
    assert info.value.field == "deployment"


# -- artifact references (garbage collection keep-set) ----------------------------------------


def test_list_artifact_digests_includes_every_reference(
    store: SqlMetadataStore, project: Project, run: Run
) -> None:
    """Run artifacts, model weights and ONNX, round checkpoints and strategy states are all kept."""
    # Arrange
    artifact, parameters, state = "c" * 64, "d" * 64, "e" * 64
    store.record_artifact(run.id, "report.html", digest=artifact, size_bytes=10)
    _register(store, project)
    store.record_fl_round(
        run.id,
        0,
        status="completed",
        parameters_digest=parameters,
        state_digest=None,
        clients=[],
        seconds=0.0,
        metrics={},
    )
    store.record_fl_round(
        run.id,
        1,
        status="completed",
        parameters_digest=parameters,
        state_digest=state,
        clients=[],
        seconds=0.1,
        metrics={"loss": 0.5},
    )

    # Act
    digests = store.list_artifact_digests()

    # Assert
    assert digests == {artifact, WEIGHTS, ONNX, parameters, state}


def test_list_artifact_digests_of_empty_store_is_empty(store: SqlMetadataStore) -> None:
    """A store without records refers to no artifact."""
    # Act / Assert
    assert store.list_artifact_digests() == set()


# -- audit -------------------------------------------------------------------------------------


def test_registering_version_writes_audit_event(store: SqlMetadataStore, project: Project) -> None:
    """A registered version leaves a model.version_registered event."""
    # Act
    version = _register(store, project, actor="ci")

    # Assert
    (event,) = store.list_events(kind="model.version_registered")
    assert event.subject == "model:fraud/1"
    assert event.actor == "ci"
    assert event.payload["version_id"] == version.id


def test_moving_alias_writes_audit_event(
    store: SqlMetadataStore, three_versions: list[ModelVersion]
) -> None:
    """A moved alias leaves a model.alias_moved event with from and to versions."""
    # Arrange
    store.set_alias("fraud", "champion", 1)

    # Act
    store.set_alias("fraud", "champion", 2, actor="alice", reason="better")

    # Assert
    events = store.list_events(kind="model.alias_moved")
    assert [e.payload["to_version"] for e in events] == [1, 2]
    payload = events[-1].payload
    assert (payload["from_version"], payload["to_version"], payload["reason"]) == (1, 2, "better")
    assert events[-1].subject == "model:fraud@champion"
    assert events[-1].actor == "alice"


def test_finishing_run_writes_audit_event(store: SqlMetadataStore, run: Run) -> None:
    """A finished run leaves a run.finished event."""
    # Act
    store.set_run_status(run.id, "finished")

    # Assert
    (event,) = store.list_events(kind="run.finished")
    assert event.subject == f"run:{run.id}"


def test_latest_event_seq_is_the_newest_event(store: SqlMetadataStore) -> None:
    """latest_event_seq names the newest event (what readers page backwards from)."""
    # Arrange
    before = store.latest_event_seq()

    # Act
    first = store.append_event("test.one", "item:1")
    second = store.append_event("test.two", "item:2")

    # Assert
    assert before < first.seq < second.seq
    assert store.latest_event_seq() == second.seq


def test_verify_audit_accepts_untouched_chain(
    store: SqlMetadataStore, project: Project, run: Run
) -> None:
    """After a mix of changes the audit chain verifies."""
    # Arrange
    _register(store, project)
    store.set_alias("fraud", "champion", 1)
    store.put_deployment("prod", "fraud", {})
    store.set_run_status(run.id, "finished")
    store.append_event("custom.note", "run:x", {"note": "hello"}, actor="bob")

    # Act
    report = store.verify_audit()

    # Assert
    assert report.ok
    assert report.checked == report.head_seq == 5
    assert [e.seq for e in store.list_events()] == [1, 2, 3, 4, 5]


# -- schema ------------------------------------------------------------------------------------


def test_store_refuses_newer_schema(make_store: MakeStore) -> None:
    """A database stamped by a newer fedloop is refused with SchemaTooNew."""
    # Arrange
    first = make_store()
    with first.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    first.close()

    # Act / Assert
    with pytest.raises(SchemaTooNew, match=r"ffff") as info:
        make_store()
    assert info.value.field == "store.url"


def test_reopening_store_keeps_data(make_store: MakeStore) -> None:
    """A second store on the same database sees what the first wrote."""
    # Arrange
    first = make_store()
    project = first.ensure_project("demo")
    first.close()

    # Act
    second = make_store()

    # Assert
    assert second.get_project("demo") == project
    assert second.current_revision() == second.schema_revision


# -- concurrency -------------------------------------------------------------------------------


def _in_threads(
    count: int, work: Callable[[int], object]
) -> tuple[list[object], list[BaseException]]:
    """Run work(i) for i in range(count) at once in threads; return results and errors."""
    results: list[object] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def target(i: int) -> None:
        try:
            start.wait()
            results.append(work(i))
        except BaseException as err:  # collected and asserted by the caller
            errors.append(err)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def test_concurrent_ensure_project_returns_one_project(store: SqlMetadataStore) -> None:
    """Threads ensuring the same new project all get the same row."""
    # Act
    outcomes = [
        _in_threads(8, lambda _, name=name: store.ensure_project(name))
        for name in ("p1", "p2", "p3", "p4", "p5")
    ]

    # Assert
    assert [errors for _, errors in outcomes] == [[]] * 5
    assert [len({p.id for p in results}) for results, _ in outcomes] == [1] * 5  # type: ignore[attr-defined]


def test_concurrent_first_versions_are_numbered_once_each(
    store: SqlMetadataStore, project: Project
) -> None:
    """Threads registering the first versions of a new model get 1..n without conflicts."""
    # Act
    outcomes = [
        _in_threads(4, lambda _, model=model: _register(store, project, model=model).version)
        for model in ("m1", "m2", "m3")
    ]

    # Assert
    assert [errors for _, errors in outcomes] == [[]] * 3
    assert [sorted(results) for results, _ in outcomes] == [[1, 2, 3, 4]] * 3  # type: ignore[type-var]


def test_concurrent_events_on_empty_log_form_one_chain(store: SqlMetadataStore) -> None:
    """Threads appending the very first events of a store extend one valid chain."""
    # Act
    _, errors = _in_threads(8, lambda i: store.append_event("test.concurrent", f"worker:{i}"))

    # Assert
    assert errors == []
    report = store.verify_audit()
    assert (report.ok, report.checked) == (True, 8)


# -- text limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "field"),
    [
        pytest.param(
            lambda s: s.set_alias("fraud", "champion", 1, actor="a" * 201), "actor", id="actor"
        ),
        pytest.param(
            lambda s: s.put_deployment("prod", "fraud", {}, status="s" * 21), "status", id="status"
        ),
        pytest.param(lambda s: s.append_event("k" * 101, "subject"), "kind", id="event-kind"),
    ],
)
def test_overlong_text_is_refused_on_every_backend(
    store: SqlMetadataStore,
    three_versions: list[ModelVersion],
    action: Callable[[SqlMetadataStore], object],
    field: str,
) -> None:
    """Text longer than its column raises InvalidInput (not a driver error) and writes nothing."""
    # Arrange
    events_before = store.list_events(limit=1000)

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        action(store)
    assert info.value.field == field
    assert store.list_events(limit=1000) == events_before
