"""W-FL on fedloop: the real Coordinator, a store in a fresh folder, FedAvg, virtual clients.

Options (``--option key=value``): ``backend`` = ``local`` (process pool, the default) or
``inprocess``; ``workers`` = worker processes of the pool (default: fedloop's default).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wfl
import torch
from fedloop_fl_client import adapter, load, make_client

from fedloop.core import FederatedConfig, FedloopConfig, ProjectConfig
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.simulation import LocalBackend
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import InProcessTransport, Transport
from fedloop.store import open_workspace

torch.set_num_threads(1)  # as in the plain loop: the fastest setting for this tiny MLP


def main() -> None:
    args = _wfl.parse_args(__doc__ or "")
    options = dict(o.split("=", 1) for o in args.option)
    marks = _wfl.Marks()
    data = load(str(args.data))
    ids = [_wfl.client_name(i) for i in range(data.num_clients)]
    transport: Transport
    if options.get("backend", "local") == "local":
        workers = int(options["workers"]) if "workers" in options else None
        transport = LocalBackend(
            "fedloop_fl_client:make_client",
            ids,
            num_workers=workers,
            kwargs={"data": str(args.data)},
        )
    else:
        transport = InProcessTransport({c: make_client(c, data=str(args.data)) for c in ids})
    config = FedloopConfig(
        project=ProjectConfig(name="w-fl", dir=str(args.workdir / ".fedloop")),
        federated=FederatedConfig(
            num_rounds=args.rounds, clients_per_round=args.per_round, seed=_wfl.SEED
        ),
    )
    ws = open_workspace(config, base=args.workdir)
    evaluator = adapter(_wfl.SEED)

    def evaluate(params: object) -> dict[str, float]:
        evaluator.set_parameters(params)  # type: ignore[arg-type]
        return {"auc": _wfl.test_auc(evaluator.module, data.x_test, data.y_test)}

    coordinator = Coordinator(
        transport,
        FedAvg(),
        config=config.federated,
        metadata=ws.metadata,
        artifacts=ws.artifacts,
        evaluate_fn=evaluate,
        on_round=lambda r: marks.round_done(r.metrics["eval_auc"]),
    )
    run_id = coordinator.start(ws.project.id, evaluator.get_parameters(), name="w-fl")
    marks.ready()
    coordinator.run(run_id)
    transport.close()
    ws.close()
    marks.write(args.out, system="fedloop", options=options)


if __name__ == "__main__":
    main()
