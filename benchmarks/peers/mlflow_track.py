"""W-TRACK worker for MLflow: run with .bench-venvs/mlflow/bin/python on a fresh SQLite file."""

from __future__ import annotations

import time
from typing import Any

import _workload as w


def main() -> None:
    args = w.parse_args(__doc__ or "")
    args.workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(args.workdir / 'mlflow.db').resolve()}"
    artifacts = (args.workdir / "mlartifacts").resolve().as_uri()
    result: dict[str, Any] = {"system": "mlflow", "tracking_uri": url}

    # -- start-up: import + open the store (fresh file: create schema, migrate) + an experiment --
    t0 = time.perf_counter()
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    t1 = time.perf_counter()
    mlflow.set_tracking_uri(url)
    client = MlflowClient()
    exp_id = client.create_experiment("w-track-points", artifact_location=artifacts)
    t2 = time.perf_counter()
    result["startup"] = {"import_s": t1 - t0, "open_s": t2 - t1, "total_s": t2 - t0}

    # -- 1a. one run, N points, one call each (synchronous calls), timed until ended ------------
    run = mlflow.start_run(experiment_id=exp_id, run_name="points-one-call")
    run_id = run.info.run_id
    t0 = time.perf_counter()
    for step in range(args.points):
        mlflow.log_metric(w.POINT_KEY, w.point_value(step), step=step)
    mlflow.end_run()
    elapsed = time.perf_counter() - t0
    result["points_one_call"] = {
        "points": args.points,
        "seconds": elapsed,
        "points_per_s": args.points / elapsed,
        "stored": len(client.get_metric_history(run_id, w.POINT_KEY)),
    }

    # -- 1b. batch API: MlflowClient.log_batch, metrics in batches of batch_size (max 1000) -----
    brun_id = client.create_run(exp_id, run_name="points-batch").info.run_id
    t0 = time.perf_counter()
    for start in range(0, args.batch_points, args.batch_size):
        now_ms = int(time.time() * 1000)
        batch = [
            Metric(w.POINT_KEY, w.point_value(step), now_ms, step)
            for step in range(start, min(start + args.batch_size, args.batch_points))
        ]
        client.log_batch(brun_id, metrics=batch)
    elapsed = time.perf_counter() - t0
    client.set_terminated(brun_id)
    result["points_batch"] = {
        "points": args.batch_points,
        "batch_size": args.batch_size,
        "seconds": elapsed,
        "points_per_s": args.batch_points / elapsed,
        "stored": len(client.get_metric_history(brun_id, w.POINT_KEY)),
    }

    # -- 2. runs with 10 params (one call) and 10 metrics (one call), ended ---------------------
    values = w.run_values(args.runs, args.seed)
    runs_exp = client.create_experiment("w-track-runs", artifact_location=artifacts)
    t0 = time.perf_counter()
    for i, (params, metrics) in enumerate(values):
        with mlflow.start_run(experiment_id=runs_exp, run_name=f"run-{i}"):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics, step=0)
    elapsed = time.perf_counter() - t0
    result["runs"] = {
        "runs": args.runs,
        "seconds": elapsed,
        "runs_per_s": args.runs / elapsed,
        "stored": len(client.search_runs([runs_exp], max_results=50_000)),
    }

    # -- 3. search with a metric filter, all matches ----------------------------------------------
    def search() -> list[Any]:
        return list(
            client.search_runs(
                [runs_exp], filter_string=w.SEARCH_FILTER, max_results=max(args.runs, 1)
            )
        )

    t0 = time.perf_counter()
    found = search()
    warmup = time.perf_counter() - t0
    samples = []
    for _ in range(args.search_repeats):
        t0 = time.perf_counter()
        found = search()
        samples.append(time.perf_counter() - t0)
    result["search"] = {
        "filter": w.SEARCH_FILTER,
        "runs": args.runs,
        "matches": len(found),
        "expected_matches": w.expected_matches(values),
        "all_match": all(r.data.metrics["m0"] > 0.5 for r in found),
        "warmup_ms": warmup * 1000,
        "repeats": args.search_repeats,
        **w.summarize_ms(samples),
    }
    result["environment"] = w.environment(
        ["mlflow", "mlflow-skinny", "sqlalchemy", "alembic", "pandas"]
    )
    w.write_result(args.out, result)


if __name__ == "__main__":
    main()
