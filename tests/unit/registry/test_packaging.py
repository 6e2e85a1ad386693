"""Model packages on disk and ONNX checks: signature inference, compatibility, integrity."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fedloop.core import (
    ArtifactCorrupt,
    InvalidInput,
    NotFound,
    Parameters,
    Signature,
    TensorSpec,
)
from fedloop.registry import (
    ModelPackage,
    ModelRegistry,
    check_onnx,
    infer_signature,
    read_package,
    write_package,
)

PACKAGE_FILES = {"weights.safetensors", "model.onnx", "signature.json", "manifest.json"}


@pytest.fixture
def package(weights: Parameters, graph: bytes) -> ModelPackage:
    """Return a package of the test graph and weights."""
    return ModelPackage(
        weights=weights,
        onnx_model=graph,
        signature=infer_signature(graph),
        metadata={"model": "m", "version": 1, "metrics": {"auc": 0.9}},
    )


@pytest.fixture
def folder(tmp_path: Path, package: ModelPackage) -> Path:
    """Return a folder holding the written package."""
    return write_package(package, tmp_path / "pkg")


def _rewrite_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _replace_consistently(folder: Path, name: str, data: bytes) -> None:
    """Replace a package file and update its manifest digest, as a careless tool would."""
    (folder / name).write_bytes(data)

    def change(manifest: dict[str, Any]) -> None:
        manifest["files"][name]["sha256"] = hashlib.sha256(data).hexdigest()

    _rewrite_manifest(folder, change)


def _graph_with_input(elem_type: int) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", elem_type, [None, 2])],
        [helper.make_tensor_value_info("y", elem_type, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


# -- infer_signature and check_onnx ----------------------------------------------------------


def test_infer_signature_skips_initializers(graph: bytes) -> None:
    """The signature lists the graph's real inputs, not its initializers."""
    # Act
    signature = infer_signature(graph)

    # Assert
    assert signature == Signature(
        inputs=(TensorSpec(name="features", dtype="float32", shape=(None, 4)),),
        outputs=(TensorSpec(name="probability", dtype="float32", shape=(None, 1)),),
    )


@pytest.mark.parametrize(
    ("elem_type", "dtype"),
    [
        pytest.param(TensorProto.DOUBLE, "float64", id="double"),
        pytest.param(TensorProto.INT64, "int64", id="int64"),
        pytest.param(TensorProto.BOOL, "bool", id="bool"),
    ],
)
def test_infer_signature_maps_element_types(elem_type: int, dtype: str) -> None:
    """ONNX element types map to numpy dtype names."""
    # Act
    signature = infer_signature(_graph_with_input(elem_type))

    # Assert
    assert signature.inputs[0].dtype == dtype


def test_unsupported_element_type_is_invalid_input() -> None:
    """A string tensor in the graph raises InvalidInput naming the tensor."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        infer_signature(_graph_with_input(TensorProto.STRING))
    assert info.value.field == "onnx_model.x"


def test_check_onnx_returns_inferred_signature(graph: bytes) -> None:
    """check_onnx without a declared signature returns the graph's signature."""
    # Act
    signature = check_onnx(graph, None)

    # Assert
    assert signature == infer_signature(graph)


def test_graph_onnxruntime_cannot_run_is_invalid_input(
    build_graph: Callable[..., bytes],
) -> None:
    """A graph that passes the checker but fails in onnxruntime raises InvalidInput."""
    # Arrange: the Gemm weight expects 4 features but the input is declared with 5
    model = onnx.load_from_string(build_graph())
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5
    broken = model.SerializeToString()

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        check_onnx(broken, None)
    assert info.value.field == "onnx_model"


def test_truncated_graph_is_invalid_input(graph: bytes) -> None:
    """A graph cut in half raises InvalidInput on onnx_model."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        infer_signature(graph[: len(graph) // 2])
    assert info.value.field == "onnx_model"


# -- write_package / read_package ------------------------------------------------------------


def test_write_package_writes_four_files(folder: Path) -> None:
    """A package folder holds weights, graph, signature and manifest."""
    # Act
    names = {p.name for p in folder.iterdir()}

    # Assert
    assert names == PACKAGE_FILES


def test_manifest_records_digests(folder: Path) -> None:
    """The manifest records each file's sha256 and size."""
    # Act
    manifest = json.loads((folder / "manifest.json").read_text())

    # Assert
    assert manifest["format"] == "fedloop-model/1"
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}


def test_package_round_trips(folder: Path, package: ModelPackage) -> None:
    """read_package returns the weights, graph, signature and metadata that were written."""
    # Act
    loaded = read_package(folder)

    # Assert
    assert loaded.onnx_model == package.onnx_model
    assert loaded.signature == package.signature
    assert loaded.metadata == package.metadata
    assert list(loaded.weights) == list(package.weights)
    for name, array in package.weights.items():
        assert loaded.weights[name].dtype == array.dtype
        assert loaded.weights[name].tobytes() == array.tobytes()


def test_registry_package_round_trips(
    registry: ModelRegistry, weights: Parameters, graph: bytes, tmp_path: Path
) -> None:
    """A registry version written to disk reads back with its metadata."""
    # Arrange
    mv = registry.register("m", weights=weights, onnx_model=graph, metrics={"auc": 0.5})

    # Act
    loaded = read_package(write_package(registry.package("m:1"), tmp_path / "out"))

    # Assert
    assert loaded.metadata["version_id"] == mv.id
    assert loaded.metadata["metrics"] == {"auc": 0.5}
    assert loaded.onnx_model == graph


def test_write_package_replaces_existing_package(
    folder: Path, package: ModelPackage, build_weights: Callable[[int], Parameters]
) -> None:
    """Writing a second package into the same folder replaces the first."""
    # Arrange
    other = ModelPackage(
        weights=build_weights(5),
        onnx_model=package.onnx_model,
        signature=package.signature,
        metadata={"version": 2},
    )

    # Act
    write_package(other, folder)

    # Assert
    loaded = read_package(folder)
    assert loaded.metadata == {"version": 2}
    assert loaded.weights["steps"].tolist() == [5, 7]


def test_write_package_refuses_nan_weights(package: ModelPackage, tmp_path: Path) -> None:
    """A package with NaN weights is refused with InvalidInput naming the tensor."""
    # Arrange
    weights = OrderedDict(package.weights)
    weights["0.bias"] = np.array([np.nan])
    bad = ModelPackage(
        weights=weights, onnx_model=package.onnx_model, signature=package.signature, metadata={}
    )

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        write_package(bad, tmp_path / "bad")
    assert info.value.field == "weights['0.bias']"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("weights.safetensors", id="weights"),
        pytest.param("model.onnx", id="graph"),
        pytest.param("signature.json", id="signature"),
    ],
)
def test_tampered_file_is_artifact_corrupt(folder: Path, name: str) -> None:
    """A package file changed after writing raises ArtifactCorrupt naming the file."""
    # Arrange
    with (folder / name).open("ab") as out:
        out.write(b" ")

    # Act / Assert
    with pytest.raises(ArtifactCorrupt) as info:
        read_package(folder)
    assert info.value.field == name


def test_missing_manifest_is_not_found(folder: Path) -> None:
    """A folder without manifest.json raises NotFound on package."""
    # Arrange
    (folder / "manifest.json").unlink()

    # Act / Assert
    with pytest.raises(NotFound) as info:
        read_package(folder)
    assert info.value.field == "package"


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    """A folder that does not exist raises NotFound on package."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        read_package(tmp_path / "nowhere")
    assert info.value.field == "package"


def test_missing_file_is_not_found(folder: Path) -> None:
    """A package without its ONNX file raises NotFound naming the file."""
    # Arrange
    (folder / "model.onnx").unlink()

    # Act / Assert
    with pytest.raises(NotFound) as info:
        read_package(folder)
    assert info.value.field == "model.onnx"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[]", id="list"),
        pytest.param('{"format": "fedloop-model/1"}', id="no-files"),
    ],
)
def test_malformed_manifest_is_invalid_input(folder: Path, text: str) -> None:
    """A manifest that is not a fedloop manifest raises InvalidInput on manifest.json."""
    # Arrange
    (folder / "manifest.json").write_text(text)

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        read_package(folder)
    assert info.value.field == "manifest.json"


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("0" * 64, id="entry-is-text"),
        pytest.param({"size_bytes": 3}, id="entry-without-sha256"),
    ],
)
def test_malformed_manifest_entry_is_invalid_input(folder: Path, entry: Any) -> None:
    """A manifest whose file entry lacks a sha256 raises InvalidInput, not a raw Python error."""

    # Arrange
    def change(manifest: dict[str, Any]) -> None:
        manifest["files"]["model.onnx"] = entry

    _rewrite_manifest(folder, change)

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        read_package(folder)
    assert info.value.field == "manifest.json"


def test_rehashed_bad_weights_are_invalid_input(folder: Path) -> None:
    """Weights replaced by non-safetensors bytes (manifest updated) raise InvalidInput."""
    # Arrange
    _replace_consistently(folder, "weights.safetensors", b"garbage")

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        read_package(folder)
    assert info.value.field == "weights.safetensors"


def test_rehashed_bad_signature_is_invalid_input(folder: Path) -> None:
    """A signature.json that is not a signature (manifest updated) raises InvalidInput."""
    # Arrange
    _replace_consistently(folder, "signature.json", b'{"inputs": []}')

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        read_package(folder)
    assert info.value.field == "signature.json"
