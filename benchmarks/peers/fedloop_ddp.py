"""W-DDP on fedloop: ``train_data_parallel`` (elastic launch, DDP workers, store checkpoints).

Run with the project's interpreter: ``fedloop_ddp.py --data D --epochs E --workers N
--checkpoint-every C --workdir W``. The job folder (step file, pid files, logs) is ``W/job``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wddp

from fedloop.core import resolve
from fedloop.distributed import train_data_parallel
from fedloop.learn import mlp_adapter
from fedloop.store import open_workspace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--checkpoint-every", type=int, required=True)
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args()
    config = resolve(
        {
            "project": {"name": "w-ddp", "dir": str(args.workdir / ".fedloop")},
            "distributed": {
                "workers": args.workers,
                "checkpoint_every_steps": args.checkpoint_every,
                "max_restarts": 3,
            },
        },
        {},
        {},
    ).config
    data = _wddp.load(args.data)
    kwargs = {
        "num_features": 30,
        "hidden": list(_wddp.HIDDEN),
        "lr": _wddp.LR,
        "batch_size": _wddp.BATCH,
        "seed": _wddp.SEED,
    }
    started = time.time()
    with open_workspace(config) as ws:
        result = train_data_parallel(
            ws,
            config.distributed,
            adapter="fedloop.learn:mlp_adapter",
            adapter_kwargs=kwargs,
            x=data["x_train"],
            y=data["y_train"],
            epochs=args.epochs,
            name="w-ddp",
            work_dir=args.workdir / "job",
        )
        history = ws.metadata.get_metric_history(result.run_id, "step")
        resumed = ws.metadata.get_metric_history(result.run_id, "resumed_from_step")
    model = mlp_adapter(**kwargs)
    model.set_parameters(result.weights)
    out = {
        "steps": result.steps,
        "restarts": result.restarts,
        "steps_lost": result.steps_lost,
        "auc": _wddp.auc(model.predict_proba(data["x_test"]), data["y_test"]),
        "progress": [(p.timestamp_ms / 1000, p.step) for p in history],
        "resumed": [(p.timestamp_ms / 1000, int(p.value)) for p in resumed],
        "driver_s": time.time() - started,
    }
    (args.workdir / "result.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
