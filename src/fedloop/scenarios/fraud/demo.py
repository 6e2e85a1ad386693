"""``fedloop demo``: card fraud across 5 banks, a shifting fraud pattern, the loop closing itself."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedloop.api.background import serve_in_thread
from fedloop.api.control import create_control_app
from fedloop.automation import Controller
from fedloop.core import (
    AutomationConfig,
    MonitoringConfig,
    ServingConfig,
    resolve,
)
from fedloop.monitoring import Monitor, render_report
from fedloop.registry import CHAMPION, ModelRegistry
from fedloop.scenarios.fraud.loop import federated_round_trip
from fedloop.scenarios.fraud.shift import (
    central_baseline,
    holdout_data,
    make_world,
    shift_adapter,
    traffic,
)
from fedloop.serving import create_app
from fedloop.store import Workspace, open_workspace

__all__ = ["DemoResult", "run"]

MODEL = "bank-fraud"
#: Held-out post-shift rows on which the recovered and the central model are compared.
_TEST_ROWS = 50_000


def _holdout_auc(ws: Workspace, world: Any, version: int, params: dict[str, Any]) -> float:
    """Return the AUC of a registered version on the post-shift held-out set of the baseline."""
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    adapter = shift_adapter(int(params["seed"]), hidden=tuple(params["hidden"]))
    adapter.set_parameters(registry.load_weights(ws.metadata.get_model_version(MODEL, version)))
    x, y = holdout_data(world, "after", rows=_TEST_ROWS)
    return float(adapter.evaluate(x, y)["auc"])


@dataclass
class DemoResult:
    """What the demo measured."""

    seconds: float
    auc_before: float | None
    auc_during: float | None
    auc_after: float | None
    auc_central: float
    time_to_recover_s: float | None
    holdout_recovered: float | None
    promoted_version: int | None
    report: Path
    actions: list[dict[str, Any]] = field(default_factory=list)


class _Traffic:
    """Card transactions hitting the inference server, and their labels arriving later."""

    def __init__(self, url: str, world: Any, *, rate_per_s: float, label_delay_s: float) -> None:
        self.url, self.world = url, world
        self.rate_per_s, self.label_delay_s = rate_per_s, label_delay_s
        self.regime = "before"
        self.sent = 0
        self.errors = 0
        self._stop = threading.Event()
        self._pending: list[tuple[float, str, int]] = []
        #: (wall time, version that answered, score, label) of every answered request.
        self.answered: list[tuple[float, str, float, int]] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._send, daemon=True, name="demo-traffic"),
            threading.Thread(target=self._label, daemon=True, name="demo-labels"),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _send(self) -> None:
        batch, i, seed = None, 0, 0
        period = 1.0 / self.rate_per_s
        regime = ""
        with httpx.Client(timeout=10) as http:
            next_at = time.monotonic()
            while not self._stop.is_set():
                if batch is None or i >= len(batch[0]) or regime != self.regime:
                    regime, seed, i = self.regime, seed + 1, 0
                    batch = traffic(self.world, regime, rows=2_000, seed=seed)
                x, y = batch
                rid = f"{regime[0]}{seed}-{i}"
                try:
                    answer = http.post(
                        f"{self.url}/v1/models/{MODEL}:predict",
                        json={"instances": [x[i].tolist()]},
                        headers={"x-request-id": rid},
                    )
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.sent += 1
                if ok:
                    doc = answer.json()
                    self.answered.append(
                        (time.time(), doc["model_version"], float(doc["predictions"][0]), int(y[i]))
                    )
                    with self._lock:
                        self._pending.append(
                            (time.monotonic() + self.label_delay_s, rid, int(y[i]))
                        )
                else:
                    self.errors += 1
                i += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()

    def _label(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(0.5):
                now = time.monotonic()
                with self._lock:
                    due = [p for p in self._pending if p[0] <= now]
                    self._pending = [p for p in self._pending if p[0] > now]
                if due:
                    with contextlib.suppress(httpx.HTTPError):
                        http.post(
                            f"{self.url}/v1/feedback",
                            json={"labels": [{"request_id": r, "label": y} for _, r, y in due]},
                        )


def _policy(
    params: dict[str, Any], *, rounds: int, step_s: float, step_requests: int
) -> AutomationConfig:
    return AutomationConfig.model_validate(
        {
            "tick_s": 0.5,
            "policies": [
                {
                    "name": "fraud-drift",
                    "model": MODEL,
                    "trigger": {"on_drift": True, "min_windows": 2, "cooldown_s": 0},
                    "action": {
                        "kind": "federated",
                        "trainer": "fedloop.scenarios.fraud.loop:retrain",
                        "warm_start": True,
                        "rounds": rounds,
                        "params": params,
                    },
                    "gate": {"holdout": True, "metric": "auc", "min_improvement": 0.0},
                    "rollout": {
                        "steps": [0.2, 0.5, 1.0],
                        "step_min_s": step_s,
                        "step_min_requests": step_requests,
                        "max_error_rate": 0.02,
                        "max_p99_ms": 2_000.0,
                        "max_metric_drop": 0.05,
                    },
                }
            ],
        }
    )


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def run(
    ws_dir: Path,
    *,
    quick: bool = False,
    report: Path = Path("demo-report.html"),
    console: Console | None = None,
) -> DemoResult:
    """Run the demo end to end and write its HTML report.

    Parameters
    ----------
    ws_dir : Path
        A fresh project folder for the demo (deleted first).
    quick : bool, default False
        A smaller, faster run (CI): fewer rows, rounds and windows.
    report : Path
        Where the HTML report goes.
    console : Console or None
        Where the narrative goes (stderr by default).
    """
    out = console or Console(stderr=True)
    started = time.monotonic()
    # The narrative tells what the monitor and the controller do; their own log lines would
    # repeat it (they stay on for `fedloop up`).
    quiet = logging.getLogger("fedloop")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _run(ws_dir, quick=quick, report=report, out=out, started=started)
    finally:
        quiet.setLevel(level)


def _run(ws_dir: Path, *, quick: bool, report: Path, out: Console, started: float) -> DemoResult:
    if ws_dir.exists():
        shutil.rmtree(ws_dir)
    config = resolve({"project": {"dir": str(ws_dir), "name": "fraud-demo"}}, {}, {}).config
    rows = 20_000 if quick else 60_000
    params: dict[str, Any] = {"rows": rows, "hidden": [32, 16], "seed": 0, "world_seed": 0,
                              "backend": "local", "test_rows": 20_000}  # fmt: skip
    first_rounds, retrain_rounds = (5, 15) if quick else (8, 20)
    world = make_world(0)
    with open_workspace(config) as ws:
        out.rule("[bold]fedloop demo: card fraud across 5 banks")
        out.print(
            f"Five banks ({', '.join(world.banks)}) each keep their transactions in their own "
            "process; only model updates and binned summaries leave them."
        )
        # 1. Federated training ---------------------------------------------------------------
        with _progress(out) as bar:
            task = bar.add_task("1. federated training", total=first_rounds, auc="-")

            def on_round(report_: Any) -> None:
                auc = report_.metrics.get("eval_auc")
                bar.update(task, completed=report_.round_num, auc=f"{auc:.4f}" if auc else "-")

            mv, auc_v1 = federated_round_trip(
                ws, name=MODEL, regime="before", params=params, rounds=first_rounds,
                on_round=on_round,
            )  # fmt: skip
        out.print(
            f"1. Trained {MODEL} v{mv.version} over 5 banks: held-out AUC {auc_v1:.4f}; "
            "registered as champion with lineage and a reference profile merged from the banks."
        )
        result = _live(ws, world, params, retrain_rounds, quick=quick, out=out, report=report)
        out.print("   (training the central post-shift baseline for comparison)")
        result.auc_central = central_baseline(
            world, "after", rows=rows, epochs=10, seed=0, test_rows=_TEST_ROWS
        )
        if result.promoted_version is not None:
            result.holdout_recovered = _holdout_auc(ws, world, result.promoted_version, params)
    result.seconds = time.monotonic() - started
    _summary(out, result)
    return result


@contextlib.contextmanager
def _progress(out: Console) -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("round {task.completed}/{task.total}  AUC {task.fields[auc]}"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as bar:
        yield bar


def _live(
    ws: Workspace,
    world: Any,
    params: dict[str, Any],
    retrain_rounds: int,
    *,
    quick: bool,
    out: Console,
    report: Path,
) -> DemoResult:
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    window_rows = 600 if quick else 1_500
    rate = 250.0
    monitoring = MonitoringConfig.model_validate(
        {
            "window_rows": window_rows,
            "performance_window_labels": window_rows,
            "drift": {"multivariate": False},
        }
    )
    monitor = Monitor(ws, monitoring)
    automation = _policy(params, rounds=retrain_rounds, step_s=3.0 if quick else 5.0,
                         step_requests=300 if quick else 800)  # fmt: skip
    serving_config = ServingConfig.model_validate(
        {
            "models": [f"{MODEL}@{CHAMPION}"],
            "alias_poll_s": 0.25,
            "payload_log": {"flush_interval_s": 0.1},
        }
    )
    holder: dict[str, str] = {}
    controller = Controller(ws, automation, serving_url=None)
    control_app = create_control_app(monitor, controller, max_body_bytes=64 * 1024 * 1024)
    with serve_in_thread(control_app) as control_url:
        payload = serving_config.payload_log.model_copy(
            update={"url": f"{control_url}/v1/monitor/ingest"}
        )
        serving_config = serving_config.model_copy(update={"payload_log": payload})
        with serve_in_thread(create_app(serving_config, registry)) as serving_url:
            holder["serving"] = serving_url
            controller.serving_url = serving_url
            out.print(
                f"2. Serving {MODEL}@champion at {serving_url}; monitor and controller at "
                f"{control_url} (policy fraud-drift: retrain on drift, canary 20% -> 50% -> 100%)."
            )
            out.print(f"   Dashboard (while the demo runs): {control_url}/ui/")
            live = _Traffic(serving_url, world, rate_per_s=rate, label_delay_s=1.0)
            live.start()
            try:
                before_s = (3 if quick else 4) * window_rows / rate
                _wait(out, "3. live traffic, before the shift", before_s)
                shift_at = datetime.now(UTC)
                live.regime = "after"
                out.print(
                    "4. [bold]The fraud pattern shifts[/]: a new in-store burst fraud appears and "
                    "legitimate traffic moves (smaller amounts, more card-present, busier cards)."
                )
                promoted_at = _await_loop(ws, out, timeout_s=150 if quick else 170)
                after_s = (2 if quick else 3) * window_rows / rate
                if promoted_at is not None:
                    _wait(out, "7. live traffic on the new champion", after_s)
            finally:
                live.stop()
            out.print(f"   {live.sent} requests sent, {live.errors} failed.")
    monitor.close()
    return _result(ws, shift_at, promoted_at, report, live.answered)


def _wait(out: Console, label: str, seconds: float) -> None:
    with Progress(
        TextColumn(label), BarColumn(), TimeElapsedColumn(), console=out, transient=True
    ) as bar:
        task = bar.add_task(label, total=seconds)
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            bar.update(task, completed=elapsed)
            time.sleep(0.1)
    out.print(f"{label}: {seconds:.0f} s")


def _await_loop(ws: Workspace, out: Console, *, timeout_s: float) -> datetime | None:
    """Narrate the loop's actions until the challenger is promoted (or it ends otherwise)."""
    deadline = time.monotonic() + timeout_s
    last_seq = ws.metadata.list_events(limit=1_000_000)[-1].seq
    drift_told = 0
    with Progress(
        TextColumn("{task.description}"), TimeElapsedColumn(), console=out, transient=True
    ) as bar:
        task = bar.add_task("5. the monitor watches the new traffic", total=None)
        while time.monotonic() < deadline:
            for event in ws.metadata.list_events(after_seq=last_seq, limit=1000):
                last_seq = event.seq
                if event.kind == "monitor.drift_detected":
                    drift_told += 1
                    if drift_told > 2:  # the monitor keeps flagging until the new model serves
                        continue
                line = _narrate(event)
                if line:
                    bar.update(task, description=line)
                    out.print(f"   {event.at:%H:%M:%S} {line}")
            actions = ws.metadata.list_loop_actions(model_name=MODEL)
            if actions and actions[-1].state == "promoted":
                return actions[-1].updated_at
            if actions and actions[-1].state in ("rejected", "rolled_back", "failed"):
                return None
            time.sleep(0.3)
    out.print("[yellow]   the loop did not finish in time[/]")
    return None


def _narrate(event: Any) -> str:
    p = event.payload
    if event.kind in ("automation.run", "automation.updated"):
        return ""
    if event.kind == "monitor.drift_detected":
        cols = [f["column"] for f in p.get("findings", [])]
        return f"monitor: drift in {', '.join(cols[:5]) or 'the data set'}"
    if event.kind == "automation.triggered":
        return f"controller: triggered ({p.get('reason', '')})"
    if event.kind.startswith("automation."):
        return f"controller: {p.get('state', event.kind.split('.', 1)[1])}: {p.get('reason', '')}"
    if event.kind == "model.alias_moved":
        return f"registry: {event.subject} -> v{p.get('to_version')}"
    return ""


def _pooled_auc(answered: list[tuple[float, str, float, int]], keep: Any) -> float | None:
    """Return the ROC AUC over every answered request a phase keeps (labels pooled)."""
    from sklearn.metrics import roc_auc_score

    rows = [(score, label) for t, v, score, label in answered if keep(t, v)]
    if len({label for _, label in rows}) < 2:
        return None
    return float(roc_auc_score([label for _, label in rows], [score for score, _ in rows]))


def _result(
    ws: Workspace,
    shift_at: datetime,
    promoted_at: datetime | None,
    report: Path,
    answered: list[tuple[float, str, float, int]],
) -> DemoResult:
    windows = ws.metadata.list_monitor_windows(MODEL, limit=10_000)
    perf = [w for w in windows if w.kind == "performance"]
    champion = ws.metadata.find_alias(MODEL, CHAMPION)
    new_version = champion.version if champion and champion.version > 1 else None
    before = [
        w.summary["auc"]
        for w in perf
        if w.version == 1 and w.end_time <= shift_at and w.summary.get("auc") is not None
    ]
    during = [
        w.summary["auc"]
        for w in perf
        if w.version == 1 and w.start_time >= shift_at and w.summary.get("auc") is not None
    ]
    after = [
        w.summary["auc"] for w in perf
        if new_version is not None and w.version == new_version and promoted_at is not None
        and w.start_time >= promoted_at and w.summary.get("auc") is not None
    ]  # fmt: skip
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    drift = [w for w in windows if w.kind == "drift"]
    reference = (
        registry.find_profile(ws.metadata.get_model_version(MODEL, drift[-1].version))
        if drift
        else None
    )
    actions = ws.metadata.list_loop_actions(model_name=MODEL)
    events = [
        e
        for e in ws.metadata.list_events(limit=10_000)
        if e.kind.startswith(("automation.", "model.alias", "deployment.", "monitor.drift"))
    ]
    page, _ = render_report(
        MODEL, windows, reference=reference, generated_at=datetime.now(UTC), timeline=events
    )
    report.write_text(page, encoding="utf-8")
    shift_s = shift_at.timestamp()
    promoted_s = promoted_at.timestamp() if promoted_at else float("inf")
    new = str(new_version) if new_version else ""
    pooled_before = _pooled_auc(answered, lambda t, v: v == "1" and t < shift_s)
    pooled_during = _pooled_auc(answered, lambda t, v: v == "1" and shift_s <= t < promoted_s)
    pooled_after = _pooled_auc(answered, lambda t, v: v == new and t >= promoted_s)
    return DemoResult(
        seconds=0.0,
        auc_before=pooled_before if pooled_before is not None else _mean(before),
        auc_during=pooled_during if pooled_during is not None else _mean(during),
        auc_after=pooled_after if pooled_after is not None else _mean(after),
        auc_central=0.0,
        time_to_recover_s=(promoted_at - shift_at).total_seconds() if promoted_at else None,
        holdout_recovered=None,
        promoted_version=new_version,
        report=report,
        actions=[
            {"state": a.state, "trigger": a.trigger_ref, "challenger": a.challenger_version}
            for a in actions
        ],
    )


def _summary(out: Console, r: DemoResult) -> None:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    table = Table(title="fedloop demo: summary", title_justify="left", header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("live AUC before the shift (v1, all labelled requests)", fmt(r.auc_before))
    table.add_row("live AUC during the shift (v1 on the new traffic)", fmt(r.auc_during))
    table.add_row(
        f"live AUC after recovery (v{r.promoted_version or '-'} at 100%)", fmt(r.auc_after)
    )
    table.add_row(
        f"held-out post-shift AUC, recovered v{r.promoted_version or '-'} ({_TEST_ROWS:,} rows)",
        fmt(r.holdout_recovered),
    )
    table.add_row("held-out post-shift AUC, central model (same rows)", fmt(r.auc_central))
    gap = None if r.holdout_recovered is None else r.auc_central - r.holdout_recovered
    table.add_row("gap to central (goal <= 0.01)", fmt(gap))
    ttr = "-" if r.time_to_recover_s is None else f"{r.time_to_recover_s:.1f} s"
    table.add_row("time to recover (shift -> new model at 100%)", ttr)
    table.add_row("demo wall time", f"{r.seconds:.0f} s")
    out.print(table)
    out.print(f"Report: {r.report}")
