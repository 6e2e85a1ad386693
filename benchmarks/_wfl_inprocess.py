"""W-FL in one process through fedloop's real coordinator (shared by byzantine_fl.py and dp_cost.py).

The fraud scenario's banks (fraudlike data, Dirichlet(0.5) label skew over clients, MLP
30-64-32-1, SGD lr 0.05, batch 64, one local epoch, seed 0) as in-process clients, the
``Coordinator`` with a SQLite store in a temporary folder (a checkpoint every round, as
``fedloop federated simulate`` does), and the test ROC-AUC after every round.

Not to be confused with ``peers/_wfl.py``, the fedloop-free workload of ``w_fl.py``'s peers.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from fedloop.core import FederatedConfig, resolve
from fedloop.federated.client import Client
from fedloop.federated.coordinator import Coordinator, RoundReport
from fedloop.federated.strategies import Strategy
from fedloop.federated.transports import InProcessTransport
from fedloop.learn import TorchAdapter, mlp
from fedloop.scenarios.fraud.data import make_fraudlike
from fedloop.scenarios.fraud.federated import make_client
from fedloop.store import open_workspace

__all__ = ["make_clients", "run_wfl", "wfl_spec"]

torch.set_num_threads(1)  # as in w_fl.py's peers: the fastest setting for this tiny MLP


def wfl_spec(*, rows: int = 200_000, num_clients: int = 10) -> dict[str, Any]:
    """Return the data spec of W-FL (the keyword arguments of the scenario's ``make_client``)."""
    return {
        "rows": rows,
        "num_clients": num_clients,
        "partition": "dirichlet",
        "alpha": 0.5,
        "seed": 0,
    }


def make_clients(spec: dict[str, Any]) -> dict[str, Client]:
    """Build every bank's client (``bank-000`` ...), each holding only its own rows."""
    ids = [f"bank-{i:03d}" for i in range(spec["num_clients"])]
    return {c: make_client(c, **spec) for c in ids}


@functools.lru_cache(maxsize=1)
def _test_split(rows: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    data = make_fraudlike(rows, seed=seed)
    return data.x_test, data.y_test


def run_wfl(
    strategy: Strategy,
    *,
    spec: dict[str, Any],
    rounds: int,
    clients: dict[str, Client] | None = None,
    clients_per_round: int | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
) -> dict[str, Any]:
    """Run one federated training and return the last round's test AUC and metrics.

    Parameters
    ----------
    strategy : Strategy
        A fresh strategy (the coordinator initializes it).
    spec : dict
        From :func:`wfl_spec`.
    rounds : int
        Rounds to run.
    clients : dict or None
        Client id to client; None builds the honest banks of ``spec``.
    clients_per_round : int or None
        Clients sampled per round (the coordinator's seeded rule); None takes all.
    on_round : callable or None
        Called with each round's report.

    Returns
    -------
    dict
        ``auc`` (test ROC-AUC after the last round), ``seconds`` (the coordinator's run, data
        and clients built before) and ``metrics`` (everything the last round recorded).
    """
    clients = make_clients(spec) if clients is None else clients
    x_test, y_test = _test_split(spec["rows"], spec["seed"])
    evaluator = TorchAdapter(lambda: mlp(30), num_features=30, seed=0)

    def evaluate(weights: Any) -> dict[str, float]:
        evaluator.set_parameters(weights)
        return evaluator.evaluate(x_test, y_test)

    with tempfile.TemporaryDirectory() as tmp:
        config = resolve({"project": {"dir": tmp}}, {}, {}).config
        with open_workspace(config) as ws:
            coordinator = Coordinator(
                InProcessTransport(clients),
                strategy,
                config=FederatedConfig(
                    num_rounds=rounds, clients_per_round=clients_per_round, round_timeout_s=600.0
                ),
                metadata=ws.metadata,
                artifacts=ws.artifacts,
                evaluate_fn=evaluate,
                on_round=on_round,
            )
            started = time.perf_counter()
            run_id = coordinator.start(ws.project.id, evaluator.get_parameters())
            coordinator.run(run_id)
            last = dict(ws.metadata.list_fl_rounds(run_id)[-1].metrics)
    return {"auc": last["eval_auc"], "seconds": time.perf_counter() - started, "metrics": last}
