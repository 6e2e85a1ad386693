"""The AUC cost of client-level differential privacy on W-FL (issue 7, point 5, DP half).

fedloop's ``DPFedAvg`` (clip each client's update to L2 norm C, average over the n clients of a
round, add Gaussian noise of std z*C/n, RDP accountant) through the real coordinator with the
in-process transport, against the same run with plain FedAvg. For each target epsilon (1, 3, 8
at delta 1e-5, DPFedAvg's default) the noise multiplier z is the smallest (bisection on the
project's ``PrivacyAccountant``) whose epsilon after the run's rounds is at or just under the
target; the strategy is also given that target, so it would refuse an overspending round. Each
target runs with a fixed clip (the median update norm of a non-private round-1 probe) and with
adaptive clipping (Andrew et al.: the clip tracks the median update norm, starting from the
same value), over a few noise seeds (the data, model and client training seeds stay W-FL's).
A DPFedAvg run without noise (z = 0, the fixed clip) separates what clipping and uniform
weighting cost from what the noise costs. A run whose model blows up (NaN loss, which the
store refuses, failing the run) is counted as diverged and left out of the mean.

Setups: W-FL itself (K=10 banks, all every round, 20 rounds) and, because 10 clients per round
cannot hide one client behind noise the model survives, a variant with 10x the banks (K=100,
all every round, 20 rounds; same data, model and optimizer).

    .venv/bin/python benchmarks/dp_cost.py            # ~11 minutes on 2 cores (40 runs)
    .venv/bin/python benchmarks/dp_cost.py --quick    # a smoke run (~15 s)
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from _wfl_inprocess import make_clients, run_wfl, wfl_spec
from fedloop.core import InvalidInput
from fedloop.federated.coordinator import RoundReport
from fedloop.federated.messages import FitIns
from fedloop.federated.privacy import PrivacyAccountant, split_noise_multiplier, update_norm
from fedloop.federated.strategies import DPFedAvg, make_strategy
from fedloop.learn import TorchAdapter, mlp

OUT = Path(__file__).parent / "out" / "dp_cost.json"
DELTA = 1e-5  # DPFedAvg's default target_delta; below 1/K for every K here
# (label, clients K, clients per round n or None for all, rounds)
SETUPS: dict[str, tuple[str, int, int | None, int]] = {
    "wfl": ("W-FL K=10, all 10 per round", 10, None, 20),
    "k100": ("K=100, all 100 per round", 100, None, 20),
}


def calibrate_noise(target_epsilon: float, *, q: float, rounds: int, delta: float) -> float:
    """Return the smallest noise multiplier whose epsilon after ``rounds`` is <= the target.

    Bisection (on a log scale) with the accountant DPFedAvg charges: ``rounds`` Poisson-
    subsampled Gaussian mechanisms ``(q, z)``, RDP, at ``delta``.
    """

    def epsilon(z: float) -> float:
        accountant = PrivacyAccountant()
        accountant.spend(sampling_probability=q, noise_multiplier=z, rounds=rounds)
        return accountant.epsilon(delta)

    lo, hi = 1e-2, 1e3
    if epsilon(hi) > target_epsilon:
        raise ValueError(f"epsilon {target_epsilon} needs a noise multiplier above {hi}")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if epsilon(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-6:
            break
    return hi


def probe_clip(spec: dict[str, Any]) -> dict[str, float]:
    """Return the update norms of one non-private round from the initial model (median = clip).

    This looks at the clients' data without privacy; a deployment would pick C on public or
    proxy data, or use adaptive clipping, which needs no probe.
    """
    initial = TorchAdapter(lambda: mlp(30), num_features=30, seed=0).get_parameters()
    norms = []
    for client in make_clients(spec).values():
        res = client.fit(FitIns(1, initial, {"local_epochs": 1}))
        delta = OrderedDict(
            (k, res.parameters[k].astype(np.float64) - v.astype(np.float64))
            for k, v in initial.items()
        )
        norms.append(update_norm(delta))
    return {
        "median": float(np.median(norms)),
        "min": float(np.min(norms)),
        "max": float(np.max(norms)),
    }


def count_stddev(n: int, z: float) -> float:
    """Return the noise on the unclipped count for adaptive clipping.

    Andrew et al.'s ``n / 20`` only fits while ``2 * sigma_b > z`` (DPFedAvg refuses otherwise);
    beyond that ``sigma_b = z`` leaves the model a multiplier of ``z * 2 / sqrt(3)`` (15% more
    noise than with fixed clipping at the same epsilon).
    """
    return max(n / 20, z)


def _dp_strategy(
    z: float,
    clip: float,
    *,
    n: int,
    q: float,
    adaptive: bool,
    target: float | None,
    seed: int,
) -> DPFedAvg:
    params: dict[str, Any] = {
        "noise_multiplier": z,
        "clip_norm": clip,
        "expected_clients_per_round": n,
        "sampling_probability": q,
        "target_epsilon": target,
        "target_delta": DELTA,
        "seed": seed,
    }
    if adaptive:
        params |= {
            "adaptive_clipping": True,
            "target_quantile": 0.5,
            "clip_learning_rate": 0.2,
            "clipped_count_stddev": count_stddev(n, z),
        }
    return DPFedAvg(**params)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of the test AUC over the runs that finished (diverged runs are counted)."""
    aucs = [r["auc"] for r in runs if r["auc"] is not None]
    return {
        "auc_mean": statistics.fmean(aucs) if aucs else None,
        "auc_std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
        "diverged": len(runs) - len(aucs),
        "runs": runs,
    }


def run_setup(
    key: str, *, rows: int, rounds: int | None, epsilons: list[float], seeds: int, console: Console
) -> dict[str, Any]:
    """Run the no-DP baseline, the no-noise DPFedAvg and every (epsilon, clipping, seed)."""
    label, k, per_round, default_rounds = SETUPS[key]
    rounds = rounds or default_rounds
    n = per_round or k
    q = n / k
    spec = wfl_spec(rows=rows, num_clients=k)
    clients = make_clients(spec)
    probe = probe_clip(spec)
    clip = probe["median"]
    console.print(
        f"[bold]{label}[/], {rounds} rounds: clip C = {clip:.4f} (median round-1 update norm; "
        f"range {probe['min']:.3f}-{probe['max']:.3f})"
    )

    def run(name: str, strategy: Any) -> dict[str, Any]:
        reports: list[RoundReport] = []
        try:
            r = run_wfl(
                strategy,
                spec=spec,
                rounds=rounds,
                clients=clients,
                clients_per_round=per_round,
                on_round=reports.append,
            )
        except InvalidInput as err:
            # A run whose model blows up (NaN client loss) is refused at its checkpoint: the
            # coordinator marks it failed. Record it as diverged, with the last good round.
            last = reports[-1].metrics if reports else {}
            console.print(f"  {name}: [red]diverged[/] after round {len(reports)}: {err}")
            return {
                "auc": None,
                "diverged_after_round": len(reports),
                "last_auc": last.get("eval_auc"),
                "epsilon": last.get("dp_epsilon"),
                "final_clip": last.get("dp_clip_norm"),
                "error": str(err),
            }
        m = r["metrics"]
        console.print(f"  {name}: AUC {r['auc']:.4f}  ({r['seconds']:.0f} s)")
        return {
            "auc": r["auc"],
            "seconds": r["seconds"],
            "epsilon": m.get("dp_epsilon"),
            "final_clip": m.get("dp_clip_norm"),
        }

    rows_out: list[dict[str, Any]] = []
    base = run("FedAvg (no DP)", make_strategy("fedavg"))
    rows_out.append({"run": "FedAvg, no DP", "mode": "none", **_summary([base])})
    clip_only = run(
        "DPFedAvg z=0 (clip only)",
        _dp_strategy(0.0, clip, n=n, q=q, adaptive=False, target=None, seed=0),
    )
    rows_out.append(
        {"run": "DPFedAvg, clip only (z=0)", "mode": "fixed", "clip": clip, **_summary([clip_only])}
    )
    for eps in epsilons:
        z = calibrate_noise(eps, q=q, rounds=rounds, delta=DELTA)
        for adaptive in (False, True):
            mode = "adaptive" if adaptive else "fixed"
            runs = [
                run(
                    f"eps {eps:g} {mode} seed {s}",
                    _dp_strategy(z, clip, n=n, q=q, adaptive=adaptive, target=eps, seed=s),
                )
                for s in range(seeds)
            ]
            rows_out.append(
                {
                    "run": f"DPFedAvg, {mode} clip",
                    "mode": mode,
                    "target_epsilon": eps,
                    "epsilon": max(
                        (r["epsilon"] for r in runs if r["auc"] is not None), default=None
                    ),
                    "noise_multiplier": z,
                    # The std of the noise on each coordinate of the averaged update in round 1
                    # (adaptive: the model's share of z, and C moves afterwards).
                    "model_noise_std": (
                        split_noise_multiplier(z, count_stddev(n, z)) if adaptive else z
                    )
                    * clip
                    / n,
                    "clip": clip,
                    "final_clip_mean": _mean(
                        [r["final_clip"] for r in runs if r["auc"] is not None]
                    ),
                    **_summary(runs),
                }
            )
    for r in rows_out:
        r["auc_cost"] = None if r["auc_mean"] is None else base["auc"] - r["auc_mean"]
    return {
        "label": label,
        "clients": k,
        "clients_per_round": n,
        "sampling_probability": q,
        "rounds": rounds,
        "rows": rows,
        "delta": DELTA,
        "clip_probe": probe,
        "results": rows_out,
    }


def _table(setup: dict[str, Any], seeds: int) -> Table:
    table = Table(
        title=f"{setup['label']}, {setup['rounds']} rounds, delta {setup['delta']:g} "
        f"(AUC: mean ± std over {seeds} noise seed(s))"
    )
    for column in (
        "run",
        "ε target",
        "ε achieved",
        "z",
        "noise std r1",
        "clip C",
        "test AUC",
        "vs no DP",
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    for r in setup["results"]:
        eps = r.get("target_epsilon")
        clip = ""
        if "clip" in r:
            clip = f"{r['clip']:.4g}"
            if r["mode"] == "adaptive" and r["final_clip_mean"] is not None:
                clip += f" → {r['final_clip_mean']:.4g}"
        auc = "" if r["auc_mean"] is None else f"{r['auc_mean']:.4f}"
        if len(r["runs"]) - r["diverged"] > 1:
            auc += f" ± {r['auc_std']:.4f}"
        if r["diverged"]:
            auc += f" ({r['diverged']}/{len(r['runs'])} diverged)"
        finished = r["auc_cost"] is not None
        epsilon = "∞" if r["mode"] != "none" and eps is None else ""
        if r.get("epsilon") is not None:
            epsilon = f"{r['epsilon']:.4f}"
        table.add_row(
            r["run"],
            f"{eps:g}" if eps is not None else "",
            epsilon,
            f"{r['noise_multiplier']:.3f}" if eps is not None else "",
            f"{r['model_noise_std']:.3g}" if eps is not None else "",
            clip,
            auc,
            f"{-r['auc_cost']:+.4f}" if r["mode"] != "none" and finished else "",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 20k rows, 3 rounds, 1 seed"
    )
    parser.add_argument("--setups", default="wfl,k100", help="comma list of: wfl, k100")
    parser.add_argument("--epsilons", default="1,3,8", help="target epsilons, comma list")
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds per DP row")
    parser.add_argument("--rounds", type=int, default=None, help="override every setup's rounds")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON output path")
    args = parser.parse_args()
    rows, rounds, seeds = (20_000, 3, 1) if args.quick else (200_000, args.rounds, args.seeds)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # a log file: keep the table on one line per row
    started = time.perf_counter()
    started_utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    setups = [
        run_setup(key, rows=rows, rounds=rounds, epsilons=epsilons, seeds=seeds, console=console)
        for key in args.setups.split(",")
    ]
    for setup in setups:
        console.print(_table(setup, seeds))
    wall = time.perf_counter() - started
    console.print(f"total {wall:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(
        [".venv/bin/python", "benchmarks/dp_cost.py", *map(shlex.quote, sys.argv[1:])]
    )
    args.out.write_text(
        json.dumps(
            {
                "command": command,
                "started_utc": started_utc,
                "seeds": seeds,
                "wall_seconds": wall,
                "setups": setups,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
