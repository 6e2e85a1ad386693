"""W-FL: federated training, fedloop vs Flower's simulation engine vs a plain loop, in one run.

For each scale (K=10: all clients, 20 rounds; K=100 and K=1000: 10 sampled per round, 10
rounds) the data and the Dirichlet(0.5) split are written once to an ``.npz`` file and every
system trains on it in a fresh process:

- ``limit``: a plain single-process FedAvg loop in torch (``peers/limit_fl.py``);
- ``fedloop``: the real Coordinator with its default process-pool backend, a SQLite store and
  a checkpoint per round (``peers/fedloop_fl.py``);
- ``fedloop-1p``: the same with the in-process backend (coordinator and clients in one process);
- ``flower``: Flower's simulation engine, Message API, Ray backend (``peers/flower_fl.py``,
  in ``.bench-venvs/flower``; ``bash benchmarks/setup_peers.sh flower``).

Measured: total wall seconds from launch to exit; start-up (launch to the end of round 1, less
one median round: the fixed cost, whichever phase pays it); median seconds per round; peak RSS
summed over the process tree (sampled every 50 ms); test ROC-AUC after the last round. Ratios
are against the limit. The start-up goal (< 2 s) is on what a system adds to the limit's own
start-up (Python, importing torch, loading the data, torch's first optimizer): no torch program
starts in under 2 s here, the plain loop included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
DEFAULT_OUT = HERE / "out" / "w_fl.json"
FLOWER_PYTHON = ROOT / ".bench-venvs" / "flower" / "bin" / "python"

sys.path.insert(0, str(PEERS))
import _wfl  # noqa: E402

SYSTEMS: dict[str, tuple[str, list[str]]] = {
    # name -> (worker script, options)
    "limit": ("limit_fl.py", []),
    "fedloop": ("fedloop_fl.py", ["backend=local"]),
    "fedloop-1p": ("fedloop_fl.py", ["backend=inprocess"]),
    "flower": ("flower_fl.py", []),
}
# Goals of the issue, per scale: (max time ratio vs limit).
TIME_GOAL = {10: 1.1, 100: 1.5, 1000: 1.5}
AUC_TOL = 0.002
STARTUP_GOAL_S = 2.0
MEMORY_GOAL = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scales", default="10,100,1000", help="comma-separated K values")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems")
    p.add_argument("--rounds", type=int, default=None, help="override the rounds of every scale")
    p.add_argument("--rows", type=int, default=200_000, help="rows before the 80/20 split")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker process")
    p.add_argument("--check", action="store_true", help="exit 1 when a fedloop goal is missed")
    return p.parse_args(argv)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_system(
    system: str, k: int, data: Path, rounds: int, per_round: int, timeout: float
) -> dict[str, Any]:
    """Run one system on one scale in a fresh process; return its measurements."""
    script, options = SYSTEMS[system]
    python = FLOWER_PYTHON if system == "flower" else Path(sys.executable)
    workdir = Path(tempfile.mkdtemp(prefix=f"w_fl-{system}-{k}-"))
    out = workdir / "result.json"
    cmd = [
        str(python),
        str(PEERS / script),
        "--data",
        str(data),
        "--rounds",
        str(rounds),
        "--per-round",
        str(per_round),
        "--out",
        str(out),
        "--workdir",
        str(workdir),
        *[a for o in options for a in ("--option", o)],
    ]
    env = dict(os.environ, PYTHONPATH=str(PEERS), RAY_DEDUP_LOGS="0")
    env.pop("FEDLOOP_STORE_URL", None)
    log = workdir / "log.txt"
    try:
        with log.open("wb") as sink:
            env["WFL_T0"] = repr(time.time())
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=sink, stderr=sink)
            ps = psutil.Process(proc.pid)
            peak = 0
            while proc.poll() is None:
                peak = max(peak, _tree_rss(ps))
                if time.perf_counter() - t0 > timeout:
                    proc.kill()
                    raise RuntimeError(f"{system} at K={k} ran over {timeout} s")
                time.sleep(0.05)
            wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"{system} at K={k} failed (exit {proc.returncode}):\n{log.read_text()[-4000:]}"
            )
        result: dict[str, Any] = json.loads(out.read_text())
        rounds_s = result["round_s"]
        median = statistics.median(rounds_s)
        result.update(
            total_s=wall,
            median_round_s=median,
            startup_s=result["ready_s"] + rounds_s[0] - median,
            peak_rss_mb=peak / 2**20,
            command=cmd,
        )
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _goals(k: int, res: dict[str, Any], limit: dict[str, Any]) -> dict[str, bool]:
    return {
        "auc": abs(res["final_auc"] - limit["final_auc"]) <= AUC_TOL,
        "time": res["total_s"] <= TIME_GOAL[k] * limit["total_s"],
        "startup": res["startup_s"] - limit["startup_s"] < STARTUP_GOAL_S,
        "memory": res["peak_rss_mb"] <= MEMORY_GOAL * limit["peak_rss_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run W-FL for every scale and system; print a table per scale and write JSON."""
    args = parse_args(argv)
    console = Console(width=150)
    scales = [int(s) for s in args.scales.split(",")]
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        console.print(f"[red]unknown systems {unknown}; known: {list(SYSTEMS)}[/]")
        return 2
    if "flower" in systems and not FLOWER_PYTHON.exists():
        console.print(
            "[yellow]Flower is not set up (bash benchmarks/setup_peers.sh flower); skipping it.[/]"
        )
        systems.remove("flower")
    if "limit" not in systems:
        systems.insert(0, "limit")
    from fedloop.scenarios.fraud.data import make_fraudlike

    data = make_fraudlike(args.rows, seed=_wfl.SEED)
    tmp = Path(tempfile.mkdtemp(prefix="w_fl-data-"))
    report: dict[str, Any] = {
        "benchmark": "W-FL",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "scales": {},
    }
    all_met = True
    try:
        for k in scales:
            per_round, rounds = _wfl.SCALES.get(k, (10, 10))
            rounds = args.rounds or rounds
            per_round = min(per_round, k)
            path = tmp / f"wfl_{k}.npz"
            _wfl.write_data(path, data, k)
            results: dict[str, dict[str, Any]] = {}
            for system in systems:
                console.print(f"K={k}: running {system} ({rounds} rounds) ...")
                results[system] = run_system(system, k, path, rounds, per_round, args.timeout)
            limit = results["limit"]
            table = Table(
                title=f"W-FL, K={k}, {per_round} clients per round, {rounds} rounds",
                title_justify="left",
                header_style="bold",
            )
            for col in (
                "system",
                "total s",
                "x limit",
                "start-up s (+ vs limit)",
                "median round s",
                "peak RSS MB",
                "x limit",
                "test AUC",
                "goals (auc/time/start/mem)",
            ):
                table.add_column(col, justify="right" if col != "system" else "left")
            scale_out: dict[str, Any] = {"rounds": rounds, "per_round": per_round, "systems": {}}
            for system, res in results.items():
                goals = _goals(k, res, limit) if system.startswith("fedloop") else {}
                if system == "fedloop" or system == "fedloop-1p":
                    res["goals"] = goals
                    all_met = all_met and all(goals.values())
                marks = "/".join("yes" if v else "NO" for v in goals.values()) if goals else ""
                table.add_row(
                    system,
                    f"{res['total_s']:.2f}",
                    f"{res['total_s'] / limit['total_s']:.2f}",
                    f"{res['startup_s']:.2f} (+{res['startup_s'] - limit['startup_s']:.2f})",
                    f"{res['median_round_s']:.3f}",
                    f"{res['peak_rss_mb']:.0f}",
                    f"{res['peak_rss_mb'] / limit['peak_rss_mb']:.2f}",
                    f"{res['final_auc']:.4f}",
                    marks,
                )
                scale_out["systems"][system] = {
                    k2: v for k2, v in res.items() if k2 not in ("launch",)
                }
            console.print(table)
            report["scales"][str(k)] = scale_out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")
    return 1 if args.check and not all_met else 0


if __name__ == "__main__":
    raise SystemExit(main())
