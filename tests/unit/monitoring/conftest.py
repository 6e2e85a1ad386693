"""Fixtures of the monitor tests: a workspace with a registered model and payload-log bodies."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from _graphs import NUM_FEATURES, make_graph
from _payloads import MODEL
from fedloop.core import resolve
from fedloop.registry import ModelRegistry
from fedloop.store import Workspace, open_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a workspace holding ``fraud`` v1 (registered AUC 0.9) and v2."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        registry.register(MODEL, weights=w, onnx_model=make_graph(1), metrics={"auc": 0.9})
        registry.register(MODEL, weights=w, onnx_model=make_graph(2))
        yield ws


@pytest.fixture
def registry(workspace: Workspace) -> ModelRegistry:
    """Return the registry over the workspace."""
    return ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)
