"""W-DRIFT: drift detection, fedloop vs scipy's ks_2samp (the limit) vs Evidently, in one run.

The data is built once (``peers/_wdrift.py``, whose docstring gives the construction) and
written to an ``.npz`` file; each system then runs in a fresh process, one after the other:

- ``fedloop`` (``peers/fedloop_drift.py``, this venv): a reference profile built from the 100k
  reference rows and stored as bytes (untimed; its build time is reported); timed: read and
  decode it, ``profile_like`` on the 100k current rows, ``check_drift``;
- ``scipy`` (``peers/scipy_drift.py``, this venv): ``ks_2samp`` per feature on the raw rows at
  alpha 0.05, as a user would write it; the row ``scipy+bonf`` is the same run read with a
  Bonferroni correction (alpha / 30);
- ``evidently`` (``peers/evidently_drift.py``, ``.bench-venvs/evidently``; set up with
  ``bash benchmarks/setup_peers.sh evidently``): the default ``DataDriftPreset`` on DataFrames.

Every system answers three questions: which of the 30 features drift in the drifted current
(expect exactly 0-3), which drift in the same-distribution current (expect none), and how many
features it flags, on average, in 1k-vs-1k checks of unchanged data (false flags). Times are
the median of ``--repeats`` checks (Evidently: one). Ratios are against scipy.

Goals (issue 5, for fedloop): a check of a stored reference against 100k current rows in
<= 0.3 s; exactly features 0-3 flagged; 0 of 30 flagged on same-distribution data at 100k rows;
<= 0.05 false features per 1k-vs-1k check on average over 100 trials; data-set verdict "drift".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
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
VENVS = ROOT / ".bench-venvs"
DEFAULT_OUT = HERE / "out" / "w_drift.json"

sys.path.insert(0, str(PEERS))
import _wdrift  # noqa: E402

# name -> (worker script, interpreter, how to set it up)
SYSTEMS: dict[str, tuple[str, Path, str]] = {
    "fedloop": ("fedloop_drift.py", Path(sys.executable), ""),
    "scipy": ("scipy_drift.py", Path(sys.executable), ""),
    "evidently": (
        "evidently_drift.py",
        VENVS / "evidently" / "bin" / "python",
        "bash benchmarks/setup_peers.sh evidently",
    ),
}
FEDLOOP_API = (
    "from fedloop.learn import profile_columns, profile_like, encode_profile, decode_profile;"
    " from fedloop.monitoring import check_drift"
)
# Goals of the issue (for fedloop).
GOAL_CHECK_S = 0.3
GOAL_FLAGGED = list(_wdrift.DRIFTED)
GOAL_MEAN_FALSE = 0.05
GOAL_VERDICT = "drift"
# Seconds the Evidently trials may take (about 2 s per 1k-vs-1k check here).
EVIDENTLY_TRIAL_BUDGET_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems")
    p.add_argument("--trials", type=int, default=_wdrift.TRIALS, help="1k-vs-1k trials")
    p.add_argument("--rows", type=int, default=_wdrift.ROWS, help="rows of reference and current")
    p.add_argument("--repeats", type=int, default=3, help="timed 100k checks (Evidently: 1)")
    p.add_argument(
        "--evidently-trial-budget-s",
        type=float,
        default=EVIDENTLY_TRIAL_BUDGET_S,
        help="stop Evidently's trials after this many seconds (0: run them all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20k rows, 5 trials, 1 repeat, 10 s of Evidently trials",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker process")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--check", action="store_true", help="exit 1 when a fedloop goal is missed")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.trials, args.repeats = 20_000, 5, 1
        args.evidently_trial_budget_s = 10.0
    return args


def fedloop_available() -> tuple[bool, str]:
    """Return whether this checkout has the profile and drift API the fedloop worker uses."""
    proc = subprocess.run(
        [sys.executable, "-c", FEDLOOP_API], capture_output=True, text=True, check=False
    )
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode == 0, last


def run_system(
    system: str, data: Path, work: Path, args: argparse.Namespace, console: Console
) -> dict[str, Any]:
    """Run one system's worker in a fresh process; return its JSON line plus wall and CPU time."""
    script, python, _ = SYSTEMS[system]
    workdir = work / system
    workdir.mkdir()
    cmd = [
        str(python),
        str(PEERS / script),
        "--data",
        str(data),
        "--workdir",
        str(workdir),
        "--trials",
        str(args.trials),
        "--repeats",
        str(1 if system == "evidently" else args.repeats),
    ]
    if system == "evidently":
        cmd += ["--trial-budget-s", str(args.evidently_trial_budget_s)]
    env = dict(os.environ, PYTHONPATH=str(PEERS))
    env.pop("FEDLOOP_STORE_URL", None)
    console.print(f"running {system} ...")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=args.timeout,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (workdir / "stderr.txt").write_text(proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{system} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result["process"] = {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "command": cmd,
    }
    return result


def bonferroni_view(scipy: dict[str, Any]) -> dict[str, Any]:
    """Return the scipy result read with a Bonferroni correction (the same run, same times)."""
    out = json.loads(json.dumps(scipy))
    out["system"] = "scipy+bonf"
    for part in ("drifted", "same"):
        out[part]["flagged"] = scipy[part]["flagged_bonferroni"]
    out["trials"]["false_flags"] = scipy["trials"]["false_flags_bonferroni"]
    out["trials"]["mean_false"] = scipy["trials"]["mean_false_bonferroni"]
    return out


def goals(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return each goal's measured value and whether it is met."""
    verdict = res["drifted"].get("verdict")
    mean_false = res["trials"]["mean_false"]
    return {
        "check_s": {
            "target": f"<= {GOAL_CHECK_S} s",
            "value": res["drifted"]["check_s"],
            "met": res["drifted"]["check_s"] <= GOAL_CHECK_S,
        },
        "flagged": {
            "target": "exactly 0-3",
            "value": res["drifted"]["flagged"],
            "met": res["drifted"]["flagged"] == GOAL_FLAGGED,
        },
        "same_flags": {
            "target": "0 of 30",
            "value": len(res["same"]["flagged"]),
            "met": not res["same"]["flagged"],
        },
        "mean_false_1k": {
            "target": f"<= {GOAL_MEAN_FALSE} (over {res['trials']['n']} trials)",
            "value": mean_false,
            "met": mean_false is not None and mean_false <= GOAL_MEAN_FALSE,
        },
        "verdict": {
            "target": f'"{GOAL_VERDICT}"',
            "value": verdict,
            "met": verdict == GOAL_VERDICT,
        },
    }


def _features(flags: list[int]) -> str:
    return ",".join(map(str, flags)) if flags else "none"


def _cell(goal: dict[str, Any]) -> str:
    value = goal["value"]
    if isinstance(value, float):
        text = f"{value:.3f}"
    elif isinstance(value, list):
        text = _features(value)
    else:
        text = "-" if value is None else str(value)
    return f"{text} [green]yes[/]" if goal["met"] else f"{text} [red]NO[/]"


def print_tables(console: Console, results: dict[str, dict[str, Any]], rows: int) -> None:
    """Print the results table and the goals table."""
    scipy_s = results["scipy"]["drifted"]["check_s"] if "scipy" in results else None
    table = Table(
        title=f"W-DRIFT: 30 features, {rows:,} reference rows vs {rows:,} current rows",
        title_justify="left",
        header_style="bold",
    )
    for col in (
        "system",
        "check s",
        "x scipy",
        "flagged (drifted)",
        "exactly 0-3",
        "verdict (drifted)",
        "flagged (same dist.)",
        "verdict (same)",
        "1k: mean false flags (trials)",
        "1k check s",
    ):
        table.add_column(col, justify="left" if col == "system" else "right")
    for name, res in results.items():
        d, s, t = res["drifted"], res["same"], res["trials"]
        ratio = d["check_s"] / scipy_s if scipy_s else None
        trials = f"{t['mean_false']:.2f} ({t['n']})" if t["mean_false"] is not None else "-"
        table.add_row(
            name,
            f"{d['check_s']:.3f}",
            f"{ratio:.3f}" if ratio is not None else "-",
            _features(d["flagged"]),
            "yes" if d["flagged"] == GOAL_FLAGGED else "NO",
            d.get("verdict", "-"),
            _features(s["flagged"]),
            s.get("verdict", "-"),
            trials,
            f"{t['median_check_s']:.4f}" if t["median_check_s"] is not None else "-",
        )
    console.print(table)

    gtable = Table(
        title="W-DRIFT goals (issue 5; they are fedloop's, the peers are shown for reference)",
        title_justify="left",
        header_style="bold",
    )
    gtable.add_column("goal", justify="left")
    gtable.add_column("target", justify="left")
    for name in results:
        gtable.add_column(name, justify="right")
    per_system = {name: goals(res) for name, res in results.items()}
    labels = {
        "check_s": "stored reference vs current rows, s",
        "flagged": "features flagged (drifted)",
        "same_flags": "features flagged (same distribution)",
        "mean_false_1k": "false flags per 1k-vs-1k check",
        "verdict": "data-set verdict (drifted)",
    }
    for key, label in labels.items():
        target = next(iter(per_system.values()))[key]["target"] if per_system else ""
        gtable.add_row(label, target, *[_cell(per_system[name][key]) for name in results])
    console.print(gtable)


def main(argv: list[str] | None = None) -> int:
    """Build the data, run every system, print the tables and write JSON."""
    args = parse_args(argv)
    console = Console(width=170)
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        console.print(f"[red]unknown systems {unknown}; known: {list(SYSTEMS)}[/]")
        return 2
    skipped: dict[str, str] = {}
    for name in systems:
        _, python, setup = SYSTEMS[name]
        if not python.exists():
            skipped[name] = f"not set up ({setup})"
    if "fedloop" in systems and "fedloop" not in skipped:
        ok, why = fedloop_available()
        if not ok:
            skipped["fedloop"] = f"the profile/drift API is not in this checkout: {why}"
    for name, why in skipped.items():
        console.print(f"[yellow]skipping {name}: {why}[/]")
    systems = [s for s in systems if s not in skipped]

    work = Path(tempfile.mkdtemp(prefix="w_drift-"))
    report: dict[str, Any] = {
        "benchmark": "W-DRIFT",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "skipped": skipped,
        "failed": {},
        "systems": {},
    }
    results: dict[str, dict[str, Any]] = {}
    try:
        t0 = time.perf_counter()
        data = work / "wdrift.npz"
        report["data"] = _wdrift.build(data, rows=args.rows, trials=args.trials)
        console.print(
            f"data: {args.rows:,} reference + {args.rows:,} current rows, {args.trials} 1k-vs-1k"
            f" trials ({time.perf_counter() - t0:.1f} s); current = {report['data']['current']}"
        )
        for name in systems:
            try:
                results[name] = run_system(name, data, work, args, console)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                console.print(f"[red]{name} failed:[/] {err}")
                report["failed"][name] = str(err)[-4000:]
        if "scipy" in results:
            ordered = {}
            for name, res in results.items():
                ordered[name] = res
                if name == "scipy":
                    ordered["scipy+bonf"] = bonferroni_view(res)
            results = ordered
        if results:
            print_tables(console, results, args.rows)
        if args.quick:
            console.print(
                "[yellow]--quick: smaller data and fewer trials; not the W-DRIFT workload[/]"
            )
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    for name, res in results.items():
        res["goals"] = goals(res)
        report["systems"][name] = res
    met = "fedloop" in results and all(g["met"] for g in results["fedloop"]["goals"].values())
    report["fedloop_goals_met"] = met if "fedloop" in results else None
    if "fedloop" not in results:
        console.print("[yellow]fedloop was not measured: no goal checked[/]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())
