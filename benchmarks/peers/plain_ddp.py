"""W-DDP, the plain way: a torchrun script with DDP, a DistributedSampler and torch.save snapshots.

Run as ``python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts 3
plain_ddp.py --data D --epochs E --checkpoint-every C --workdir W``. Rank 0 saves a snapshot
(model, optimizer, step) every C steps and a restarted group resumes from it: the pattern of
PyTorch's elastic training tutorial, with the same checkpoint interval as fedloop.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wddp
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--checkpoint-every", type=int, required=True)
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    (args.workdir / f"rank-{rank}.pid").write_text(str(os.getpid()))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    dist.init_process_group("gloo")

    data = _wddp.load(args.data)
    x = torch.from_numpy(np.ascontiguousarray(data["x_train"], dtype=np.float32))
    y = torch.from_numpy(data["y_train"].astype(np.float32))
    torch.manual_seed(_wddp.SEED)
    widths = (30, *_wddp.HIDDEN)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
    opt = torch.optim.SGD(model.parameters(), lr=_wddp.LR)
    snapshot = args.workdir / "snapshot.pt"
    step = 0
    if snapshot.exists():
        state = torch.load(snapshot, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    ddp = DistributedDataParallel(model)
    per_epoch = _wddp.steps_per_epoch(len(y), world)
    sampler = DistributedSampler(range(len(y)), num_replicas=world, rank=rank, seed=_wddp.SEED)  # type: ignore[arg-type]
    loss_fn = nn.BCEWithLogitsLoss()
    events = args.workdir / "events.jsonl"
    fd = os.open(args.workdir / "progress", os.O_RDWR | os.O_CREAT) if rank == 0 else None
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

    def event(**fields: object) -> None:
        with events.open("a") as out:
            out.write(json.dumps({"t": time.time(), **fields}) + "\n")

    if rank == 0:
        event(kind="resumed" if restart else "start", step=step, restart=restart)
    next_report = time.monotonic() + 0.5
    epoch, pos = divmod(step, per_epoch)
    while epoch < args.epochs:
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        for b in range(pos, per_epoch):
            idx = order[b * _wddp.BATCH : (b + 1) * _wddp.BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(x[idx]).reshape(-1), y[idx])
            loss.backward()
            opt.step()
            loss.item()
            step += 1
            if fd is not None:
                os.pwrite(fd, _wddp.STEP_RECORD.pack(step, epoch, time.time()), 0)
                if time.monotonic() >= next_report:
                    event(kind="progress", step=step)
                    next_report = time.monotonic() + 0.5
                if step % args.checkpoint_every == 0:
                    tmp = snapshot.with_suffix(".tmp")
                    torch.save(
                        {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step},
                        tmp,
                    )
                    os.replace(tmp, snapshot)
        epoch, pos = epoch + 1, 0
    if rank == 0:
        event(kind="progress", step=step)
        model.eval()
        with torch.no_grad():
            scores = torch.sigmoid(model(torch.from_numpy(data["x_test"]))).reshape(-1).numpy()
        result = {
            "steps": step,
            "auc": _wddp.auc(scores, data["y_test"]),
            "torch": torch.__version__,
        }
        (args.workdir / "result.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
