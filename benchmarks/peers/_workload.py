"""The W-TRACK workload shared by every worker (stdlib only: each peer has its own venv)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
from pathlib import Path
from typing import Any

SEARCH_FILTER = "metrics.m0 > 0.5"
POINT_KEY = "loss"
PARAMS_PER_RUN = 10
METRICS_PER_RUN = 10


def parse_args(description: str) -> argparse.Namespace:
    """Parse the command line every worker takes.

    Parameters
    ----------
    description : str
        Shown by ``--help``.

    Returns
    -------
    argparse.Namespace
        ``out``, ``workdir``, ``points``, ``batch_points``, ``batch_size``, ``runs``,
        ``search_repeats`` and ``seed``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="JSON result file to write")
    parser.add_argument("--workdir", type=Path, required=True, help="fresh folder for the DB")
    parser.add_argument("--points", type=int, default=10_000, help="points logged one call each")
    parser.add_argument("--batch-points", type=int, default=10_000, help="points via batch API")
    parser.add_argument("--batch-size", type=int, default=1_000, help="points per batch call")
    parser.add_argument("--runs", type=int, default=1_000, help="runs created")
    parser.add_argument("--search-repeats", type=int, default=20, help="timed searches")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run values")
    return parser.parse_args()


def point_value(step: int) -> float:
    """Return the value logged at ``step`` (a decaying loss curve).

    Parameters
    ----------
    step : int
        Step number.

    Returns
    -------
    float
        The value.
    """
    return 1.0 / (1.0 + step)


def run_values(runs: int, seed: int) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Return the seeded (params, metrics) of every run, identical for every system.

    Parameters
    ----------
    runs : int
        How many runs.
    seed : int
        Random seed.

    Returns
    -------
    list of (dict, dict)
        ``p0..p9`` and ``m0..m9`` per run, uniform in [0, 1).
    """
    rng = random.Random(seed)
    out = []
    for _ in range(runs):
        params = {f"p{j}": round(rng.random(), 6) for j in range(PARAMS_PER_RUN)}
        metrics = {f"m{j}": rng.random() for j in range(METRICS_PER_RUN)}
        out.append((params, metrics))
    return out


def expected_matches(values: list[tuple[dict[str, float], dict[str, float]]]) -> int:
    """Return how many runs ``SEARCH_FILTER`` must find.

    Parameters
    ----------
    values : list of (dict, dict)
        What :func:`run_values` returned.

    Returns
    -------
    int
        Runs with ``m0 > 0.5``.
    """
    return sum(1 for _, metrics in values if metrics["m0"] > 0.5)


def summarize_ms(samples_s: list[float]) -> dict[str, Any]:
    """Summarize latencies given in seconds as milliseconds.

    Parameters
    ----------
    samples_s : list of float
        Latencies in seconds.

    Returns
    -------
    dict
        ``samples_ms``, ``median_ms``, ``min_ms`` and ``max_ms``.
    """
    ms = [s * 1000 for s in samples_s]
    return {
        "samples_ms": ms,
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def environment(packages: list[str]) -> dict[str, Any]:
    """Describe the interpreter and the installed versions of ``packages``.

    Parameters
    ----------
    packages : list of str
        Distribution names.

    Returns
    -------
    dict
        ``python``, ``executable``, ``platform``, ``cpu_count`` and ``packages``.
    """
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write a worker's result as JSON.

    Parameters
    ----------
    path : Path
        Output file.
    result : dict
        The result.
    """
    path.write_text(json.dumps(result, indent=2))
