"""Member indices and the neighbour graph of a round (complete, or a SecAgg+ random ring)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["neighbour_sets"]


def neighbour_sets(
    members: Sequence[str], *, degree: int | None, graph_seed: bytes
) -> dict[str, frozenset[str]]:
    """Return each member's neighbours (never itself); the relation is symmetric.

    Without ``degree`` (or when it reaches ``len(members) - 1``) every pair is joined.
    Otherwise members are placed on a ring in an order drawn from ``graph_seed``
    (SHA-256 of seed and id, so every party computes the same graph) and each is joined
    to the ``degree // 2`` nearest on either side.
    """
    if degree is None or degree >= len(members) - 1:
        everyone = frozenset(members)
        return {member: everyone - {member} for member in members}
    ring = sorted(members, key=lambda m: hashlib.sha256(graph_seed + m.encode()).digest())
    size, half = len(ring), degree // 2
    return {
        member: frozenset(ring[(i + step) % size] for step in range(-half, half + 1) if step)
        for i, member in enumerate(ring)
    }
