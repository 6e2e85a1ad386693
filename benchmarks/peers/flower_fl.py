"""W-FL on Flower's simulation engine (Message API: ServerApp + ClientApp, Ray backend).

Runs in ``.bench-venvs/flower`` (flwr[simulation] + torch CPU). Centralized evaluation after
every round through the strategy's ``evaluate_fn``; no client-side evaluation. Each virtual
client trains with the same loop, seeds and rows as the plain loop (``_wfl.train_local``);
Flower samples clients itself (``random.sample``), so the sampled set differs from the others
at K=100 and K=1000.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wfl
import flwr
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

ARGS = _wfl.parse_args(__doc__ or "")
MARKS = _wfl.Marks()
_DATA: dict[str, _wfl.Data] = {}


def _data() -> _wfl.Data:
    key = str(ARGS.data)
    if key not in _DATA:
        _DATA[key] = _wfl.Data(key)
    return _DATA[key]


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    index = int(context.node_config["partition-id"])
    round_num = int(msg.content["config"].get("server-round", 0))
    model = _wfl.make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = _data().client_rows(index)
    loss = _wfl.train_local(model, x, y, _wfl.client_seed(round_num, index))
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)}),
        }
    )
    return Message(content=content, reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main_server(grid: Grid, context: Context) -> None:
    data = _data()
    k = data.num_clients
    strategy = FedAvg(
        fraction_train=ARGS.per_round / k,
        fraction_evaluate=0.0,
        min_train_nodes=ARGS.per_round,
        min_evaluate_nodes=0,
        min_available_nodes=k,
    )
    evaluator = _wfl.make_model()

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        evaluator.load_state_dict(arrays.to_torch_state_dict())
        auc = _wfl.test_auc(evaluator, data.x_test, data.y_test)
        if server_round == 0:
            MARKS.ready()
        else:
            MARKS.round_done(auc)
        return MetricRecord({"auc": auc})

    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(_wfl.make_model().state_dict()),
        num_rounds=ARGS.rounds,
        evaluate_fn=evaluate,
    )


def main() -> None:
    options = dict(o.split("=", 1) for o in ARGS.option)
    cpus = float(options.get("client_cpus", "1"))
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=_data().num_clients,
        backend_config={"client_resources": {"num_cpus": cpus, "num_gpus": 0.0}},
    )
    MARKS.write(ARGS.out, system="flower", flwr=flwr.__version__, options=options)


if __name__ == "__main__":
    main()
