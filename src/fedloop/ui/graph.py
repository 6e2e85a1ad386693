"""Lineage graphs drawn on the server as SVG: layered nodes (links) and curved edges, no script."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from markupsafe import Markup, escape

from fedloop.registry import Lineage
from fedloop.store import ModelVersion

__all__ = ["Edge", "Node", "layered_svg", "lineage_graph", "version_tree"]

_W, _H = 176, 46
_COL_GAP, _ROW_GAP, _PAD = 64, 14, 12
_MAX_CLIENTS = 10


@dataclass(frozen=True)
class Node:
    """A box of the graph.

    Attributes
    ----------
    id : str
        Unique within the graph.
    label, detail : str
        First line (bold) and second line of the box.
    kind : str
        CSS class (``current``, ``version``, ``run``, ``dataset``, ``client``, ``more``).
    column : int
        Layer, left to right (any integers; only their order matters).
    href : str or None
        Where a click leads.
    """

    id: str
    label: str
    detail: str
    kind: str
    column: int
    href: str | None = None


@dataclass(frozen=True)
class Edge:
    """An arrow from ``source`` to ``target`` (node ids), optionally labelled."""

    source: str
    target: str
    label: str = ""


def _clip(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def layered_svg(nodes: Sequence[Node], edges: Sequence[Edge], *, title: str) -> Markup:
    """Draw nodes in columns by layer, each column centred, with edges as curves.

    Parameters
    ----------
    nodes : sequence of Node
        The boxes, in the vertical order wanted within each column.
    edges : sequence of Edge
        Arrows between boxes; edges naming unknown nodes are skipped.
    title : str
        The SVG's accessible title.

    Returns
    -------
    Markup
        An inline ``<svg>`` element (every text escaped).
    """
    columns = sorted({n.column for n in nodes})
    by_column = {c: [n for n in nodes if n.column == c] for c in columns}
    tallest = max((len(v) for v in by_column.values()), default=1)
    height = _PAD * 2 + tallest * _H + (tallest - 1) * _ROW_GAP
    width = _PAD * 2 + len(columns) * _W + max(len(columns) - 1, 0) * _COL_GAP
    at: dict[str, tuple[float, float]] = {}
    for i, c in enumerate(columns):
        stack = by_column[c]
        used = len(stack) * _H + (len(stack) - 1) * _ROW_GAP
        top = (height - used) / 2
        for j, node in enumerate(stack):
            at[node.id] = (_PAD + i * (_W + _COL_GAP), top + j * (_H + _ROW_GAP))
    parts = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z"/></marker></defs>',
    ]
    for e in edges:
        if e.source not in at or e.target not in at:
            continue
        (x1, y1), (x2, y2) = at[e.source], at[e.target]
        sx, sy, tx, ty = x1 + _W, y1 + _H / 2, x2, y2 + _H / 2
        mid = (sx + tx) / 2
        parts.append(
            f'<path class="edge" marker-end="url(#arrow)" '
            f'd="M{sx:.1f} {sy:.1f}C{mid:.1f} {sy:.1f} {mid:.1f} {ty:.1f} {tx:.1f} {ty:.1f}"/>'
        )
        if e.label:
            parts.append(
                f'<text class="edge-label" x="{mid:.1f}" y="{(sy + ty) / 2 - 4:.1f}" '
                f'text-anchor="middle">{escape(e.label)}</text>'
            )
    for node in nodes:
        x, y = at[node.id]
        box = (
            f'<g class="node {escape(node.kind)}" data-node="{escape(node.id)}">'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_W}" height="{_H}" rx="7"/>'
            f'<text x="{x + 10:.1f}" y="{y + 19:.1f}" class="label">{escape(_clip(node.label))}'
            f"</text>"
            f'<text x="{x + 10:.1f}" y="{y + 36:.1f}" class="detail">'
            f"{escape(_clip(node.detail, 30))}</text></g>"
        )
        if node.href:
            box = f'<a href="{escape(node.href)}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return Markup("".join(parts))


def _version_href(prefix: str, name: str, version: int) -> str:
    return f"{prefix}/models/{quote(name, safe='')}/{version}"


def lineage_graph(found: Lineage, *, prefix: str) -> Markup:
    """Draw where a version came from: its data sets and clients, run, and warm-start ancestors.

    Parameters
    ----------
    found : Lineage
        From :func:`fedloop.registry.lineage`.
    prefix : str
        The dashboard's path prefix (for the links).

    Returns
    -------
    Markup
        An inline SVG.
    """
    v = found.version
    nodes: list[Node] = []
    edges: list[Edge] = []
    aliases = ", ".join(v.aliases)
    nodes.append(
        Node(
            "version",
            f"{v.model_name} v{v.version}",
            aliases or f"{v.created_at:%Y-%m-%d %H:%M}",
            "current",
            2,
            _version_href(prefix, v.model_name, v.version),
        )
    )
    child = "version"
    for i, a in enumerate(found.ancestors):
        nid = f"v{a.version}"
        detail = "warm start" if i == 0 else f"{a.created_at:%Y-%m-%d %H:%M}"
        nodes.append(
            Node(
                nid,
                f"{a.model_name} v{a.version}",
                detail,
                "version",
                1 - i,
                _version_href(prefix, a.model_name, a.version),
            )
        )
        edges.append(Edge(nid, child, "parent" if i == 0 else ""))
        child = nid
    sink = "version"
    if found.run is not None:
        r = found.run
        nodes.append(
            Node(
                "run",
                r.name or r.id[:12],
                f"{r.kind} run, {r.status}",
                "run",
                1,
                f"{prefix}/runs/{quote(r.id, safe='')}",
            )
        )
        edges.append(Edge("run", "version", "trained"))
        sink = "run"
    for ds, role in found.datasets:
        rows = f", {ds.num_rows} rows" if ds.num_rows is not None else ""
        nodes.append(Node(f"ds:{ds.id}", ds.name, f"{role}{rows}", "dataset", 0))
        edges.append(Edge(f"ds:{ds.id}", sink, role))
    contributors = v.contributors
    for c in contributors[:_MAX_CLIENTS]:
        rounds = ",".join(str(n) for n in c.rounds[:8]) + ("…" if len(c.rounds) > 8 else "")
        nodes.append(Node(f"c:{c.contributor}", c.contributor, f"rounds {rounds}", "client", 0))
        edges.append(Edge(f"c:{c.contributor}", sink))
    if len(contributors) > _MAX_CLIENTS:
        more = len(contributors) - _MAX_CLIENTS
        nodes.append(Node("more", f"+{more} more clients", "see the table", "more", 0))
        edges.append(Edge("more", sink))
    return layered_svg(nodes, edges, title=f"Lineage of {v.model_name} v{v.version}")


def version_tree(versions: Sequence[ModelVersion], *, prefix: str) -> Markup:
    """Draw a model's versions by generation (a version's column is one past its parent's).

    Parameters
    ----------
    versions : sequence of ModelVersion
        The model's versions (in any order).
    prefix : str
        The dashboard's path prefix (for the links).

    Returns
    -------
    Markup
        An inline SVG.
    """
    versions = sorted(versions, key=lambda v: v.version)
    by_id = {v.id: v for v in versions}
    depth: dict[str, int] = {}
    for v in versions:  # oldest first: a parent is always registered before its children
        parent = v.parent_version_id
        depth[v.id] = depth[parent] + 1 if parent is not None and parent in depth else 0
    nodes = [
        Node(
            v.id,
            f"v{v.version}",
            ", ".join(v.aliases) or f"{v.created_at:%Y-%m-%d %H:%M}",
            "current" if v.aliases else "version",
            depth[v.id],
            _version_href(prefix, v.model_name, v.version),
        )
        for v in versions
    ]
    edges = [
        Edge(v.parent_version_id, v.id)
        for v in versions
        if v.parent_version_id and v.parent_version_id in by_id
    ]
    name = versions[0].model_name if versions else ""
    return layered_svg(nodes, edges, title=f"Versions of {name}")
