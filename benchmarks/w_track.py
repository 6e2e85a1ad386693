"""W-TRACK: experiment-tracking throughput and search latency, fedloop vs MLflow, in one run."""

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

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
MLFLOW_PYTHON = ROOT / ".bench-venvs" / "mlflow" / "bin" / "python"
DEFAULT_OUT = HERE / "out" / "w_track.json"

# (label, path in a worker result, unit, higher is better)
METRICS: list[tuple[str, tuple[str, str], str, bool]] = [
    ("start-up: import", ("startup", "import_s"), "s", False),
    ("start-up: open store (fresh DB)", ("startup", "open_s"), "s", False),
    ("start-up: total", ("startup", "total_s"), "s", False),
    ("points/s, one call each", ("points_one_call", "points_per_s"), "pts/s", True),
    ("points/s, batch API (1000/call)", ("points_batch", "points_per_s"), "pts/s", True),
    ("runs created/s (10 params + 10 metrics)", ("runs", "runs_per_s"), "runs/s", True),
    ("search runs by metric, median", ("search", "median_ms"), "ms", False),
]

GOALS: dict[tuple[str, str], tuple[str, str, float]] = {
    # path -> (description, kind, threshold); kind "ratio": fedloop/mlflow >= threshold,
    # kind "max": fedloop value < threshold.
    ("points_one_call", "points_per_s"): (">= 10x MLflow", "ratio", 10.0),
    ("runs", "runs_per_s"): (">= 10x MLflow", "ratio", 10.0),
    ("search", "median_ms"): ("< 50 ms", "max", 50.0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str or None
        Arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    argparse.Namespace
        The options.
    """
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=1, help="fresh processes per system (median)")
    p.add_argument("--points", type=int, default=10_000, help="fedloop points, one call each")
    p.add_argument(
        "--mlflow-points",
        type=int,
        default=None,
        help="MLflow points, one call each (default: --points); a rate is reported either way",
    )
    p.add_argument("--batch-points", type=int, default=10_000, help="points via the batch API")
    p.add_argument("--batch-size", type=int, default=1_000, help="points per batch call (<=1000)")
    p.add_argument("--runs", type=int, default=1_000, help="runs created (and searched)")
    p.add_argument("--search-repeats", type=int, default=20, help="timed searches after a warm-up")
    p.add_argument("--seed", type=int, default=0, help="seed of the run values")
    p.add_argument("--no-mlflow", action="store_true", help="measure fedloop only")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    p.add_argument("--keep", action="store_true", help="keep the temporary databases")
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker process")
    return p.parse_args(argv)


def run_worker(
    system: str, python: Path | str, points: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one worker in a fresh process on a fresh temporary SQLite file.

    Parameters
    ----------
    system : str
        ``"fedloop"`` or ``"mlflow"``.
    python : Path or str
        Interpreter of that system's virtual environment.
    points : int
        Points logged one call each.
    args : argparse.Namespace
        The options.

    Returns
    -------
    dict
        The worker's JSON result, plus ``process_wall_s``.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"w_track-{system}-"))
    out = workdir / "result.json"
    cmd = [
        str(python),
        str(PEERS / f"{system}_track.py"),
        "--out",
        str(out),
        "--workdir",
        str(workdir / "data"),
        "--points",
        str(points),
        "--batch-points",
        str(args.batch_points),
        "--batch-size",
        str(args.batch_size),
        "--runs",
        str(args.runs),
        "--search-repeats",
        str(args.search_repeats),
        "--seed",
        str(args.seed),
    ]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("FEDLOOP_STORE_URL", None)
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=args.timeout
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"{system} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        result: dict[str, Any] = json.loads(out.read_text())
        result["process_wall_s"] = wall
        result["command"] = cmd
        return result
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def median_of(results: list[dict[str, Any]], path: tuple[str, str]) -> float:
    """Return the median over repeats of one number in the worker results.

    Parameters
    ----------
    results : list of dict
        One worker result per repeat.
    path : (str, str)
        Section and field.

    Returns
    -------
    float
        The median.
    """
    return float(statistics.median(r[path[0]][path[1]] for r in results))


def ratio(fedloop: float, mlflow: float | None, higher_is_better: bool) -> float | None:
    """Return how many times better fedloop is (> 1: fedloop better).

    Parameters
    ----------
    fedloop, mlflow : float
        The two measurements (``mlflow`` None when it was not measured).
    higher_is_better : bool
        True for throughputs, False for times.

    Returns
    -------
    float or None
        fedloop/mlflow for throughputs, mlflow/fedloop for times.
    """
    if mlflow is None or fedloop == 0 or mlflow == 0:
        return None
    return fedloop / mlflow if higher_is_better else mlflow / fedloop


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:,.0f} {unit}"


def main(argv: list[str] | None = None) -> int:
    """Run W-TRACK for fedloop and (when its venv exists) MLflow; print a table, write JSON.

    Parameters
    ----------
    argv : list of str or None
        Command-line arguments.

    Returns
    -------
    int
        0, or 1 with ``--check`` when a goal is not met.
    """
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    mlflow_points = args.mlflow_points or args.points
    have_mlflow = not args.no_mlflow and MLFLOW_PYTHON.exists()
    if not args.no_mlflow and not have_mlflow:
        console.print(
            f"[yellow]MLflow peer missing ({MLFLOW_PYTHON} not found); set it up with:\n"
            "  bash benchmarks/setup_peers.sh mlflow[/yellow]"
        )

    fed_results: list[dict[str, Any]] = []
    ml_results: list[dict[str, Any]] = []
    for i in range(args.repeat):
        console.print(f"[bold]repeat {i + 1}/{args.repeat}[/bold]: fedloop ...")
        fed_results.append(run_worker("fedloop", sys.executable, args.points, args))
        if have_mlflow:
            console.print(
                f"[bold]repeat {i + 1}/{args.repeat}[/bold]: mlflow "
                f"({mlflow_points:,} one-call points) ..."
            )
            ml_results.append(run_worker("mlflow", MLFLOW_PYTHON, mlflow_points, args))

    # -- consistency: both systems stored everything and found the same runs -------------------
    checks: list[str] = []
    for res in fed_results + ml_results:
        sysname = res["system"]
        for section in ("points_one_call", "points_batch"):
            if res[section]["stored"] != res[section]["points"]:
                checks.append(f"{sysname}: {section} stored {res[section]['stored']} points")
        if res["runs"]["stored"] != res["runs"]["runs"]:
            checks.append(f"{sysname}: {res['runs']['stored']} runs stored")
        s = res["search"]
        if s["matches"] != s["expected_matches"] or not s["all_match"]:
            checks.append(
                f"{sysname}: search found {s['matches']}, expected {s['expected_matches']}"
            )
    matches = {r["system"]: r["search"]["matches"] for r in fed_results + ml_results}

    rows: list[dict[str, Any]] = []
    for label, path, unit, higher in METRICS:
        f = median_of(fed_results, path)
        m = median_of(ml_results, path) if ml_results else None
        r = ratio(f, m, higher)
        goal = GOALS.get(path)
        passed: bool | None = None
        if goal is not None:
            _, kind, threshold = goal
            if kind == "max":
                passed = f < threshold
            elif r is not None:
                passed = r >= threshold
        rows.append(
            {
                "metric": label,
                "key": ".".join(path),
                "unit": unit,
                "fedloop": f,
                "mlflow": m,
                "fedloop_per_repeat": [res[path[0]][path[1]] for res in fed_results],
                "mlflow_per_repeat": [res[path[0]][path[1]] for res in ml_results],
                "ratio_fedloop_better": r,
                "goal": goal[0] if goal else None,
                "goal_met": passed,
            }
        )

    table = Table(
        title=(
            f"W-TRACK (median of {args.repeat} fresh process(es) per system; "
            f"ratio > 1 = fedloop better)"
        )
    )
    for col, justify in (
        ("metric", "left"),
        ("fedloop", "right"),
        ("mlflow", "right"),
        ("ratio", "right"),
        ("goal", "left"),
        ("met", "center"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        met = row["goal_met"]
        table.add_row(
            row["metric"].replace("search runs", f"search {args.runs:,} runs"),
            _fmt(row["fedloop"], row["unit"]),
            _fmt(row["mlflow"], row["unit"]) if have_mlflow else "missing",
            f"{row['ratio_fedloop_better']:.1f}x" if row["ratio_fedloop_better"] else "-",
            row["goal"] or "",
            "" if row["goal"] is None else "n/a" if met is None else "PASS" if met else "FAIL",
        )
    table.add_row(
        "search matches (m0 > 0.5)",
        str(matches.get("fedloop")),
        str(matches.get("mlflow", "-")),
        "",
        "equal",
        "" if not have_mlflow else "PASS" if len(set(matches.values())) == 1 else "FAIL",
    )
    console.print(table)
    console.print(
        f"points one call each: fedloop {args.points:,}, "
        f"mlflow {f'{mlflow_points:,}' if have_mlflow else '-'}; "
        f"batch {args.batch_points:,} in calls of {args.batch_size}; runs {args.runs:,}; "
        f"search {args.search_repeats} timed after 1 warm-up"
    )
    for problem in checks:
        console.print(f"[red]consistency: {problem}[/red]")

    report = {
        "workload": "W-TRACK",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "mlflow_points_used": mlflow_points if have_mlflow else None,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "environments": {
            "fedloop": fed_results[0]["environment"],
            "mlflow": ml_results[0]["environment"] if ml_results else None,
        },
        "summary": rows,
        "search_matches": matches,
        "consistency_problems": checks,
        "raw": {"fedloop": fed_results, "mlflow": ml_results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")
    failed = checks or any(r["goal_met"] is False for r in rows)
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
