"""The W-DRIFT workload shared by every drift peer (numpy only; fedloop only inside ``build``).

The orchestrator (``benchmarks/w_drift.py``, in fedloop's ``.venv``) calls :func:`build` once;
it writes one ``.npz`` file and every peer, whatever its venv, reads the same arrays through
:func:`load` and :func:`trial_rows`.

Construction (seeded, WORKLOADS.md "W-DRIFT"):

- The fraudlike data: ``make_fraudlike(200_000, seed=0)`` (make_classification, stratified
  80/20 split, standardized with the train mean/std): 160,000 train rows, 40,000 test rows.
- **Reference**: the first ``rows`` (100,000) of a seeded permutation of the train split.
- **Same-distribution current** (the control): ``rows`` other rows, disjoint from the
  reference: the 60,000 train rows left over, then test rows. 160k train rows cannot give two
  disjoint 100k sets, so the current is topped up from the test split: the same
  make_classification draw, split off by a stratified split (same class shares), standardized
  with the same train mean/std, so its rows come from the same distribution as the train rows.
  The alternatives are worse: sampling 100k rows with replacement from the 60k left over
  repeats rows, which inflates the two-sample statistics (the current has about 60k
  independent values, not 100k) and so flags features that did not move; a fresh
  make_classification call with another seed or size draws other cluster centres and
  covariances (a different distribution altogether).
- **Drifted current**: the same rows as the control, with feature 0 shifted by +0.5 reference
  std, feature 1 by -0.5 reference std, feature 2 scaled x1.5 around its own mean, and
  feature 3 replaced by uniform values over the reference column's [min, max]. The other 26
  columns are byte-identical to the control, so a flag there is a false positive.
- **1k-vs-1k trials**: trial ``t`` draws 2,000 distinct rows (seeded) from the unchanged pool
  (reference + control, 200k rows of one distribution): the first 1,000 are its reference, the
  next 1,000 its current. Stored as row indices into that pool.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

NUM_FEATURES = 30
ROWS = 100_000  # rows in the reference and in each current (WORKLOADS.md)
TRIAL_ROWS = 1_000  # rows per side of a small check
TRIALS = 100
ALPHA = 0.05  # per-feature significance where a peer takes one
DRIFTED = (0, 1, 2, 3)  # the features W-DRIFT changes
COLUMNS = [f"f{j}" for j in range(NUM_FEATURES)]  # column names every peer uses

DATA_SEED = 0  # make_fraudlike (generator and split)
SPLIT_SEED = 1  # which train rows are the reference
DRIFT_SEED = 2  # the uniform values of feature 3
TRIAL_SEED = 3  # the rows of the 1k-vs-1k trials

Array = npt.NDArray[Any]


def build(path: Path, *, rows: int = ROWS, trials: int = TRIALS) -> dict[str, Any]:
    """Write the W-DRIFT arrays to ``path`` (an ``.npz`` file); runs in fedloop's venv.

    Parameters
    ----------
    path : Path
        Output file.
    rows : int, default 100000
        Rows of the reference and of each current (at most 100,000: the fraudlike data has
        200,000 rows in all).
    trials : int, default 100
        Number of 1k-vs-1k trials to draw.

    Returns
    -------
    dict
        A description of what was written (sizes, seeds, the drift applied), for the report.
    """
    from fedloop.scenarios.fraud.data import make_fraudlike

    data = make_fraudlike(200_000, seed=DATA_SEED)
    n_train = len(data.x_train)
    if not 0 < rows <= (n_train + len(data.x_test)) // 2:
        raise ValueError(f"rows must be in [1, {(n_train + len(data.x_test)) // 2}]; got {rows}")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n_train)
    reference = data.x_train[perm[:rows]]
    others = np.concatenate([data.x_train[perm[rows:]], data.x_test])
    same = others[:rows]
    from_test = max(0, rows - (n_train - rows))

    ref64 = reference.astype(np.float64)
    cur = same.astype(np.float64)
    ref_mean, ref_std = ref64.mean(axis=0), ref64.std(axis=0)
    cur[:, 0] += 0.5 * ref_std[0]
    cur[:, 1] -= 0.5 * ref_std[1]
    cur[:, 2] = cur[:, 2].mean() + 1.5 * (cur[:, 2] - cur[:, 2].mean())
    lo, hi = float(ref64[:, 3].min()), float(ref64[:, 3].max())
    cur[:, 3] = np.random.default_rng(DRIFT_SEED).uniform(lo, hi, size=rows)
    drifted = cur.astype(reference.dtype)
    if not np.array_equal(drifted[:, 4:], same[:, 4:]):
        raise AssertionError("the unchanged features must be identical to the control")

    rng = np.random.default_rng(TRIAL_SEED)
    pool = 2 * rows
    trial_index = np.stack(
        [rng.choice(pool, size=2 * TRIAL_ROWS, replace=False) for _ in range(trials)]
    ).astype(np.int64)
    np.savez(
        path,
        reference=reference,
        drifted=drifted,
        same=same,
        trial_index=trial_index.reshape(trials, 2, TRIAL_ROWS),
    )
    return {
        "rows": rows,
        "features": NUM_FEATURES,
        "dtype": str(reference.dtype),
        "reference": f"train rows perm[:{rows}] (numpy seed {SPLIT_SEED})",
        "current": (
            f"the other {rows - from_test} train rows + the first {from_test} test rows"
            if from_test
            else f"train rows perm[{rows}:{2 * rows}]"
        ),
        "drift": {
            "f0": f"+0.5 std ({0.5 * ref_std[0]:+.4f})",
            "f1": f"-0.5 std ({-0.5 * ref_std[1]:+.4f})",
            "f2": "x1.5 around its mean",
            "f3": f"uniform over the reference range [{lo:.4f}, {hi:.4f}] (seed {DRIFT_SEED})",
        },
        "reference_mean_f0_3": [round(float(m), 4) for m in ref_mean[:4]],
        "trials": trials,
        "trial_rows": TRIAL_ROWS,
        "trial_pool": f"reference + same-distribution current ({pool} rows, seed {TRIAL_SEED})",
        "seeds": {
            "data": DATA_SEED,
            "split": SPLIT_SEED,
            "drift": DRIFT_SEED,
            "trials": TRIAL_SEED,
        },
    }


def load(path: Path) -> dict[str, Array]:
    """Load the arrays :func:`build` wrote.

    Parameters
    ----------
    path : Path
        The ``.npz`` file.

    Returns
    -------
    dict
        ``reference``, ``drifted``, ``same`` (rows x 30) and ``trial_index`` (trials x 2 x 1000).
    """
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def trial_pool(data: dict[str, Array]) -> Array:
    """Return the unchanged rows the 1k-vs-1k trials draw from (reference, then control).

    Parameters
    ----------
    data : dict
        What :func:`load` returned.

    Returns
    -------
    ndarray
        ``2 * rows`` rows; ``trial_index`` points into it.
    """
    out: Array = np.concatenate([data["reference"], data["same"]])
    return out


def trial_rows(pool: Array, trial_index: Array, t: int) -> tuple[Array, Array]:
    """Return the 1k reference rows and the 1k current rows of trial ``t``.

    Parameters
    ----------
    pool : ndarray
        What :func:`trial_pool` returned.
    trial_index : ndarray
        ``data["trial_index"]``.
    t : int
        Trial number.

    Returns
    -------
    (ndarray, ndarray)
        Reference rows and current rows, disjoint, from the unchanged data.
    """
    return pool[trial_index[t, 0]], pool[trial_index[t, 1]]


def parse_args(description: str) -> argparse.Namespace:
    """Parse the command line every drift peer takes.

    Parameters
    ----------
    description : str
        Shown by ``--help``.

    Returns
    -------
    argparse.Namespace
        ``data``, ``workdir``, ``trials``, ``repeats`` and ``trial_budget_s``.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, required=True, help="the .npz file build() wrote")
    p.add_argument("--workdir", type=Path, required=True, help="a folder for the peer's files")
    p.add_argument("--trials", type=int, default=TRIALS, help="1k-vs-1k trials to run")
    p.add_argument("--repeats", type=int, default=1, help="timed repeats of the 100k check")
    p.add_argument(
        "--trial-budget-s",
        type=float,
        default=0.0,
        help="stop the trials after this many seconds (0: run them all)",
    )
    return p.parse_args()


def flagged(drift: list[bool]) -> list[int]:
    """Return the indices of the flagged features.

    Parameters
    ----------
    drift : list of bool
        Per feature, in column order.

    Returns
    -------
    list of int
        Indices where ``drift`` is true.
    """
    return [j for j, d in enumerate(drift) if d]


def emit(result: dict[str, Any]) -> None:
    """Print a peer's result as one JSON line on stdout (the orchestrator reads the last one).

    Parameters
    ----------
    result : dict
        The result.
    """
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
