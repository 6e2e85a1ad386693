"""Fixtures of the registry tests: a real workspace on disk and small, valid ONNX graphs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fedloop.core import Parameters, resolve
from fedloop.registry import ModelRegistry
from fedloop.store import Workspace, open_workspace

NUM_FEATURES = 4


def _make_graph(
    *,
    num_features: int = NUM_FEATURES,
    input_name: str = "features",
    output_name: str = "probability",
) -> bytes:
    """Return a serialized Gemm + Sigmoid classifier: float32 (batch, num_features) -> (batch, 1)."""
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(
        rng.normal(size=(num_features, 1)).astype(np.float32), name="weight"
    )
    bias = numpy_helper.from_array(np.zeros(1, dtype=np.float32), name="bias")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", [input_name, "weight", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], [output_name]),
        ],
        "classifier",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", num_features])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _make_weights(seed: int = 0) -> Parameters:
    """Return parameters of mixed dtypes, including -0.0 and a subnormal, to test exact storage."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3, NUM_FEATURES)).astype(np.float32)
    weight[0, 0] = -0.0
    weight[0, 1] = np.float32(1e-45)
    return OrderedDict(
        [
            ("0.weight", weight),
            ("0.bias", rng.normal(size=3).astype(np.float64)),
            ("steps", np.array([seed, 7], dtype=np.int64)),
        ]
    )


@pytest.fixture(scope="session")
def build_graph() -> Callable[..., bytes]:
    """Return the graph builder (keyword arguments: num_features, input_name, output_name)."""
    return _make_graph


@pytest.fixture(scope="session")
def build_weights() -> Callable[[int], Parameters]:
    """Return the parameter builder (argument: seed)."""
    return _make_weights


@pytest.fixture(scope="session")
def graph() -> bytes:
    """Return the bytes of a small valid ONNX classifier."""
    return _make_graph()


@pytest.fixture(scope="session")
def torch_graph() -> bytes:
    """Return the ONNX export of a 4-3-1 MLP by TorchAdapter (torch is imported once)."""
    from fedloop.learn import TorchAdapter, mlp

    return TorchAdapter(lambda: mlp(NUM_FEATURES, hidden=(3,)), num_features=NUM_FEATURES).to_onnx()


@pytest.fixture
def weights() -> Parameters:
    """Return a small set of parameters."""
    return _make_weights()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a workspace (SQLite + local artifacts) under ``tmp_path/.fedloop``."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        yield ws


@pytest.fixture
def registry(workspace: Workspace) -> ModelRegistry:
    """Return a model registry over the workspace."""
    return ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)
