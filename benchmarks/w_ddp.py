"""W-DDP: data-parallel training with a failure, fedloop vs a plain torchrun script, in one run.

The data (fraudlike, 200k rows, 80/20 split) is written once to an ``.npz`` file; each system
then trains the W-FL MLP on the whole train split (batch 64 per worker, 3 epochs) in a fresh
process tree:

- ``plain``: ``peers/plain_ddp.py`` under ``torch.distributed.run --standalone`` (torchrun), DDP,
  a DistributedSampler and ``torch.save`` snapshots every ``--checkpoint-every`` steps, restarted
  by torchrun (``--max-restarts 3``; ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, without which
  torch 2.13 can hang re-forming the gloo group);
- ``fedloop``: ``peers/fedloop_ddp.py``, i.e. ``fedloop.distributed.train_data_parallel`` with its
  elastic launcher, safetensors checkpoints in a SQLite + file store every as many steps.

Both train the same model on the same batches (same init, sampler seed and SGD). Measured:
samples/s with 1 and 2 workers without a failure (from rank 0's progress samples, every 0.5 s:
steady-state training, start-up excluded; wall time is reported too); then, with 2 workers,
worker 1 is SIGKILLed in epoch 2 (at 1.5 epochs): samples/s before the failure, seconds from
the kill to the restarted group's first step, steps (and epochs) of work lost, final test AUC.
Goals (fedloop): samples/s >= plain / 1.1 at each worker count; recovery < 10 s; final AUC of
the killed run within 0.005 of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
DEFAULT_OUT = HERE / "out" / "w_ddp.json"

sys.path.insert(0, str(PEERS))
import _wddp  # noqa: E402

SYSTEMS = ("plain", "fedloop")
OVERHEAD_GOAL = 1.1
RECOVERY_GOAL_S = 10.0
AUC_TOL = 0.005


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="rows before the 80/20 split")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", default="1,2", help="worker counts for the throughput runs")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument(
        "--kill-at", type=float, default=1.5, help="kill worker 1 after this many epochs"
    )
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--no-kill", action="store_true", help="skip the failure run")
    p.add_argument("--quick", action="store_true", help="smoke run: 20k rows, 2 epochs")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--check", action="store_true", help="exit 1 when a fedloop goal is missed")
    args = p.parse_args(argv)
    if args.quick:  # too short to measure throughput well: it shows that everything runs
        args.rows, args.epochs, args.checkpoint_every = 20_000, 2, 50
    return args


def _command(
    system: str, data: Path, workers: int, args: argparse.Namespace, work: Path
) -> list[str]:
    common = [
        "--data",
        str(data),
        "--epochs",
        str(args.epochs),
        "--checkpoint-every",
        str(args.checkpoint_every),
        "--workdir",
        str(work),
    ]
    if system == "plain":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={workers}",
            "--max-restarts=3",
            "--monitor-interval=0.1",
            str(PEERS / "plain_ddp.py"),
            *common,
        ]
    return [sys.executable, str(PEERS / "fedloop_ddp.py"), "--workers", str(workers), *common]


def _progress(system: str, work: Path) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """Return (progress samples, resumed events) of a finished run, as (time, step)."""
    if system == "fedloop":
        out = json.loads((work / "result.json").read_text())
        return [tuple(p) for p in out["progress"]], [tuple(p) for p in out["resumed"]]  # type: ignore[misc]
    events = [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]
    progress = [(e["t"], e["step"]) for e in events if e["kind"] == "progress"]
    resumed = [(e["t"], e["step"]) for e in events if e["kind"] == "resumed"]
    return progress, resumed


def run(
    system: str,
    data: Path,
    rows: int,
    workers: int,
    args: argparse.Namespace,
    *,
    kill_step: int | None,
) -> dict[str, Any]:
    """Run one system once (killing worker 1 at ``kill_step``); return its measurements."""
    work = Path(tempfile.mkdtemp(prefix=f"w_ddp-{system}-{workers}-"))
    job = work / "job" if system == "fedloop" else work
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env |= {"PYTHONPATH": str(PEERS), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    killed: dict[str, float] = {}
    try:
        with (work / "log.txt").open("wb") as log:
            started = time.time()
            proc = subprocess.Popen(
                _command(system, data, workers, args, work),
                cwd=work,
                env=env,
                stdout=log,
                stderr=log,
            )
            while proc.poll() is None:
                if time.time() - started > args.timeout:
                    proc.kill()
                    raise RuntimeError(f"{system} with {workers} workers ran over {args.timeout} s")
                seen = _wddp.read_step(job / "progress") if kill_step and not killed else None
                if seen is not None and seen[0] >= kill_step and (job / "rank-1.pid").is_file():  # type: ignore[operator]
                    os.kill(int((job / "rank-1.pid").read_text()), signal.SIGKILL)
                    killed = {"t": time.time(), "step": float(seen[0])}
                time.sleep(0.002 if kill_step else 0.05)
            wall = time.time() - started
        if proc.returncode != 0:
            raise RuntimeError(
                f"{system} failed ({proc.returncode}):\n{(work / 'log.txt').read_text()[-4000:]}"
            )
        result = json.loads((work / "result.json").read_text())
        progress, resumed = _progress(system, work)
        rows_per_step = _wddp.BATCH * workers
        out: dict[str, Any] = {
            "wall_s": wall,
            "auc": result["auc"],
            "steps": result["steps"],
            "samples_per_s": _wddp.throughput(progress, rows_per_step, killed.get("t")),
        }
        if killed:
            after = [(t, s) for t, s in resumed if t >= killed["t"]]
            per_epoch = _wddp.steps_per_epoch(rows, workers)
            if after:
                out["recovery_s"] = after[0][0] - killed["t"]
                out["steps_lost"] = killed["step"] - after[0][1]
                out["epochs_lost"] = out["steps_lost"] / per_epoch
            out["killed_at_step"] = killed["step"]
            out["restarts"] = len(after)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    """Run W-DDP for every system and worker count; print tables and write JSON."""
    args = parse_args(argv)
    console = Console(width=150)
    systems = [s for s in args.systems.split(",") if s]
    if unknown := [s for s in systems if s not in SYSTEMS]:
        console.print(f"[red]unknown systems {unknown}; known: {list(SYSTEMS)}[/]")
        return 2
    from fedloop.scenarios.fraud.data import make_fraudlike

    data = make_fraudlike(args.rows, seed=_wddp.SEED)
    rows = len(data.y_train)
    tmp = Path(tempfile.mkdtemp(prefix="w_ddp-data-"))
    path = tmp / "wddp.npz"
    _wddp.write_data(path, data)
    counts = [int(w) for w in args.workers.split(",") if w]
    report: dict[str, Any] = {
        "benchmark": "W-DDP",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "workload": {
            "rows": rows,
            "epochs": args.epochs,
            "batch": _wddp.BATCH,
            "checkpoint_every": args.checkpoint_every,
        },
        "throughput": {},
        "failure": {},
    }
    goals: dict[str, bool] = {}
    try:
        table = Table(
            title=f"W-DDP throughput: {rows} rows x {args.epochs} epochs, batch 64/worker",
            title_justify="left",
            header_style="bold",
        )
        for col in ("system", "workers", "samples/s", "x plain", "wall s", "test AUC"):
            table.add_column(col, justify="left" if col == "system" else "right")
        for workers in counts:
            found: dict[str, dict[str, Any]] = {}
            for system in systems:
                console.print(f"{system}: {workers} worker(s), no failure ...")
                found[system] = run(system, path, rows, workers, args, kill_step=None)
            for system, res in found.items():
                ratio = (
                    found["plain"]["samples_per_s"] / res["samples_per_s"]
                    if "plain" in found
                    else None
                )
                if system == "fedloop" and ratio is not None and ratio == ratio:  # not NaN
                    goals[f"overhead_{workers}w"] = ratio <= OVERHEAD_GOAL
                res["x_plain"] = ratio
                table.add_row(
                    system,
                    str(workers),
                    _fmt(res["samples_per_s"], ",.0f"),
                    _fmt(ratio, ".2f"),
                    _fmt(res["wall_s"], ".1f"),
                    _fmt(res["auc"], ".4f"),
                )
            report["throughput"][str(workers)] = found
        console.print(table)
        if not args.no_kill:
            per_epoch = _wddp.steps_per_epoch(rows, 2)
            kill_step = int(args.kill_at * per_epoch)
            clean = report["throughput"].get("2", {})
            table = Table(
                title=f"W-DDP failure: 2 workers, worker 1 SIGKILLed at step {kill_step} "
                f"(epoch {kill_step // per_epoch + 1}), checkpoint every {args.checkpoint_every}",
                title_justify="left",
                header_style="bold",
            )
            for col in (
                "system",
                "samples/s before",
                "kill -> resumed s",
                "steps lost",
                "epochs lost",
                "restarts",
                "test AUC",
                "AUC vs clean",
            ):
                table.add_column(col, justify="left" if col == "system" else "right")
            for system in systems:
                console.print(f"{system}: 2 workers, worker 1 killed at step {kill_step} ...")
                res = run(system, path, rows, 2, args, kill_step=kill_step)
                delta = res["auc"] - clean[system]["auc"] if system in clean else None
                if system == "fedloop":
                    goals["recovery"] = res.get("recovery_s", float("inf")) < RECOVERY_GOAL_S
                    goals["lost_at_most_one_interval"] = (
                        res.get("steps_lost", 1e9) <= args.checkpoint_every
                    )
                    if delta is not None:
                        goals["auc"] = abs(delta) <= AUC_TOL
                table.add_row(
                    system,
                    _fmt(res["samples_per_s"], ",.0f"),
                    _fmt(res.get("recovery_s"), ".2f"),
                    _fmt(res.get("steps_lost"), ".0f"),
                    _fmt(res.get("epochs_lost"), ".3f"),
                    str(res.get("restarts", 0)),
                    _fmt(res["auc"], ".4f"),
                    _fmt(delta, "+.4f"),
                )
                report["failure"][system] = res
            console.print(table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["goals"] = goals
    console.print(
        "goals (fedloop): " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in goals.items())
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")
    return 1 if args.check and not all(goals.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
