"""Secure-aggregation overhead per round on W-FL at K = 10, 50 and 100 (issue 7, point 5).

For each K, the fraud scenario's K banks (W-FL data, Dirichlet(0.5) over clients, MLP
30-64-32-1, one local epoch) run in fedloop's process-pool simulation (2 worker processes,
as ``fedloop federated simulate``), every client every round, through the real coordinator
with a SQLite store: plain FedAvg, then FedAvg under secure aggregation (every pair masked,
threshold floor(K/2)+1), then SecAgg+ (each client masks with 2*ceil(log2 K) neighbours).
The same worker processes serve the three runs of one K. Reported per run: the median
seconds of a round (rounds after the first), of which the three key-exchange stages, the
bytes a client sends and receives per round, and the test ROC-AUC after the last round
(secure aggregation sums exactly, so it matches FedAvg's to the fixed-point precision).

    .venv/bin/python benchmarks/secagg_overhead.py            # ~6 minutes on 2 cores
    .venv/bin/python benchmarks/secagg_overhead.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedloop.core import FederatedConfig, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.simulation import LocalBackend
from fedloop.federated.strategies import FedAvg
from fedloop.learn import TorchAdapter, mlp
from fedloop.scenarios.fraud.data import make_fraudlike
from fedloop.store import open_workspace

OUT = Path(__file__).parent / "out" / "secagg_overhead.json"
FACTORY = "fedloop.scenarios.fraud.federated:make_client"
_STAGES = ("share", "mask", "unmask")


def _modes(k: int) -> list[tuple[str, dict[str, Any]]]:
    neighbours = 2 * math.ceil(math.log2(k))
    modes: list[tuple[str, dict[str, Any]]] = [
        ("fedavg", {"enabled": False}),
        ("secagg", {"enabled": True}),
    ]
    if neighbours + 1 < k:
        modes.append((f"secagg+ ({neighbours} nb)", {"enabled": True, "neighbours": neighbours}))
    return modes


def _run(
    backend: LocalBackend, secure: dict[str, Any], *, rounds: int, x: Any, y: Any
) -> dict[str, Any]:
    evaluator = TorchAdapter(lambda: mlp(30), num_features=30, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve({"project": {"dir": tmp}}, {}, {}).config
        with open_workspace(config) as ws:
            coordinator = Coordinator(
                backend,
                FedAvg(),
                config=FederatedConfig(
                    num_rounds=rounds,
                    round_timeout_s=600.0,
                    secure_aggregation={**secure, "stage_timeout_s": 300.0},  # type: ignore[arg-type]
                ),
                metadata=ws.metadata,
                artifacts=ws.artifacts,
            )
            run_id = coordinator.start(ws.project.id, evaluator.get_parameters())
            started = time.perf_counter()
            final = coordinator.run(run_id)
            wall = time.perf_counter() - started
            records = ws.metadata.list_fl_rounds(run_id)[1:]
            clients = ws.metadata.list_fl_client_rounds(run_id, round_num=rounds)
    evaluator.set_parameters(final)
    steady = records[1:] or records
    keys = [sum(r.metrics.get(f"secagg_{s}_seconds", 0.0) for s in _STAGES) for r in steady]
    return {
        "round_s": statistics.median(r.seconds for r in steady),
        "first_round_s": records[0].seconds,
        "key_stages_s": statistics.median(keys),
        "bytes_up_per_client": statistics.mean(c.bytes_up for _, c in clients),
        "bytes_down_per_client": statistics.mean(c.bytes_down for _, c in clients),
        "participants": records[-1].metrics.get("participants"),
        "auc": evaluator.evaluate(x, y)["auc"],
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Tiny data, K=10 and 20, 2 rounds.")
    parser.add_argument("--rounds", type=int, default=None, help="Rounds per run (default 4).")
    args = parser.parse_args()
    rows = 20_000 if args.quick else 200_000
    sizes = (10, 20) if args.quick else (10, 50, 100)
    rounds = args.rounds or (2 if args.quick else 4)
    data = make_fraudlike(rows, seed=0)
    console = Console()
    results: list[dict[str, Any]] = []
    for k in sizes:
        spec = {"rows": rows, "num_clients": k, "partition": "dirichlet", "alpha": 0.5, "seed": 0}
        backend = LocalBackend(
            FACTORY, [f"bank-{i:03d}" for i in range(k)], num_workers=2, kwargs=spec
        )
        try:
            for mode, secure in _modes(k):
                console.print(f"K={k} {mode} ...")
                result = _run(backend, secure, rounds=rounds, x=data.x_test, y=data.y_test)
                results.append({"k": k, "mode": mode, **result})
        finally:
            backend.close()

    table = Table(title=f"Secure aggregation overhead on W-FL ({rows} rows, {rounds} rounds)")
    for column in (
        "K",
        "mode",
        "round s",
        "overhead",
        "key stages s",
        "up KiB/client",
        "down KiB/client",
        "AUC",
    ):
        table.add_column(column, justify="right" if column not in ("mode",) else "left")
    plain = {r["k"]: r for r in results if r["mode"] == "fedavg"}
    for r in results:
        base = plain[r["k"]]
        r["overhead"] = r["round_s"] / base["round_s"]
        r["auc_gap"] = r["auc"] - base["auc"]
        table.add_row(
            str(r["k"]),
            r["mode"],
            f"{r['round_s']:.2f}",
            f"{r['overhead']:.2f}x",
            f"{r['key_stages_s']:.2f}",
            f"{r['bytes_up_per_client'] / 1024:.1f}",
            f"{r['bytes_down_per_client'] / 1024:.1f}",
            f"{r['auc']:.4f}",
        )
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "rounds": rounds, "results": results}, indent=2))
    console.print(f"JSON: {OUT}")


if __name__ == "__main__":
    main()
