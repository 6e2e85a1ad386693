"""Dashboard pages of the registry: models, a model's versions, a version's lineage and privacy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedloop.core import InvalidInput
from fedloop.registry import lineage
from fedloop.store import ModelVersion
from fedloop.ui.charts import version_metrics_figure
from fedloop.ui.graph import lineage_graph, version_tree
from fedloop.ui.pages import Dashboard, page_endpoint, render
from fedloop.ui.sessions import Viewer

__all__ = ["model_routes", "privacy_rows"]

_PRIVACY_FIELDS = (
    ("mechanism", "mechanism"),
    ("epsilon", "epsilon (ε)"),
    ("delta", "delta (δ)"),
    ("target_epsilon", "target ε"),
    ("noise_multiplier", "noise multiplier"),
    ("clip_norm", "clip norm"),
    ("adaptive_clipping", "adaptive clipping"),
    ("sampling_probability", "sampling probability"),
    ("rounds", "rounds accounted"),
    ("accountant", "accountant"),
)


def privacy_rows(privacy: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a version's privacy record as the page shows it.

    Parameters
    ----------
    privacy : Mapping or None
        ``ModelVersion.privacy``: the DP ledger (``epsilon`` at ``delta``…) and, under
        ``secure_aggregation``, the protocol of the rounds.

    Returns
    -------
    dict
        ``dp`` (label, value) rows (empty without differential privacy), ``secure``
        (label, value) rows (empty without secure aggregation), ``epsilon`` (or None) and
        ``other`` (fields the page has no label for).
    """
    record = dict(privacy or {})
    secure = dict(record.pop("secure_aggregation", None) or {})
    dp = [(label, record.pop(key)) for key, label in _PRIVACY_FIELDS if key in record]
    epsilon = next((v for label, v in dp if label.startswith("epsilon")), None)
    return {
        "dp": dp,
        "secure": sorted(secure.items()),
        "epsilon": epsilon,
        "other": sorted((k, v) for k, v in record.items() if k != "initial_clip_norm"),
    }


def _version_number(raw: str) -> int:
    if not raw.isdigit():
        raise InvalidInput(
            f"a version is a positive integer; got {raw!r}.", field="version", value=raw
        )
    return int(raw)


def model_routes(dash: Dashboard) -> list[Route]:
    """Return the registry pages: ``/models``, ``/models/{name}``, ``/models/{name}/{version}``."""
    metadata = dash.ws.metadata

    def models_page(request: Request, viewer: Viewer) -> Response:
        models = metadata.list_registered_models(dash.ws.project.id)
        counts = {m.name: len(metadata.list_model_versions(m.name)) for m in models}
        return render(dash, request, viewer, "models.html", models=models, counts=counts)

    def model_page(request: Request, viewer: Viewer) -> Response:
        name = request.path_params["name"]
        versions: list[ModelVersion] = sorted(
            metadata.list_model_versions(name), key=lambda v: v.version
        )
        return render(
            dash, request, viewer, "model.html", name=name, versions=versions,
            tree=version_tree(versions, prefix=dash.prefix),
            metrics_chart=version_metrics_figure(versions) if versions else None,
            history=list(reversed(metadata.alias_history(name))),
            privacy={v.version: privacy_rows(v.privacy) for v in versions},
            windows=len(metadata.list_monitor_windows(name, limit=1)),
            numbers={v.id: v.version for v in versions},
        )  # fmt: skip

    def version_page(request: Request, viewer: Viewer) -> Response:
        name = request.path_params["name"]
        found = lineage(metadata, name, _version_number(request.path_params["version"]))
        return render(
            dash, request, viewer, "version.html", lin=found, v=found.version,
            graph=lineage_graph(found, prefix=dash.prefix),
            privacy=privacy_rows(found.version.privacy),
            profile=metadata.find_profile(found.version.id),
        )  # fmt: skip

    return [
        Route("/models", page_endpoint(dash, "viewer", models_page), name="models"),
        Route("/models/{name}", page_endpoint(dash, "viewer", model_page), name="model"),
        Route(
            "/models/{name}/{version}",
            page_endpoint(dash, "viewer", version_page),
            name="version",
        ),
    ]
