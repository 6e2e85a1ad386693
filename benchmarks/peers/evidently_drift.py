"""W-DRIFT peer: Evidently's default DataDriftPreset (runs in .bench-venvs/evidently; see w_drift.py).

``Report([DataDriftPreset()]).run(reference_data=..., current_data=...)`` on pandas DataFrames
with the 30 feature columns, defaults throughout: Evidently picks the test per column (above
1,000 reference rows the normed Wasserstein distance at 0.1, at 1,000 rows or fewer the KS
p-value at 0.05) and calls the data set drifted when at least ``drift_share`` (0.5) of the
columns drift. Timed: the run plus reading the result (``snapshot.dict()``); the DataFrames are
built before the clock starts.

The result dict holds, per column, the resolved method, its threshold and the score; whether a
column drifted follows Evidently's own rule for the method (a p-value at or below the
threshold, a distance at or above it). The count is checked against Evidently's own
DriftedColumnsCount.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import _wdrift as w
import _workload
import evidently
import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

# Evidently's rule per method (evidently/legacy/calculations/stattests): p-values drift at or
# below the threshold, distances at or above it. Only the methods its defaults pick are known.
P_VALUE_METHODS = {"K-S p_value", "chi-square p_value", "Z-test p_value"}
DISTANCE_METHODS = {"Wasserstein distance (normed)", "Jensen-Shannon distance"}


def frame(x: np.ndarray[Any, Any]) -> pd.DataFrame:
    """Return the rows as a DataFrame with the shared column names."""
    return pd.DataFrame(x, columns=w.COLUMNS)


def run_preset(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[float, dict[str, Any]]:
    """Run the default preset; return the seconds and what it says."""
    preset = DataDriftPreset()
    t0 = time.perf_counter()
    snapshot = Report([preset]).run(reference_data=ref, current_data=cur)
    out = snapshot.dict()
    elapsed = time.perf_counter() - t0

    count: dict[str, Any] | None = None
    columns: dict[str, dict[str, Any]] = {}
    for metric in out["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            count = metric["value"]
        elif config["type"].endswith(":ValueDrift"):
            method, threshold, score = config["method"], config["threshold"], metric["value"]
            if method in P_VALUE_METHODS:
                drifted = score <= threshold
            elif method in DISTANCE_METHODS:
                drifted = score >= threshold
            else:
                raise RuntimeError(f"unknown Evidently drift method {method!r}")
            columns[config["column"]] = {
                "method": method,
                "threshold": threshold,
                "score": score,
                "drifted": bool(drifted),
            }
    if count is None:
        raise RuntimeError("DataDriftPreset returned no DriftedColumnsCount")
    flags = w.flagged([columns[c]["drifted"] for c in w.COLUMNS])
    if len(flags) != round(count["count"]):
        raise RuntimeError(f"{len(flags)} columns drift by score, Evidently counts {count}")
    # Evidently's data-set rule (get_dataset_drift): drifted when share >= drift_share.
    dataset_drift = count["share"] >= preset.drift_share
    return elapsed, {
        "flagged": flags,
        "drift_share": count["share"],
        "dataset_drift": bool(dataset_drift),
        "verdict": "drift" if dataset_drift else "no_drift",
        "methods": sorted({c["method"] for c in columns.values()}),
        "columns": columns,
    }


def timed_check(ref: pd.DataFrame, cur: pd.DataFrame, repeats: int) -> dict[str, Any]:
    """Run the preset ``repeats`` times; report the median time and the last answer."""
    times = []
    for _ in range(max(1, repeats)):
        elapsed, answer = run_preset(ref, cur)
        times.append(elapsed)
    return {"check_s": statistics.median(times), "check_s_all": times, **answer}


def main() -> None:
    args = w.parse_args(__doc__ or "")
    data = w.load(args.data)
    result: dict[str, Any] = {"system": "evidently", "test": "DataDriftPreset() defaults"}
    ref = frame(data["reference"])
    result["drifted"] = timed_check(ref, frame(data["drifted"]), args.repeats)
    result["same"] = timed_check(ref, frame(data["same"]), args.repeats)

    pool = w.trial_pool(data)
    false_flags, seconds, dataset_drifts = [], [], 0
    methods: set[str] = set()
    t_start = time.perf_counter()
    wanted = min(args.trials, len(data["trial_index"]))
    for t in range(wanted):
        if args.trial_budget_s and time.perf_counter() - t_start > args.trial_budget_s:
            break
        ref_t, cur_t = w.trial_rows(pool, data["trial_index"], t)
        elapsed, answer = run_preset(frame(ref_t), frame(cur_t))
        seconds.append(elapsed)
        false_flags.append(len(answer["flagged"]))
        dataset_drifts += answer["dataset_drift"]
        methods.update(answer["methods"])
    result["trials"] = {
        "n": len(false_flags),
        "wanted": wanted,
        "budget_s": args.trial_budget_s or None,
        "false_flags": false_flags,
        "mean_false": statistics.fmean(false_flags) if false_flags else None,
        "dataset_drift_verdicts": dataset_drifts,
        "methods": sorted(methods),
        "median_check_s": statistics.median(seconds) if seconds else None,
    }
    result["env"] = _workload.environment(["evidently", "pandas", "numpy", "scipy"])
    result["env"]["evidently_module"] = evidently.__version__
    w.emit(result)


if __name__ == "__main__":
    main()
