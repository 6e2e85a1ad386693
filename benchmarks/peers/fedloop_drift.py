"""W-DRIFT worker for fedloop: a stored reference profile against raw current rows (see w_drift.py).

Untimed (reported as ``reference_build_s``): ``profile_columns`` on the 100k reference rows,
``encode_profile``, written to a file: the stored reference. Timed, per check: read that file,
``decode_profile``, ``profile_like(reference, current columns)`` on the 100k current rows and
``check_drift(reference, current)``. The 1k-vs-1k trials build a reference profile from each
trial's 1,000 reference rows (not timed) and time ``profile_like`` + ``check_drift``. Every
call uses the API's defaults.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import _wdrift as w
import _workload
import numpy as np

from fedloop.learn import decode_profile, encode_profile, profile_columns, profile_like
from fedloop.monitoring import check_drift


def columns_of(x: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """Return the rows as named columns (views, no copy)."""
    return {name: x[:, j] for j, name in enumerate(w.COLUMNS)}


def describe(report: Any) -> dict[str, Any]:
    """Return the flags, the verdict and the per-column tests of a DriftReport."""
    cols = report.columns
    items = list(cols.values()) if isinstance(cols, Mapping) else list(cols)
    by_name = {c.column: c for c in items}
    missing = [c for c in w.COLUMNS if c not in by_name]
    if missing:
        raise RuntimeError(f"check_drift reported no result for {missing}")

    def num(v: Any) -> float | None:
        return None if v is None else float(v)

    multivariate = getattr(report, "multivariate", None)
    return {
        "flagged": w.flagged([bool(by_name[c].drifted) for c in w.COLUMNS]),
        "verdict": str(report.verdict),
        "num_drifted": int(report.num_drifted),
        "correction": getattr(report, "correction", None),
        "alpha": num(getattr(report, "alpha", None)),
        "multivariate": None if multivariate is None else repr(multivariate),
        "tests": sorted({str(c.test) for c in items}),
        "columns": {
            c: {
                "test": str(by_name[c].test),
                "drifted": bool(by_name[c].drifted),
                "statistic": num(getattr(by_name[c], "statistic", None)),
                "p_value": num(by_name[c].p_value),
                "adjusted_p_value": num(by_name[c].adjusted_p_value),
                "effect": num(by_name[c].effect),
                "effect_name": getattr(by_name[c], "effect_name", None),
                "effect_threshold": num(getattr(by_name[c], "effect_threshold", None)),
                "reason": getattr(by_name[c], "reason", None),
            }
            for c in w.COLUMNS
        },
    }


def timed_check(stored: Path, cur: np.ndarray[Any, Any], repeats: int) -> dict[str, Any]:
    """Check the stored reference against ``cur`` ``repeats`` times; median time, last answer."""
    times, parts = [], []
    report = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        reference = decode_profile(stored.read_bytes())
        t1 = time.perf_counter()
        current = profile_like(reference, columns_of(cur))
        t2 = time.perf_counter()
        report = check_drift(reference, current)
        t3 = time.perf_counter()
        times.append(t3 - t0)
        parts.append(
            {"read_decode_s": t1 - t0, "profile_like_s": t2 - t1, "check_drift_s": t3 - t2}
        )
    best = min(range(len(times)), key=times.__getitem__)
    return {
        "check_s": statistics.median(times),
        "check_s_all": times,
        "breakdown_fastest": parts[best],
        **describe(report),
    }


def main() -> None:
    args = w.parse_args(__doc__ or "")
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = w.load(args.data)
    result: dict[str, Any] = {"system": "fedloop", "test": "check_drift() defaults"}

    stored = args.workdir / "reference.profile"
    t0 = time.perf_counter()
    reference = profile_columns(columns_of(data["reference"]))
    t1 = time.perf_counter()
    blob = encode_profile(reference)
    stored.write_bytes(blob)
    t2 = time.perf_counter()
    result["reference"] = {
        "build_s": t2 - t0,
        "profile_columns_s": t1 - t0,
        "encode_write_s": t2 - t1,
        "size_bytes": len(blob),
        "rows": int(reference.num_rows),
    }
    result["drifted"] = timed_check(stored, data["drifted"], args.repeats)
    result["same"] = timed_check(stored, data["same"], args.repeats)

    pool = w.trial_pool(data)
    false_flags, seconds, verdicts = [], [], 0
    tests: set[str] = set()
    for t in range(min(args.trials, len(data["trial_index"]))):
        ref_t, cur_t = w.trial_rows(pool, data["trial_index"], t)
        ref_profile = profile_columns(columns_of(ref_t))
        t0 = time.perf_counter()
        report = check_drift(ref_profile, profile_like(ref_profile, columns_of(cur_t)))
        seconds.append(time.perf_counter() - t0)
        answer = describe(report)
        false_flags.append(len(answer["flagged"]))
        verdicts += answer["verdict"] == "drift"
        tests.update(answer["tests"])
    result["trials"] = {
        "n": len(false_flags),
        "false_flags": false_flags,
        "mean_false": statistics.fmean(false_flags) if false_flags else None,
        "dataset_drift_verdicts": verdicts,
        "tests": sorted(tests),
        "median_check_s": statistics.median(seconds) if seconds else None,
    }
    result["env"] = _workload.environment(["fedloop", "numpy", "scipy"])
    w.emit(result)


if __name__ == "__main__":
    main()
