"""W-SERVE: online inference, fedloop serve vs MLServer vs MLflow vs a thin endpoint, in one run.

One model prep, one load generator, every server in a fresh process. Systems (one row each in
``SYSTEMS``): ``thin`` (FastAPI + uvicorn calling onnxruntime: the limit), ``fedloop``
(``fedloop serve``), ``mlserver`` (its sklearn runtime), ``mlserver-onnx`` (a custom runtime on
the same ONNX graph) and ``mlflow`` (``mlflow models serve --env-manager local``).

1. Model prep (here, in .venv): the fraudlike data; the W-FL MLP 30-64-32-1 trained briefly
   with fedloop's TorchAdapter and exported to ONNX (``adapter.to_onnx()``); registered in a
   temporary fedloop store as ``fraud-fl`` with alias ``champion``. Peers that only take
   scikit-learn fit a LogisticRegression on the train split in their own venv
   (``peers/mlflow_serve_prep.py``, ``peers/mlserver_serve_prep.py``).
2. Each system is started as a subprocess on 127.0.0.1 with free ports and polled until ready
   (time to ready = launch to the first 200 of its readiness URL); one request of every size
   is checked (right number of predictions; ONNX systems must match onnxruntime within 1e-4).
3. For every load (1-row requests at concurrency 32, then 256-row requests at concurrency 8)
   the load generator (``peers/_loadgen.py``: aiohttp, keep-alive, closed loop, in its own
   process) warms up, then measures a timed window: requests/s, rows/s, p50/p99 latency,
   errors, and the CPU seconds of the server's process tree (and its own) during the window.
4. The server is stopped with SIGTERM to its process group (SIGKILL after 10 s).

The machine has few cores (2 here) and the server and the load generator share them: the
generator's CPU per request is reported next to the server's, and every system pays the same
generator cost, so ratios are fair while absolute numbers are below what a separate client
machine would show.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
VENVS = ROOT / ".bench-venvs"
BIN = Path(sys.executable).parent  # .venv/bin: fedloop's own console script lives here
DEFAULT_OUT = HERE / "out" / "w_serve.json"
MODEL_NAME = "fraud-fl"
NUM_FEATURES = 30

# Loads of WORKLOADS.md: (rows per request, concurrency).
LOADS: list[tuple[int, int]] = [(1, 32), (256, 8)]
# Goals of the issue, for fedloop: on 1-row requests >= 1.0x the thin endpoint's requests/s and
# <= its p99, >= 3x MLServer's requests/s; on 256-row requests >= 100k rows/s; no errors.
GOAL_VS_THIN = 1.0
GOAL_VS_MLSERVER = 3.0
GOAL_ROWS_PER_S = 100_000.0
ONNX_TOLERANCE = 1e-4
# Cores kept busy by other processes during a window above which its figures are flagged.
DISTURBED_CORES = 0.15


@dataclass(frozen=True)
class System:
    """One server under test: how to launch it and how to talk to it (one row of SYSTEMS).

    ``command`` (split with shlex first) and ``env`` are templates filled from the run's context (``{port}``,
    ``{store_url}``, ``{onnx}``, ...); ``fmt`` names the request/answer format (see ``encode``
    and ``decode``); ``model`` is ``onnx`` (the W-FL MLP) or ``lr`` (the LogisticRegression).
    """

    name: str
    command: str  # split like a shell line before the templates are filled
    ready: str
    infer: str
    fmt: str
    model: str
    env: dict[str, str] = field(default_factory=dict)
    needs: str = ""  # an executable that must exist (its venv)
    setup: str = ""  # how to get it
    ports: int = 1  # free ports the command takes: {port}, {port2}, {port3}
    payload_log: bool = False  # ships its payload log to the sink at {payload_log_url}


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            "thin",
            "{venvs}/thin/bin/python {peers}/thin_serve.py --model {onnx} --host 127.0.0.1"
            " --port {port}",
            ready="/health",
            infer="/predict",
            fmt="thin",
            model="onnx",
            needs="{venvs}/thin/bin/python",
            setup="bash benchmarks/setup_peers.sh thin",
        ),
        # fedloop serve with validation and metrics (on by default) and the payload log on,
        # shipping to the stand-in monitor peers/payload_sink_serve.py.
        System(
            "fedloop",
            "{bin}/fedloop --store-url {store_url} --artifacts-url {artifacts_url}"
            f" serve --model {MODEL_NAME}@champion --host 127.0.0.1 --port {{port}} --workers 1"
            " --payload-log-url {payload_log_url}",
            ready="/v2/health/ready",
            infer=f"/v2/models/{MODEL_NAME}/infer",
            fmt="v2",
            model="onnx",
            needs="{bin}/fedloop",
            setup="fedloop serve is part of fedloop (src/fedloop/serving)",
            payload_log=True,
        ),
        System(
            "mlserver",
            "{venvs}/mlserver/bin/mlserver start {work}/mlserver",
            ready="/v2/health/ready",
            infer="/v2/models/fraud-lr/infer",
            fmt="v2",
            model="lr",
            env={
                "MLSERVER_HTTP_PORT": "{port}",
                "MLSERVER_GRPC_PORT": "{port2}",
                "MLSERVER_METRICS_PORT": "{port3}",
            },
            needs="{venvs}/mlserver/bin/mlserver",
            setup="bash benchmarks/setup_peers.sh mlserver",
            ports=3,
        ),
        System(
            "mlserver-onnx",
            "{venvs}/mlserver/bin/mlserver start {work}/mlserver-onnx",
            ready="/v2/health/ready",
            infer=f"/v2/models/{MODEL_NAME}/infer",
            fmt="v2",
            model="onnx",
            env={
                "MLSERVER_HTTP_PORT": "{port}",
                "MLSERVER_GRPC_PORT": "{port2}",
                "MLSERVER_METRICS_PORT": "{port3}",
                "PYTHONPATH": "{peers}",
            },
            needs="{venvs}/mlserver/bin/mlserver",
            setup="bash benchmarks/setup_peers.sh mlserver",
            ports=3,
        ),
        System(
            "mlflow",
            "{venvs}/mlflow/bin/mlflow models serve -m {mlflow_model_uri} --env-manager local"
            " -h 127.0.0.1 -p {port} -w {mlflow_workers}",
            ready="/ping",
            infer="/invocations",
            fmt="mlflow",
            model="lr",
            # It launches `uvicorn` by name: the venv's bin must come first on PATH.
            env={
                "MLFLOW_TRACKING_URI": "{mlflow_tracking_uri}",
                "PATH": "{venvs}/mlflow/bin:{path}",
            },
            needs="{venvs}/mlflow/bin/mlflow",
            setup="bash benchmarks/setup_peers.sh mlflow",
        ),
    )
}
MLSERVER_ROWS = ("mlserver", "mlserver-onnx")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems")
    p.add_argument("--duration", type=float, default=15.0, help="timed seconds per load")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per load")
    p.add_argument(
        "--loads",
        default=",".join(f"{r}x{c}" for r, c in LOADS),
        help="ROWSxCONCURRENCY list (default 1x32,256x8)",
    )
    p.add_argument("--rows", type=int, default=200_000, help="fraudlike rows before the split")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of the W-FL MLP")
    p.add_argument("--mlflow-workers", type=int, default=1, help="uvicorn workers of MLflow")
    p.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to become ready")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--check", action="store_true", help="exit 1 when a fedloop goal is missed")
    return p.parse_args(argv)


# -- model prep ---------------------------------------------------------------------------------


def prepare_models(work: Path, rows: int, epochs: int, console: Console) -> dict[str, Any]:
    """Train, export and register the W-FL MLP; write the data for the peers' LogisticRegression.

    Returns the context the system templates are filled from, plus the test rows and the
    reference ONNX outputs for the correctness checks.
    """
    import onnxruntime as ort

    from fedloop.core import FedloopConfig, StoreConfig
    from fedloop.learn import TorchAdapter, mlp
    from fedloop.registry import CHAMPION, ModelRegistry
    from fedloop.scenarios.fraud.data import make_fraudlike
    from fedloop.store import open_workspace

    t0 = time.perf_counter()
    data = make_fraudlike(rows, seed=0)
    adapter = TorchAdapter(lambda: mlp(NUM_FEATURES), num_features=NUM_FEATURES, seed=0)
    adapter.fit(data.x_train, data.y_train, epochs=epochs)
    metrics = adapter.evaluate(data.x_test, data.y_test)
    graph = adapter.to_onnx()
    onnx_path = work / "model.onnx"
    onnx_path.write_bytes(graph)

    store_url = f"sqlite:///{work / 'fedloop' / 'fedloop.db'}"
    artifacts_url = str(work / "fedloop" / "artifacts")
    (work / "fedloop").mkdir()
    config = FedloopConfig(store=StoreConfig(url=store_url, artifacts_url=artifacts_url))
    with open_workspace(config, base=work) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        mv = registry.register(
            MODEL_NAME,
            weights=adapter.get_parameters(),
            onnx_model=graph,
            signature=adapter.signature(),
            metrics={"auc": metrics["auc"]},
            tags={"workload": "W-SERVE"},
            actor="w_serve",
            description="W-FL MLP 30-64-32-1 for W-SERVE",
        )
        registry.promote(MODEL_NAME, mv.version, alias=CHAMPION, actor="w_serve")
    np.savez(
        work / "data.npz",
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
    )
    # Request rows: test rows rounded to 6 decimals (the text every client sends); the
    # reference outputs come from the same rounded rows.
    x_req = np.round(data.x_test[:8192].astype(np.float64), 6)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    reference = session.run(None, {adapter.input_name: x_req.astype(np.float32)})[0].reshape(-1)
    console.print(
        f"model prep: MLP trained {epochs} epoch(s), test AUC {metrics['auc']:.4f}; "
        f"registered {MODEL_NAME} v{mv.version} as {CHAMPION} ({time.perf_counter() - t0:.1f} s)"
    )
    return {
        "work": str(work),
        "onnx": str(onnx_path),
        "store_url": store_url,
        "artifacts_url": artifacts_url,
        "mlp_test_auc": metrics["auc"],
        "x_req": x_req,
        "reference": reference,
    }


def run_peer_prep(python: Path, script: str, args: list[str], work: Path) -> dict[str, Any]:
    """Run a peer's prep script in its venv; return the JSON it prints."""
    proc = subprocess.run(
        [str(python), str(PEERS / script), *args],
        cwd=work,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- requests -----------------------------------------------------------------------------------


def encode(fmt: str, x: np.ndarray[Any, Any]) -> str:
    """Return the JSON body of one request carrying the rows ``x`` in format ``fmt``."""
    rows = x.tolist()
    if fmt == "thin":
        return json.dumps({"features": rows})
    if fmt == "v2":
        flat = [v for row in rows for v in row]
        tensor = {"name": "features", "shape": list(x.shape), "datatype": "FP32", "data": flat}
        return json.dumps({"inputs": [tensor]})
    if fmt == "mlflow":
        return json.dumps({"inputs": rows})
    raise ValueError(fmt)


def decode(fmt: str, answer: Any) -> list[float]:
    """Return the predictions in a server's JSON answer."""
    if fmt == "thin":
        return [float(v) for v in answer["probability"]]
    if fmt == "v2":
        return [float(v) for v in answer["outputs"][0]["data"]]
    if fmt == "mlflow":
        preds = answer["predictions"]
        return [float(v[0] if isinstance(v, list) else v) for v in preds]
    raise ValueError(fmt)


def write_bodies(path: Path, fmt: str, x_req: np.ndarray[Any, Any], rows: int) -> None:
    """Write a pool of distinct request bodies (up to 512 requests' worth of test rows)."""
    count = max(1, min(512, len(x_req) // rows))
    bodies = [encode(fmt, x_req[i * rows : (i + 1) * rows]) for i in range(count)]
    path.write_text(json.dumps(bodies))


def _post(url: str, body: str, timeout: float = 30.0) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")[:500]


def verify(
    system: System, base: str, ctx: dict[str, Any], loads: list[tuple[int, int]]
) -> dict[str, Any]:
    """Send one request of every size; check the count (and, for ONNX, the values)."""
    out: dict[str, Any] = {}
    for rows, _ in loads:
        x = ctx["x_req"][:rows]
        status, answer = _post(base + system.infer, encode(system.fmt, x))
        if status != 200:
            out[str(rows)] = {"ok": False, "status": status, "answer": str(answer)[:500]}
            continue
        preds = decode(system.fmt, answer)
        check: dict[str, Any] = {"ok": len(preds) == rows, "predictions": len(preds)}
        if system.model == "onnx" and len(preds) == rows:
            diff = float(np.max(np.abs(np.asarray(preds) - ctx["reference"][:rows])))
            check.update(max_abs_diff=diff, ok=diff <= ONNX_TOLERANCE)
        out[str(rows)] = check
    return out


# -- servers ------------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", **extra)
    for key in ("MLFLOW_TRACKING_URI", "FEDLOOP_STORE_URL", "FEDLOOP_CONFIG", "PYTHONPATH"):
        if key not in extra:
            env.pop(key, None)
    return env


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill(template: str, ctx: dict[str, Any]) -> str:
    return template.format(**{k: v for k, v in ctx.items() if isinstance(v, str | int)})


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_rss_mb(pid: int) -> float:
    total = 0
    for proc in _tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM the server's process group, SIGKILL it after 10 s; return seconds to exit."""
    t0 = time.perf_counter()
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # Children that outlived the leader (a worker pool) go with the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return time.perf_counter() - t0


def run_system(
    system: System, ctx: dict[str, Any], loads: list[tuple[int, int]], args: argparse.Namespace
) -> dict[str, Any]:
    """Start one server, check it, drive every load, stop it; return its measurements."""
    ports = [free_port() for _ in range(system.ports)]
    ctx = dict(ctx, port=ports[0], port2=ports[-1], port3=ports[-1])
    if system.ports >= 3:
        ctx.update(port2=ports[1], port3=ports[2])
    cmd = [_fill(c, ctx) for c in shlex.split(system.command)]
    env = _clean_env(**{k: _fill(v, ctx) for k, v in system.env.items()})
    work = Path(ctx["work"])
    log_path = work / f"{system.name}.log"
    base = f"http://127.0.0.1:{ctx['port']}"
    result: dict[str, Any] = {"command": cmd, "loads": {}}
    with log_path.open("wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdout=log, stderr=log, start_new_session=True
        )
        try:
            ready = False
            while time.perf_counter() - t0 < args.ready_timeout:
                if proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(base + system.ready, timeout=2) as resp:
                        if resp.status == 200:
                            ready = True
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    pass
                time.sleep(0.05)
            if not ready:
                raise RuntimeError(
                    f"{system.name} did not become ready (exit {proc.poll()}):\n"
                    f"{log_path.read_text(errors='replace')[-4000:]}"
                )
            result["ready_s"] = time.perf_counter() - t0
            result["idle_rss_mb"] = _tree_rss_mb(proc.pid)
            result["verify"] = verify(system, base, ctx, loads)
            for rows, concurrency in loads:
                bodies = work / f"bodies-{system.fmt}-{rows}.json"
                if not bodies.exists():
                    write_bodies(bodies, system.fmt, ctx["x_req"], rows)
                out = work / f"load-{system.name}-{rows}.json"
                gen = [sys.executable, str(PEERS / "_loadgen.py"), "--url", base + system.infer]
                gen += ["--bodies", str(bodies), "--header", "Content-Type: application/json"]
                gen += ["--rows", str(rows), "--concurrency", str(concurrency)]
                gen += ["--warmup", str(args.warmup), "--duration", str(args.duration)]
                gen += ["--server-pid", str(proc.pid), "--out", str(out)]
                done = subprocess.run(
                    gen,
                    capture_output=True,
                    text=True,
                    timeout=args.warmup + args.duration + 120,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"load generator failed:\n{done.stderr[-4000:]}")
                result["loads"][str(rows)] = json.loads(out.read_text())
                if proc.poll() is not None:
                    raise RuntimeError(f"{system.name} exited during the {rows}-row load")
            result["rss_after_mb"] = _tree_rss_mb(proc.pid)
        finally:
            result["stop_s"] = stop(proc)
    result["log_tail"] = log_path.read_text(errors="replace")[-2000:]
    return result


def start_sink(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the stand-in monitor that receives payload logs; return it and its ingest URL."""
    port = free_port()
    log = (work / "payload_sink.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(PEERS / "payload_sink_serve.py"), "--port", str(port)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}/ingest"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("the payload-log sink did not start")


def sink_counts(url: str, proc: subprocess.Popen[bytes] | None) -> dict[str, float]:
    """Return the sink's counts so far and its CPU seconds."""
    assert proc is not None
    with urllib.request.urlopen(url.replace("/ingest", "/count"), timeout=5) as resp:
        counts: dict[str, float] = json.loads(resp.read())
    counts["cpu_s"] = sum(t.user + t.system for t in (p.cpu_times() for p in _tree(proc.pid)))
    return counts


def fedloop_serve_available() -> tuple[bool, str]:
    """Return whether ``fedloop serve`` exists in this checkout (and why not)."""
    exe = BIN / "fedloop"
    if not exe.exists():
        return False, f"{exe} not found"
    proc = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        text = [ln.strip("│╭╰─ ") for ln in (proc.stderr + proc.stdout).splitlines()]
        lines = [ln for ln in text if any(c.isalpha() for c in ln) and not ln.startswith("Try ")]
        return False, (lines[-1] if lines else f"exit {proc.returncode}")[:200]
    return True, ""


def _versions(python: Path, packages: list[str]) -> dict[str, str | None]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n"
        "    try: return m.version(p)\n"
        "    except Exception: return None\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))"
    )
    proc = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, timeout=60
    )
    try:
        return dict(json.loads(proc.stdout))
    except json.JSONDecodeError:
        return {}


# -- report -------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _goals(res: dict[str, Any], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Evaluate fedloop's goals (None where a reference system was not measured)."""
    goals: dict[str, Any] = {}
    one = res["loads"].get("1")
    thin = results.get("thin", {}).get("loads", {}).get("1")
    if one is not None:
        if thin is not None:
            goals["1-row req/s >= 1.0x thin"] = one["req_per_s"] >= GOAL_VS_THIN * thin["req_per_s"]
            goals["1-row p99 <= thin"] = (
                one["p99_ms"] is not None and one["p99_ms"] <= thin["p99_ms"]
            )
        mls = [results[m]["loads"]["1"]["req_per_s"] for m in MLSERVER_ROWS if m in results]
        if mls:
            goals["1-row req/s >= 3x MLServer"] = one["req_per_s"] >= GOAL_VS_MLSERVER * max(mls)
    big = res["loads"].get("256")
    if big is not None:
        goals["256-row rows/s >= 100k"] = big["rows_per_s"] >= GOAL_ROWS_PER_S
    goals["no errors"] = all(load["errors"] == 0 for load in res["loads"].values())
    goals["answers correct"] = all(v.get("ok") for v in res.get("verify", {}).values())
    return goals


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_tables(
    console: Console,
    results: dict[str, dict[str, Any]],
    loads: list[tuple[int, int]],
    args: argparse.Namespace,
) -> None:
    """Print one table per load."""
    for rows, concurrency in loads:
        key = str(rows)
        thin = results.get("thin", {}).get("loads", {}).get(key)
        mls = [
            results[m]["loads"][key]
            for m in MLSERVER_ROWS
            if key in results.get(m, {}).get("loads", {})
        ]
        best_mls = max(mls, key=lambda r: r["req_per_s"]) if mls else None
        table = Table(
            title=(
                f"W-SERVE, {rows}-row requests, concurrency {concurrency}, "
                f"{args.duration:g} s after {args.warmup:g} s warm-up "
                f"({os.cpu_count()} CPUs shared by server and load generator)"
            ),
            title_justify="left",
            header_style="bold",
        )
        for col in (
            "system",
            "model",
            "req/s",
            "rows/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU ms/req",
            "loadgen CPU ms/req",
            "other cores",
            "ready s",
            "RSS MB",
            "x thin req/s",
            "p99 / thin",
            "x MLServer req/s",
        ):
            table.add_column(col, justify="left" if col in ("system", "model") else "right")
        for name, res in results.items():
            load = res["loads"].get(key)
            if load is None:
                continue
            table.add_row(
                name,
                "MLP onnx" if SYSTEMS[name].model == "onnx" else "LogReg",
                f"{load['req_per_s']:,.0f}",
                f"{load['rows_per_s']:,.0f}",
                _f(load["p50_ms"], ".1f"),
                _f(load["p99_ms"], ".1f"),
                str(load["errors"]),
                _f(load["server_cpu_ms_per_req"], ".2f"),
                _f(load["loadgen_cpu_ms_per_req"], ".2f"),
                _f(load.get("other_cpu_cores"), ".2f"),
                _f(res["ready_s"], ".1f"),
                _f(res.get("rss_after_mb"), ".0f"),
                _f(_ratio(load["req_per_s"], thin and thin["req_per_s"]), ".2f"),
                _f(_ratio(load["p99_ms"], thin and thin["p99_ms"]), ".2f"),
                _f(_ratio(load["req_per_s"], best_mls and best_mls["req_per_s"]), ".2f"),
            )
        console.print(table)
    disturbed = [
        f"{name} ({rows} rows: {load['other_cpu_cores']:.2f} cores)"
        for name, res in results.items()
        for rows, load in res["loads"].items()
        if load.get("other_cpu_cores", 0.0) > DISTURBED_CORES
    ]
    if disturbed:
        console.print(
            "[yellow]other processes kept the CPUs busy during: "
            + ", ".join(disturbed)
            + "; those figures are low (rerun on a quiet machine)[/]"
        )


def main(argv: list[str] | None = None) -> int:
    """Run W-SERVE for every available system; print tables, write JSON."""
    args = parse_args(argv)
    console = Console(width=210)
    loads = [(int(r), int(c)) for r, c in (x.split("x") for x in args.loads.split(","))]
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        console.print(f"[red]unknown systems {unknown}; known: {list(SYSTEMS)}[/]")
        return 2
    skipped: dict[str, str] = {}
    base_ctx = {
        "venvs": str(VENVS),
        "peers": str(PEERS),
        "bin": str(BIN),
        "root": str(ROOT),
        "path": os.environ.get("PATH", ""),
    }
    for name in list(systems):
        system = SYSTEMS[name]
        if system.needs and not Path(_fill(system.needs, base_ctx)).exists():
            skipped[name] = f"not set up ({system.setup})"
    if "fedloop" in systems and "fedloop" not in skipped:
        ok, why = fedloop_serve_available()
        if not ok:
            skipped["fedloop"] = f"`fedloop serve` is not available in this checkout: {why}"
    for name, why in skipped.items():
        console.print(f"[yellow]skipping {name}: {why}[/]")
    systems = [s for s in systems if s not in skipped]

    work = Path(tempfile.mkdtemp(prefix="w_serve-"))
    report: dict[str, Any] = {
        "workload": "W-SERVE",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "server and load generator share these CPUs",
        },
        "loads": [{"rows": r, "concurrency": c} for r, c in loads],
        "skipped": skipped,
        "systems": {},
        "failed": {},
    }
    results: dict[str, dict[str, Any]] = {}
    sink: subprocess.Popen[bytes] | None = None
    try:
        ctx = prepare_models(work, args.rows, args.epochs, console)
        ctx.update(base_ctx, mlflow_workers=str(args.mlflow_workers))
        report["model"] = {
            "mlp_test_auc": ctx["mlp_test_auc"],
            "onnx_bytes": Path(ctx["onnx"]).stat().st_size,
        }
        if "mlflow" in systems:
            prep = run_peer_prep(
                VENVS / "mlflow" / "bin" / "python",
                "mlflow_serve_prep.py",
                ["--data", str(work / "data.npz"), "--workdir", str(work / "mlflow")],
                work,
            )
            ctx.update(mlflow_model_uri=prep["model_uri"], mlflow_tracking_uri=prep["tracking_uri"])
            report["model"]["mlflow_lr"] = prep
        if any(s in systems for s in MLSERVER_ROWS):
            prep = run_peer_prep(
                VENVS / "mlserver" / "bin" / "python",
                "mlserver_serve_prep.py",
                ["--data", str(work / "data.npz"), "--onnx", ctx["onnx"], "--workdir", str(work)],
                work,
            )
            report["model"]["mlserver_lr"] = prep
        if any(SYSTEMS[name].payload_log for name in systems):
            sink, ctx["payload_log_url"] = start_sink(work)
        for name in systems:
            console.print(f"{name}: starting ...")
            before = sink_counts(ctx["payload_log_url"], sink) if SYSTEMS[name].payload_log else {}
            try:
                results[name] = run_system(SYSTEMS[name], ctx, loads, args)
            except Exception as err:  # one failing peer must not sink the run
                console.print(f"[red]{name} failed: {err}[/]")
                report["failed"][name] = str(err)[-4000:]
                continue
            res = results[name]
            if before:
                time.sleep(1.0)  # the last batch of records is on its way
                after = sink_counts(ctx["payload_log_url"], sink)
                res["payload_log"] = {k: after[k] - before[k] for k in after}
                console.print(
                    f"{name}: payload log shipped {res['payload_log']['records']:,.0f} records "
                    f"in {res['payload_log']['posts']:,.0f} POSTs (sink CPU "
                    f"{res['payload_log']['cpu_s']:.2f} s, not counted as server CPU)"
                )
            bad = {k: v for k, v in res["verify"].items() if not v.get("ok")}
            if bad:
                console.print(f"[red]{name}: wrong answers {bad}[/]")
            summary = ", ".join(
                f"{r}-row {load['req_per_s']:,.0f} req/s p99 {_f(load['p99_ms'], '.1f')} ms"
                for r, load in res["loads"].items()
            )
            console.print(f"{name}: ready in {res['ready_s']:.1f} s; {summary}")
    finally:
        if sink is not None:
            stop(sink)
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print_tables(console, results, loads, args)
    goals_met = True
    if "fedloop" in results:
        goals = _goals(results["fedloop"], results)
        results["fedloop"]["goals"] = goals
        goals_met = all(goals.values())
        for goal, met in goals.items():
            console.print(f"fedloop goal {goal}: {'PASS' if met else '[red]FAIL[/]'}")
    elif "fedloop" in skipped or "fedloop" in report["failed"]:
        goals_met = False
        console.print("[yellow]fedloop was not measured: its goals cannot be checked[/]")
    environments = {
        "orchestrator": _versions(
            Path(sys.executable), ["fedloop", "aiohttp", "onnxruntime", "torch"]
        ),
    }
    for name, pkgs in (
        ("thin", ["fastapi", "uvicorn", "onnxruntime", "uvloop", "httptools"]),
        ("mlserver", ["mlserver", "mlserver-sklearn", "scikit-learn", "onnxruntime", "uvloop"]),
        ("mlflow", ["mlflow", "scikit-learn", "uvicorn", "fastapi"]),
    ):
        python = VENVS / name / "bin" / "python"
        if python.exists():
            environments[name] = _versions(python, pkgs)
    report["environments"] = environments
    report["systems"] = results
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")
    failed = bool(report["failed"]) or not goals_met
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
