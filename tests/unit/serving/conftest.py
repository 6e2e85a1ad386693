"""Fixtures of the serving tests: a workspace with two versions of a small model, a live server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serving import MODEL, weights

from _graphs import make_graph
from _loopback import Receiver, running
from fedloop.core import ServingConfig, resolve
from fedloop.registry import ModelRegistry
from fedloop.serving import create_app
from fedloop.store import Workspace, open_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a workspace holding ``fraud`` v1 (champion) and v2 (challenger)."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        for seed in (1, 2):
            registry.register(MODEL, weights=weights(), onnx_model=make_graph(seed))
        registry.promote(MODEL, 1, alias="champion")
        registry.promote(MODEL, 2, alias="challenger")
        yield ws


@pytest.fixture
def registry(workspace: Workspace) -> ModelRegistry:
    """Return the registry over the workspace."""
    return ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)


@dataclass
class Live:
    """A server running in a thread: its base URL and app state."""

    url: str
    app: Any

    @property
    def state(self) -> Any:
        """Return the app's ServingState."""
        return self.app.state.serving


@pytest.fixture
def serve(registry: ModelRegistry) -> Iterator[Callable[..., Live]]:
    """Return a function that starts a server for ``ServingConfig(**settings)``."""
    stack: list[Any] = []

    def start(**settings: Any) -> Live:
        settings.setdefault("models", (f"{MODEL}@champion",))
        settings.setdefault("access_log", False)
        app = create_app(ServingConfig(**settings), registry)
        context = running(app)
        url = context.__enter__()
        stack.append(context)
        return Live(url=url, app=app)

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """Return an HTTP client."""
    with httpx.Client(timeout=10) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Return a running monitor stand-in on loopback."""
    monitor = Receiver()
    yield monitor
    monitor.close()
