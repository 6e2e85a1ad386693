"""W-SERVE prep for MLServer: two model repositories in a fresh folder (run in .bench-venvs/mlserver).

- ``<workdir>/mlserver/``: LogisticRegression fit on the train split here (scikit-learn of this
  venv, so nothing is unpickled across versions), served by MLServer's own sklearn runtime
  (``mlserver_sklearn.SKLearnModel``) as ``fraud-lr``;
- ``<workdir>/mlserver-onnx/``: the W-FL ONNX MLP served by ``mlserver_serve_onnx.OnnxRuntime``
  as ``fraud-fl``.

``settings.json`` turns MLServer's per-request debug logging off (the thin endpoint logs no
access lines either) and binds 127.0.0.1; the ports come from MLSERVER_HTTP_PORT,
MLSERVER_GRPC_PORT and MLSERVER_METRICS_PORT at launch. Everything else is MLServer's default
(one parallel inference worker, metrics on, gzip on). Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

SETTINGS = {"debug": False, "host": "127.0.0.1"}


def fit_lr(data: Path) -> tuple[LogisticRegression, float, float]:
    """Fit the W-SERVE LogisticRegression on the train split; return it, its test AUC, seconds."""
    with np.load(data) as z:
        x_train, y_train, x_test, y_test = (
            z[k] for k in ("x_train", "y_train", "x_test", "y_test")
        )
    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    return lr, float(roc_auc_score(y_test, lr.predict_proba(x_test)[:, 1])), fit_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True, help=".npz written by the orchestrator")
    p.add_argument("--onnx", type=Path, required=True, help="the W-FL ONNX graph")
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args()
    lr, auc, fit_s = fit_lr(args.data)

    repo = args.workdir / "mlserver"
    (repo / "fraud-lr").mkdir(parents=True, exist_ok=True)
    (repo / "settings.json").write_text(json.dumps(SETTINGS))
    joblib.dump(lr, repo / "fraud-lr" / "model.joblib")
    (repo / "fraud-lr" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "fraud-lr",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )

    repo_onnx = args.workdir / "mlserver-onnx"
    (repo_onnx / "fraud-fl").mkdir(parents=True, exist_ok=True)
    (repo_onnx / "settings.json").write_text(json.dumps(SETTINGS))
    shutil.copyfile(args.onnx, repo_onnx / "fraud-fl" / "model.onnx")
    (repo_onnx / "fraud-fl" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "fraud-fl",
                "implementation": "mlserver_serve_onnx.OnnxRuntime",
                "parameters": {"uri": "./model.onnx", "version": "v1"},
            }
        )
    )
    print(json.dumps({"lr_test_auc": auc, "lr_fit_s": fit_s, "repos": [str(repo), str(repo_onnx)]}))


if __name__ == "__main__":
    main()
