"""ModelRegistry: registering versions, validation before any write, loading artifacts back."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedloop.core import (
    ArtifactCorrupt,
    ArtifactMissing,
    DatasetId,
    InvalidInput,
    NotFound,
    Parameters,
    RunId,
    Signature,
    SignatureMismatch,
    TensorSpec,
    resolve,
)
from fedloop.registry import ModelRef, ModelRegistry, infer_signature
from fedloop.store import Workspace, open_workspace


def _snapshot(ws: Workspace) -> tuple[list[str], int, set[str]]:
    """Return (model names, audit event count, artifact digests) of a workspace."""
    models = [m.name for m in ws.metadata.list_registered_models()]
    return models, ws.metadata.verify_audit().head_seq, set(ws.artifacts.list_digests())


def _signature(
    *,
    input_name: str = "features",
    input_dtype: str = "float32",
    input_shape: tuple[int | None, ...] = (None, 4),
    output_name: str = "probability",
) -> Signature:
    return Signature(
        inputs=(TensorSpec(name=input_name, dtype=input_dtype, shape=input_shape),),
        outputs=(TensorSpec(name=output_name, dtype="float32", shape=(None, 1)),),
    )


@pytest.fixture
def three_versions(registry: ModelRegistry, weights: Parameters, graph: bytes) -> ModelRegistry:
    """Return a registry holding model ``m`` with versions 1-3 and v2 as champion."""
    for _ in range(3):
        registry.register("m", weights=weights, onnx_model=graph)
    registry.promote("m", 2, alias="champion")
    return registry


# -- registering -----------------------------------------------------------------------------


def test_versions_are_numbered_from_one(
    registry: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """Three registrations of one model get versions 1, 2 and 3."""
    # Act
    numbers = [registry.register("m", weights=weights, onnx_model=graph).version for _ in range(3)]

    # Assert
    assert numbers == [1, 2, 3]


def test_versions_are_numbered_per_model(
    registry: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """Each model counts its versions separately."""
    # Arrange
    registry.register("a", weights=weights, onnx_model=graph)
    registry.register("a", weights=weights, onnx_model=graph)

    # Act
    first_b = registry.register("b", weights=weights, onnx_model=graph)

    # Assert
    assert first_b.version == 1


def test_list_versions_is_newest_first(three_versions: ModelRegistry) -> None:
    """list_versions returns the versions of a model, newest first."""
    # Act
    versions = three_versions.list_versions("m")

    # Assert
    assert [v.version for v in versions] == [3, 2, 1]


def test_list_models_shows_latest_version_and_aliases(three_versions: ModelRegistry) -> None:
    """list_models reports each model's latest version and its aliases."""
    # Act
    (model,) = three_versions.list_models()

    # Assert
    assert (model.name, model.latest_version, model.aliases) == ("m", 3, {"champion": 2})


def test_weights_round_trip_bit_exact(
    registry: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """load_weights returns the same names, order, dtypes and bytes that were registered."""
    # Arrange
    mv = registry.register("m", weights=weights, onnx_model=graph)

    # Act
    loaded = registry.load_weights(mv)

    # Assert
    assert list(loaded) == list(weights)
    for name, array in weights.items():
        assert loaded[name].dtype == array.dtype
        assert loaded[name].shape == array.shape
        assert loaded[name].tobytes() == array.tobytes()


def test_onnx_round_trip(registry: ModelRegistry, weights: Parameters, graph: bytes) -> None:
    """load_onnx returns the registered graph byte for byte."""
    # Arrange
    mv = registry.register("m", weights=weights, onnx_model=graph)

    # Act
    loaded = registry.load_onnx(mv)

    # Assert
    assert loaded == graph


def test_torch_export_registers(registry: ModelRegistry, torch_graph: bytes) -> None:
    """A graph exported by TorchAdapter registers with the signature read off it."""
    # Act
    mv = registry.register(
        "m",
        weights={"w": np.zeros(2, dtype=np.float32)},
        onnx_model=torch_graph,
    )

    # Assert
    assert mv.signature == _signature()


def test_signature_is_inferred_when_omitted(
    registry: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """Without a declared signature the version stores the graph's inputs and outputs."""
    # Act
    mv = registry.register("m", weights=weights, onnx_model=graph)

    # Assert
    assert mv.signature == _signature()
    assert mv.signature == infer_signature(graph)


def test_declared_signature_is_stored(
    registry: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """A compatible declared signature (a free dim made fixed) is stored as declared."""
    # Arrange
    declared = _signature(input_shape=(8, 4))

    # Act
    mv = registry.register("m", weights=weights, onnx_model=graph, signature=declared)

    # Assert
    assert registry.get("m:1").signature == declared
    assert mv.signature == declared


@pytest.mark.parametrize(
    ("declared", "field"),
    [
        pytest.param(
            _signature(input_dtype="float64"), "signature.inputs.features", id="wrong-dtype"
        ),
        pytest.param(_signature(input_name="x"), "signature.inputs", id="wrong-input-name"),
        pytest.param(_signature(output_name="y"), "signature.outputs", id="wrong-output-name"),
        pytest.param(
            _signature(input_shape=(None, 5)), "signature.inputs.features", id="wrong-fixed-dim"
        ),
        pytest.param(
            _signature(input_shape=(None, 4, 1)), "signature.inputs.features", id="wrong-rank"
        ),
    ],
)
def test_mismatched_signature_is_refused(
    registry: ModelRegistry, weights: Parameters, graph: bytes, declared: Signature, field: str
) -> None:
    """A declared signature that does not fit the graph raises SignatureMismatch naming it."""
    # Act / Assert
    with pytest.raises(SignatureMismatch) as info:
        registry.register("m", weights=weights, onnx_model=graph, signature=declared)
    assert info.value.field == field


def test_mismatched_signature_records_nothing(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """A refused signature leaves no model, no audit event and no artifact."""
    # Arrange
    before = _snapshot(workspace)

    # Act
    with pytest.raises(SignatureMismatch):
        registry.register(
            "m", weights=weights, onnx_model=graph, signature=_signature(input_dtype="int64")
        )

    # Assert
    assert _snapshot(workspace) == before


@pytest.mark.parametrize(
    "onnx_model",
    [
        pytest.param(b"garbage", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param("not bytes", id="str"),
    ],
)
def test_invalid_onnx_is_refused(
    registry: ModelRegistry, weights: Parameters, onnx_model: Any
) -> None:
    """Bytes that are not an ONNX model raise InvalidInput on onnx_model."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        registry.register("m", weights=weights, onnx_model=onnx_model)
    assert info.value.field == "onnx_model"


@pytest.mark.parametrize(
    "onnx_model", [pytest.param(b"garbage", id="garbage"), pytest.param(b"", id="empty")]
)
def test_invalid_onnx_records_nothing(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, onnx_model: bytes
) -> None:
    """A refused graph leaves no model, no version, no audit event and no artifact."""
    # Arrange
    before = _snapshot(workspace)

    # Act
    with pytest.raises(InvalidInput):
        registry.register("m", weights=weights, onnx_model=onnx_model)

    # Assert
    assert _snapshot(workspace) == before
    assert registry.list_models() == []


@pytest.mark.parametrize(
    ("bad_value", "field"),
    [
        pytest.param(np.array([1.0, np.nan], dtype=np.float32), "weights['0.weight']", id="nan"),
        pytest.param(np.array([np.inf], dtype=np.float64), "weights['0.weight']", id="inf"),
        pytest.param([1.0, 2.0], "weights['0.weight']", id="list"),
        pytest.param(np.array(["a"]), "weights['0.weight']", id="string-dtype"),
    ],
)
def test_invalid_weights_are_refused(
    registry: ModelRegistry, weights: Parameters, graph: bytes, bad_value: Any, field: str
) -> None:
    """Non-finite, non-array or unsupported-dtype weights raise InvalidInput naming the tensor."""
    # Arrange
    weights["0.weight"] = bad_value

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        registry.register("m", weights=weights, onnx_model=graph)
    assert info.value.field == field


def test_invalid_weights_store_no_artifact(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """NaN weights leave no model, no audit event and nothing new in the artifact store."""
    # Arrange
    registry.register("m", weights=weights, onnx_model=graph)
    before = _snapshot(workspace)
    weights["0.bias"] = np.full(3, np.nan)

    # Act
    with pytest.raises(InvalidInput):
        registry.register("m", weights=weights, onnx_model=graph)

    # Assert
    assert _snapshot(workspace) == before
    assert [v.version for v in registry.list_versions("m")] == [1]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(-math.inf, id="-inf"),
        pytest.param("high", id="text"),
        pytest.param(None, id="none"),
    ],
)
def test_bad_metric_is_refused(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes, value: Any
) -> None:
    """A non-finite or non-numeric metric raises InvalidInput on metrics.<key>; nothing is stored."""
    # Arrange
    before = _snapshot(workspace)

    # Act
    with pytest.raises(InvalidInput) as info:
        registry.register("m", weights=weights, onnx_model=graph, metrics={"auc": value})

    # Assert
    assert info.value.field == "metrics.auc"
    assert _snapshot(workspace) == before


def test_metrics_and_tags_are_normalized(
    registry: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """Integer metrics are stored as floats and tag values as text."""
    # Act
    mv = registry.register(
        "m", weights=weights, onnx_model=graph, metrics={"n": 3}, tags={"epochs": 2}
    )

    # Assert
    assert mv.metrics == {"n": 3.0}
    assert isinstance(mv.metrics["n"], float)
    assert mv.tags == {"epochs": "2"}


def test_unknown_run_is_not_found(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """An unknown run_id raises NotFound on run_id and records nothing."""
    # Arrange
    before = _snapshot(workspace)

    # Act
    with pytest.raises(NotFound) as info:
        registry.register("m", weights=weights, onnx_model=graph, run_id=RunId("0" * 32))

    # Assert
    assert info.value.field == "run_id"
    assert _snapshot(workspace) == before


def test_known_run_is_linked(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """A version registered with a run id points at that run."""
    # Arrange
    run = workspace.metadata.create_run(workspace.project.id, name="train")

    # Act
    mv = registry.register("m", weights=weights, onnx_model=graph, run_id=run.id)

    # Assert
    assert registry.get("m:1").run_id == run.id
    assert mv.run_id == run.id


def test_unknown_parent_version_is_not_found(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """A parent_version the model does not have raises NotFound and records nothing."""
    # Arrange
    registry.register("m", weights=weights, onnx_model=graph)
    before = _snapshot(workspace)

    # Act
    with pytest.raises(NotFound) as info:
        registry.register("m", weights=weights, onnx_model=graph, parent_version=7)

    # Assert
    assert info.value.field == "version"
    assert _snapshot(workspace) == before


def test_parent_version_is_linked(
    registry: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """A version registered with parent_version points at the parent's id."""
    # Arrange
    parent = registry.register("m", weights=weights, onnx_model=graph)

    # Act
    child = registry.register("m", weights=weights, onnx_model=graph, parent_version=1)

    # Assert
    assert child.parent_version_id == parent.id


def test_invalid_model_name_records_nothing(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """An invalid model name raises InvalidInput before any artifact is written."""
    # Arrange
    before = _snapshot(workspace)

    # Act
    with pytest.raises(InvalidInput) as info:
        registry.register("bad name", weights=weights, onnx_model=graph)

    # Assert
    assert info.value.field == "model_name"
    assert _snapshot(workspace) == before


def test_unknown_dataset_is_not_found(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """An unknown data set id raises NotFound (not a generic Conflict) and records nothing."""
    # Arrange
    before = _snapshot(workspace)

    # Act
    with pytest.raises(NotFound) as info:
        registry.register(
            "m", weights=weights, onnx_model=graph, datasets=[(DatasetId("0" * 32), "train")]
        )

    # Assert
    assert info.value.field is not None
    assert info.value.field.startswith("datasets")
    assert _snapshot(workspace) == before


def test_unserializable_privacy_is_invalid_input(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """A privacy mapping that is not JSON raises InvalidInput on privacy and records nothing."""
    # Arrange
    before = _snapshot(workspace)

    # Act
    with pytest.raises(InvalidInput) as info:
        registry.register("m", weights=weights, onnx_model=graph, privacy={"epsilon": object()})

    # Assert
    assert info.value.field == "privacy"
    assert _snapshot(workspace) == before


def test_register_appends_audit_event(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """Registering appends one model.version_registered event with the actor and digests."""
    # Act
    mv = registry.register("m", weights=weights, onnx_model=graph, actor="alice")

    # Assert
    (event,) = workspace.metadata.list_events(kind="model.version_registered")
    assert (event.subject, event.actor) == ("model:m/1", "alice")
    assert event.payload["version_id"] == mv.id
    assert event.payload["weights_digest"] == mv.weights_digest


def test_same_content_is_stored_once(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """Two versions with the same weights and graph share the two stored artifacts."""
    # Act
    first = registry.register("m", weights=weights, onnx_model=graph)
    second = registry.register("m", weights=weights, onnx_model=graph)

    # Assert
    assert (first.weights_digest, first.onnx_digest) == (second.weights_digest, second.onnx_digest)
    assert set(workspace.artifacts.list_digests()) == {first.weights_digest, first.onnx_digest}


# -- integrity of stored artifacts -----------------------------------------------------------


def _overwrite(ws: Workspace, digest: str, data: bytes) -> None:
    ws.artifacts.fs.pipe_file(ws.artifacts.fs._strip_protocol(ws.artifacts.uri_for(digest)), data)


def test_corrupt_weights_raise_artifact_corrupt(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """Weights whose stored bytes were overwritten raise ArtifactCorrupt on load."""
    # Arrange
    mv = registry.register("m", weights=weights, onnx_model=graph)
    _overwrite(workspace, mv.weights_digest, b"tampered")

    # Act / Assert
    with pytest.raises(ArtifactCorrupt) as info:
        registry.load_weights(mv)
    assert info.value.field == "digest"
    assert info.value.value == mv.weights_digest


def test_corrupt_local_file_raises_artifact_corrupt(
    registry: ModelRegistry, workspace: Workspace, tmp_path: Path, weights: Parameters, graph: bytes
) -> None:
    """Flipping one byte of the ONNX file under the artifacts folder is caught on load."""
    # Arrange
    mv = registry.register("m", weights=weights, onnx_model=graph)
    (path,) = (tmp_path / ".fedloop" / "artifacts").rglob(mv.onnx_digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    # Act / Assert
    with pytest.raises(ArtifactCorrupt) as info:
        registry.load_onnx(mv)
    assert info.value.field == "digest"


def test_deleted_weights_raise_artifact_missing(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """Weights whose stored object was deleted raise ArtifactMissing on load."""
    # Arrange
    mv = registry.register("m", weights=weights, onnx_model=graph)
    workspace.artifacts.delete(mv.weights_digest)

    # Act / Assert
    with pytest.raises(ArtifactMissing) as info:
        registry.load_weights(mv)
    assert info.value.field == "digest"


def test_package_of_missing_onnx_raises_artifact_missing(
    registry: ModelRegistry, workspace: Workspace, weights: Parameters, graph: bytes
) -> None:
    """package() of a version whose graph is gone raises ArtifactMissing."""
    # Arrange
    mv = registry.register("m", weights=weights, onnx_model=graph)
    workspace.artifacts.delete(mv.onnx_digest)

    # Act / Assert
    with pytest.raises(ArtifactMissing):
        registry.package("m:1")


def test_package_bundles_weights_graph_and_signature(
    three_versions: ModelRegistry, weights: Parameters, graph: bytes
) -> None:
    """package() returns the version's weights, graph, signature and identifying metadata."""
    # Act
    package = three_versions.package("m@champion")

    # Assert
    assert package.onnx_model == graph
    assert list(package.weights) == list(weights)
    assert package.signature == _signature()
    assert (package.metadata["model"], package.metadata["version"]) == ("m", 2)


# -- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "version"),
    [
        pytest.param("m@champion", 2, id="alias"),
        pytest.param("m:2", 2, id="colon"),
        pytest.param("m/1", 1, id="slash"),
        pytest.param("m", 3, id="latest"),
        pytest.param(ModelRef(name="m", version=1), 1, id="model-ref"),
    ],
)
def test_get_resolves_references(three_versions: ModelRegistry, ref: Any, version: int) -> None:
    """get() resolves NAME@ALIAS, NAME:VERSION, NAME/VERSION, NAME and ModelRef."""
    # Act
    mv = three_versions.get(ref)

    # Assert
    assert (mv.model_name, mv.version) == ("m", version)


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        pytest.param("nope", "model", id="unknown-model"),
        pytest.param("nope@champion", "model", id="alias-of-unknown-model"),
        pytest.param("m:9", "version", id="unknown-version"),
        pytest.param("m@staging", "alias", id="unset-alias"),
    ],
)
def test_get_unknown_is_not_found(three_versions: ModelRegistry, ref: str, field: str) -> None:
    """get() of a model, version or alias that does not exist raises NotFound naming it."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        three_versions.get(ref)
    assert info.value.field == field


def test_list_versions_of_unknown_model_is_not_found(registry: ModelRegistry) -> None:
    """list_versions of an unknown model raises NotFound on model."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        registry.list_versions("nope")
    assert info.value.field == "model"


# -- concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def test_concurrent_registrations_get_consecutive_versions(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    build_weights: Callable[[int], Parameters],
    graph: bytes,
    backend: str,
) -> None:
    """Two threads registering five versions each of one new model get versions 1-10 once each."""
    # Arrange
    store: dict[str, str] = {"artifacts_url": str(tmp_path / "artifacts")}
    if backend == "postgres":
        store["url"] = request.getfixturevalue("postgres_db_url")
    config = resolve(
        {"project": {"dir": str(tmp_path / ".fedloop")}, "store": store}, {}, {}
    ).config
    open_workspace(config).close()  # migrate once, before the race
    barrier = threading.Barrier(2, timeout=30)
    results: dict[int, list[int]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with open_workspace(config) as ws:
                registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
                barrier.wait()
                for i in range(5):
                    mv = registry.register(
                        "m", weights=build_weights(index * 10 + i), onnx_model=graph
                    )
                    results[index].append(mv.version)
        except BaseException as err:  # collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Assert
    assert errors == []
    assert sorted(results[0] + results[1]) == list(range(1, 11))
    assert all(r == sorted(r) for r in results.values())


# -- reference profiles ----------------------------------------------------------------------


def test_a_version_has_no_profile_until_one_is_attached(
    three_versions: ModelRegistry,
) -> None:
    """find_profile is None at first; an attached profile comes back equal, and is audited."""
    # Arrange
    from fedloop.learn import profile_columns

    mv = three_versions.get("m:2")
    profile = profile_columns({"x[0]": np.arange(100.0), "x[1]": np.ones(100)}, num_bins=10)

    # Act
    before = three_versions.find_profile(mv)
    three_versions.attach_profile(mv, profile, source="central", actor="test")
    after = three_versions.find_profile(mv)

    # Assert
    assert before is None
    assert after is not None
    assert after.num_rows == 100
    np.testing.assert_array_equal(after.columns["x[0]"].counts, profile.columns["x[0]"].counts)
    assert three_versions.find_profile(three_versions.get("m:1")) is None
    event = three_versions.metadata.list_events(kind="model.profile_attached")[-1]
    assert (event.subject, event.actor) == ("model:m/2", "test")
