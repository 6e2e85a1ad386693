"""Helpers shared by the CLI tests: a tiny ONNX graph and the flags that point at a store."""

from __future__ import annotations

from pathlib import Path

from onnx import TensorProto, helper


def sigmoid_graph() -> bytes:
    """Return a serialized ONNX graph: float32 (batch, 4) -> sigmoid, (batch, 4)."""
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["features"], ["probability"])],
        "sigmoid",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def store_args(root: Path) -> list[str]:
    """Return the global flags that point the CLI at the SQLite store and artifacts in ``root``."""
    return [
        "--store-url",
        f"sqlite:///{root / '.fedloop' / 'fedloop.db'}",
        "--artifacts-url",
        str(root / ".fedloop" / "artifacts"),
    ]
