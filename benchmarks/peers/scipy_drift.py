"""W-DRIFT limit: scipy.stats.ks_2samp on every feature, raw rows on both sides (see w_drift.py).

What a user would write: one two-sample Kolmogorov-Smirnov test per column at alpha 0.05, no
correction for testing 30 columns. What a Bonferroni correction (alpha / 30) would flag is
reported too. scipy gives no data-set verdict. Timed: the 30 tests on arrays already in memory
(the reference is kept as raw rows: nothing cheaper to store, nothing to build).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import _wdrift as w
import _workload
import numpy as np
from scipy.stats import ks_2samp


def ks_all(ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> list[float]:
    """Return the KS p-value of every column."""
    return [float(ks_2samp(ref[:, j], cur[:, j]).pvalue) for j in range(ref.shape[1])]


def verdicts(p_values: list[float]) -> dict[str, Any]:
    """Return what alpha 0.05 and Bonferroni flag."""
    bonferroni = w.ALPHA / len(p_values)
    return {
        "flagged": w.flagged([p < w.ALPHA for p in p_values]),
        "flagged_bonferroni": w.flagged([p < bonferroni for p in p_values]),
    }


def timed_check(
    ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any], repeats: int
) -> dict[str, Any]:
    """Run the 30 tests ``repeats`` times; report the median time and the verdicts."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        p_values = ks_all(ref, cur)
        times.append(time.perf_counter() - t0)
    return {
        "check_s": statistics.median(times),
        "check_s_all": times,
        "p_values": p_values,
        **verdicts(p_values),
    }


def main() -> None:
    args = w.parse_args(__doc__ or "")
    data = w.load(args.data)
    result: dict[str, Any] = {"system": "scipy", "test": "ks_2samp (method auto)"}
    result["drifted"] = timed_check(data["reference"], data["drifted"], args.repeats)
    result["same"] = timed_check(data["reference"], data["same"], args.repeats)

    pool = w.trial_pool(data)
    false_flags, false_bonf, seconds = [], [], []
    for t in range(min(args.trials, len(data["trial_index"]))):
        ref, cur = w.trial_rows(pool, data["trial_index"], t)
        t0 = time.perf_counter()
        v = verdicts(ks_all(ref, cur))
        seconds.append(time.perf_counter() - t0)
        false_flags.append(len(v["flagged"]))
        false_bonf.append(len(v["flagged_bonferroni"]))
    result["trials"] = {
        "n": len(false_flags),
        "false_flags": false_flags,
        "mean_false": statistics.fmean(false_flags) if false_flags else None,
        "false_flags_bonferroni": false_bonf,
        "mean_false_bonferroni": statistics.fmean(false_bonf) if false_bonf else None,
        "median_check_s": statistics.median(seconds) if seconds else None,
    }
    result["env"] = _workload.environment(["scipy", "numpy"])
    w.emit(result)


if __name__ == "__main__":
    main()
