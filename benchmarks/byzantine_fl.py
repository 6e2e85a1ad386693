"""Robustness on W-FL with 20% Byzantine clients (issue 7, point 4), in one run.

W-FL at K=10 (all clients every round, 20 rounds, the fraudlike data, Dirichlet(0.5) over
clients): a clean FedAvg run, then the same run with 2 of the 10 banks Byzantine — one sends
its update sign-flipped, the other scaled by 10 (both relative to the global model they got) —
aggregated by FedAvg, coordinate-wise median, trimmed mean (beta 0.2) and Multi-Krum (f=2).
Each prints the test ROC-AUC after the last round; the goal is a robust strategy within 0.01
of the clean run. All runs use fedloop's real coordinator with the in-process transport.

    .venv/bin/python benchmarks/byzantine_fl.py            # ~5 minutes on 2 cores
    .venv/bin/python benchmarks/byzantine_fl.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from _wfl_inprocess import make_clients, run_wfl, wfl_spec
from fedloop.federated.client import Client
from fedloop.federated.messages import FitIns, FitRes
from fedloop.federated.strategies import make_strategy

OUT = Path(__file__).parent / "out" / "byzantine_fl.json"


class ByzantineClient:
    """Trains honestly, then sends ``global + factor * (local - global)`` (factor -1: sign flip)."""

    def __init__(self, inner: Client, factor: float) -> None:
        self.inner, self.factor = inner, factor

    def fit(self, ins: FitIns) -> FitRes:
        """Train like the honest client, then corrupt the update."""
        res = self.inner.fit(ins)
        params = OrderedDict(
            (k, (g + self.factor * (v - g)).astype(v.dtype))
            for (k, v), g in zip(res.parameters.items(), ins.parameters.values(), strict=True)
        )
        return FitRes(params, res.num_examples, res.metrics, res.round_num)


def _run(
    strategy: str, params: dict[str, Any], *, attacked: bool, spec: dict[str, Any], rounds: int
) -> dict[str, Any]:
    clients = make_clients(spec)
    if attacked:
        ids = sorted(clients)
        clients[ids[0]] = ByzantineClient(clients[ids[0]], -1.0)
        clients[ids[1]] = ByzantineClient(clients[ids[1]], 10.0)
    run = run_wfl(make_strategy(strategy, **params), spec=spec, rounds=rounds, clients=clients)
    return {"auc": run["auc"], "seconds": run["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, 5 rounds")
    args = parser.parse_args()
    rows, rounds = (20_000, 5) if args.quick else (200_000, 20)
    spec = wfl_spec(rows=rows, num_clients=10)
    cases = [
        ("clean FedAvg", "fedavg", {}, False),
        ("FedAvg, 20% Byzantine", "fedavg", {}, True),
        ("median, 20% Byzantine", "median", {}, True),
        ("trimmed mean (0.2), 20% Byzantine", "trimmed_mean", {"beta": 0.2}, True),
        (
            "Multi-Krum (f=2, m=6), 20% Byzantine",
            "multikrum",
            {"num_byzantine": 2, "num_selected": 6},
            True,
        ),
    ]
    console = Console()
    results = {}
    for label, name, params, attacked in cases:
        console.print(f"running {label} ...")
        results[label] = {
            "strategy": name,
            "params": params,
            **_run(name, params, attacked=attacked, spec=spec, rounds=rounds),
        }
    clean = results["clean FedAvg"]["auc"]
    table = Table(title=f"W-FL K=10, {rounds} rounds, 2 of 10 clients Byzantine (sign flip, x10)")
    for column in ("run", "test AUC", "vs clean", "within 0.01", "s"):
        table.add_column(column)
    for label, r in results.items():
        gap = r["auc"] - clean
        r["gap"] = gap
        table.add_row(
            label,
            f"{r['auc']:.4f}",
            f"{gap:+.4f}",
            "yes" if abs(gap) <= 0.01 else "no",
            f"{r['seconds']:.0f}",
        )
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "rounds": rounds, "results": results}, indent=2))
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
