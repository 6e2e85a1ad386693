"""W-SERVE prep for MLflow (run in .bench-venvs/mlflow): fit LogisticRegression, log it.

Fits the LogisticRegression on the train split with this venv's scikit-learn and logs it with
``mlflow.sklearn.log_model`` (with its input example and signature) into a fresh file-based
tracking store under ``--workdir``. Prints ``{"model_uri": ..., "tracking_uri": ...}`` on
stdout; ``mlflow models serve -m <model_uri> --env-manager local`` then serves it with
MLFLOW_TRACKING_URI set to the same store.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True, help=".npz written by the orchestrator")
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args()
    with np.load(args.data) as z:
        x_train, y_train, x_test, y_test = (
            z[k] for k in ("x_train", "y_train", "x_test", "y_test")
        )
    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    auc = float(roc_auc_score(y_test, lr.predict_proba(x_test)[:, 1]))
    args.workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{(args.workdir / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("w-serve")
    t1 = time.perf_counter()
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            lr,
            name="model",
            signature=infer_signature(x_test[:8], lr.predict(x_test[:8])),
        )
    print(
        json.dumps(
            {
                "model_uri": info.model_uri,
                "tracking_uri": tracking_uri,
                "lr_test_auc": auc,
                "lr_fit_s": fit_s,
                "log_model_s": time.perf_counter() - t1,
            }
        )
    )


if __name__ == "__main__":
    main()
