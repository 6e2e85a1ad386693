"""W-FL limit: a plain single-process FedAvg loop in torch (no framework, no store)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wfl
import torch

torch.set_num_threads(1)  # the fastest setting for this tiny MLP (and what the others use)


def main() -> None:
    args = _wfl.parse_args(__doc__ or "")
    marks = _wfl.Marks()
    data = _wfl.Data(args.data)
    model = _wfl.make_model()
    global_state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    marks.ready()
    for round_num in range(1, args.rounds + 1):
        states, weights = [], []
        for i in _wfl.select(data.num_clients, args.per_round, round_num):
            model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in global_state.items()})
            x, y = data.client_rows(i)
            _wfl.train_local(model, x, y, _wfl.client_seed(round_num, i))
            states.append({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
            weights.append(len(y))
        global_state = _wfl.fedavg(states, weights)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in global_state.items()})
        marks.round_done(_wfl.test_auc(model, data.x_test, data.y_test))
    marks.write(args.out, system="limit", torch=torch.__version__)


if __name__ == "__main__":
    main()
