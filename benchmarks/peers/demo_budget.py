"""Time and AUC budget of ``fedloop demo``'s training: before the shift, after it, and central.

Runs, with fedloop's real Coordinator, FedAvg and a store in a fresh folder:

1. federated training on "before" data over the banks (one client per bank);
2. the AUC of that model on "before" and "after" test data;
3. federated retraining on "after" data, warm-started from it;
4. the central baseline: the same model trained on the banks' pooled "after" rows.

``--backend local`` hosts each bank in its own worker process (LocalBackend, one per bank; the
bank's rows are generated there), ``inprocess`` keeps every bank in this process; ``both`` runs
each in turn. Wall times include starting the workers and every round's store checkpoint.

    .venv/bin/python benchmarks/peers/demo_budget.py
    .venv/bin/python benchmarks/peers/demo_budget.py --backend both --rows 60000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fedloop.core import FederatedConfig, FedloopConfig, Parameters, ProjectConfig
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.simulation import LocalBackend
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import InProcessTransport, Transport
from fedloop.scenarios.fraud.shift import (
    FraudWorld,
    central_baseline,
    holdout_data,
    make_shift_client,
    make_world,
    shift_adapter,
)
from fedloop.store import Workspace, open_workspace

FACTORY = "fedloop.scenarios.fraud.shift:make_shift_client"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("local", "inprocess", "both"), default="local")
    p.add_argument("--banks", type=int, default=5)
    p.add_argument(
        "--rows", type=int, default=60_000, help="training rows of all banks, per regime"
    )
    p.add_argument("--rounds", type=int, default=8, help="rounds of the initial training")
    p.add_argument("--retrain-rounds", type=int, default=20)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--hidden", default="32,16", help="hidden widths, comma-separated")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--central-epochs", type=int, default=10)
    p.add_argument("--test-rows", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args()


class _Budget:
    """One backend's federated runs, sharing a workspace and the world."""

    def __init__(
        self, args: argparse.Namespace, world: FraudWorld, ws: Workspace, backend: str
    ) -> None:
        self.args = args
        self.world = world
        self.ws = ws
        self.backend = backend
        self.hidden = [int(h) for h in args.hidden.split(",")]
        self.tests = {r: holdout_data(world, r, rows=args.test_rows) for r in ("before", "after")}

    def model(self) -> Any:
        a = self.args
        return shift_adapter(a.seed, hidden=self.hidden, lr=a.lr, batch_size=a.batch_size)

    def auc(self, params: Parameters, regime: str) -> float:
        model = self.model()
        model.set_parameters(params)
        return float(model.evaluate(*self.tests[regime])["auc"])

    def train(
        self, regime: str, rounds: int, initial: Parameters, log: Callable[[str], None]
    ) -> tuple[Parameters, float, float]:
        a = self.args
        spec = {
            "regime": regime,
            "rows": a.rows,
            "seed": a.seed,
            "world_seed": a.world_seed,
            "num_banks": a.banks,
            "hidden": self.hidden,
            "lr": a.lr,
            "batch_size": a.batch_size,
        }
        started = time.perf_counter()
        marks: list[float] = []
        transport: Transport
        if self.backend == "local":
            transport = LocalBackend(
                FACTORY, self.world.banks, num_workers=len(self.world.banks), kwargs=spec
            )
        else:
            transport = InProcessTransport(
                {b: make_shift_client(b, **spec) for b in self.world.banks}
            )
        config = FederatedConfig(num_rounds=rounds, local_epochs=a.local_epochs, seed=a.seed)
        coordinator = Coordinator(
            transport,
            FedAvg(),
            config=config,
            metadata=self.ws.metadata,
            artifacts=self.ws.artifacts,
            evaluate_fn=lambda p: {"auc": self.auc(p, regime)},
            on_round=lambda r: (
                marks.append(time.perf_counter() - started),
                log(
                    f"  {regime} round {r.round_num}: AUC {r.metrics['eval_auc']:.4f} ({marks[-1]:.1f} s)"
                ),
            ),
        )
        try:
            run_id = coordinator.start(self.ws.project.id, initial, name=f"demo-{regime}")
            final = coordinator.run(run_id)
        finally:
            transport.close()
        # The first round's mark includes starting the workers (and building the clients).
        return final, time.perf_counter() - started, marks[0]


def run_backend(args: argparse.Namespace, world: FraudWorld, backend: str) -> dict[str, Any]:
    def log(line: str) -> None:
        print(f"[{backend}] {line}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        config = FedloopConfig(project=ProjectConfig(name="demo-budget", dir=f"{tmp}/.fedloop"))
        with open_workspace(config, base=Path(tmp)) as ws:
            budget = _Budget(args, world, ws, backend)
            initial = budget.model().get_parameters()
            old, train_s, train_first_s = budget.train("before", args.rounds, initial, log)
            new, retrain_s, retrain_first_s = budget.train("after", args.retrain_rounds, old, log)
            return {
                "backend": backend,
                "train_s": train_s,
                "train_first_round_s": train_first_s,
                "retrain_s": retrain_s,
                "retrain_first_round_s": retrain_first_s,
                "auc_before": budget.auc(old, "before"),
                "auc_during": budget.auc(old, "after"),
                "auc_recovered": budget.auc(new, "after"),
            }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # the fastest setting for this tiny MLP (as the workers use)
    world = make_world(args.world_seed, args.banks)
    backends = ["local", "inprocess"] if args.backend == "both" else [args.backend]
    results = [run_backend(args, world, b) for b in backends]
    started = time.perf_counter()
    central = central_baseline(
        world,
        "after",
        rows=args.rows,
        epochs=args.central_epochs,
        seed=args.seed,
        test_rows=args.test_rows,
        hidden=[int(h) for h in args.hidden.split(",")],
        lr=args.lr,
        batch_size=args.batch_size,
    )
    central_s = time.perf_counter() - started
    print(
        f"\nrows {args.rows} over {args.banks} banks, rounds {args.rounds}+{args.retrain_rounds}, "
        f"local epochs {args.local_epochs}, MLP 30-{args.hidden.replace(',', '-')}-1, "
        f"test rows {args.test_rows}; central: {args.central_epochs} epochs, {central_s:.1f} s"
    )
    head = ("backend", "train s (1st round)", "retrain s (1st round)", "total s", "AUC before")
    print(" | ".join((*head, "AUC during", "AUC recovered", "AUC central", "gap")))
    for r in results:
        r["auc_central"], r["central_s"] = central, central_s
        r["gap"] = central - r["auc_recovered"]
        print(
            f"{r['backend']} | {r['train_s']:.1f} ({r['train_first_round_s']:.1f}) | "
            f"{r['retrain_s']:.1f} ({r['retrain_first_round_s']:.1f}) | "
            f"{r['train_s'] + r['retrain_s']:.1f} | {r['auc_before']:.4f} | "
            f"{r['auc_during']:.4f} | {r['auc_recovered']:.4f} | {central:.4f} | {r['gap']:+.4f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "results": results}))


if __name__ == "__main__":
    main()
