"""W-TRACK worker for fedloop: run in a fresh process on a fresh SQLite file (see w_track.py)."""

from __future__ import annotations

import time
from typing import Any

import _workload as w


def main() -> None:
    args = w.parse_args(__doc__ or "")
    args.workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(args.workdir / 'fedloop.db').resolve()}"
    result: dict[str, Any] = {"system": "fedloop", "tracking_uri": url}

    # -- start-up: import + open the store (fresh file: create schema, migrate) + a project ------
    t0 = time.perf_counter()
    from fedloop.store import MetricPoint, SqlMetadataStore, start_run

    t1 = time.perf_counter()
    store = SqlMetadataStore(url)
    project = store.ensure_project("w-track-points")
    t2 = time.perf_counter()
    result["startup"] = {"import_s": t1 - t0, "open_s": t2 - t1, "total_s": t2 - t0}

    # -- 1a. one run, N points, one call each; timed until ended (buffer flushed, status set) ----
    run = start_run("points-one-call", project=project.name, store=store)
    t0 = time.perf_counter()
    for step in range(args.points):
        run.log_metric(w.POINT_KEY, w.point_value(step), step=step)
    run.end()
    elapsed = time.perf_counter() - t0
    stored = len(store.get_metric_history(run.id, w.POINT_KEY))
    result["points_one_call"] = {
        "points": args.points,
        "seconds": elapsed,
        "points_per_s": args.points / elapsed,
        "stored": stored,
    }

    # -- 1b. batch API: log_metric_points in batches of batch_size (synchronous, durable) --------
    brun = store.create_run(project.id, name="points-batch")
    t0 = time.perf_counter()
    for start in range(0, args.batch_points, args.batch_size):
        now_ms = int(time.time() * 1000)
        batch = [
            (brun.id, MetricPoint(w.POINT_KEY, w.point_value(step), step, now_ms))
            for step in range(start, min(start + args.batch_size, args.batch_points))
        ]
        store.log_metric_points(batch)
    elapsed = time.perf_counter() - t0
    store.set_run_status(brun.id, "finished")
    result["points_batch"] = {
        "points": args.batch_points,
        "batch_size": args.batch_size,
        "seconds": elapsed,
        "points_per_s": args.batch_points / elapsed,
        "stored": len(store.get_metric_history(brun.id, w.POINT_KEY)),
    }

    # -- 2. runs with 10 params (one call) and 10 metrics (one call), ended ---------------------
    values = w.run_values(args.runs, args.seed)
    runs_project = store.ensure_project("w-track-runs")
    t0 = time.perf_counter()
    for i, (params, metrics) in enumerate(values):
        with start_run(f"run-{i}", project=runs_project.name, store=store) as active:
            active.log_params(params)
            active.log_metrics(metrics, step=0)
    elapsed = time.perf_counter() - t0
    result["runs"] = {
        "runs": args.runs,
        "seconds": elapsed,
        "runs_per_s": args.runs / elapsed,
        "stored": store.count_runs(runs_project.id),
    }

    # -- 3. search with a metric filter, all matches ----------------------------------------------
    def search() -> list[Any]:
        return store.search_runs(
            runs_project.id, filter=w.SEARCH_FILTER, max_results=max(args.runs, 1)
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
        "all_match": all(r.latest_metrics["m0"] > 0.5 for r in found),
        "warmup_ms": warmup * 1000,
        "repeats": args.search_repeats,
        **w.summarize_ms(samples),
    }
    store.close()
    result["environment"] = w.environment(["fedloop", "sqlalchemy", "alembic"])
    w.write_result(args.out, result)


if __name__ == "__main__":
    main()
