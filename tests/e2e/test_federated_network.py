"""A real federation over loopback (HTTP/2): a coordinator process and 3 clients, one SIGKILLed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fedloop.core import resolve
from fedloop.scenarios.fraud import make_fraudlike
from fedloop.store import open_workspace

ROUNDS = 6
MODEL = "mlp:30,16"
MODEL_NAME = "federated-mlp-30-16"
CLIENTS = ["client-001", "client-002", "client-003"]
SERVE = (
    f"serve --enroll 3 --token-file tokens.json --rounds {ROUNDS} --clients-per-round 3 "
    f"--min-clients 2 --local-epochs 2 --round-timeout 60 --heartbeat-timeout 3 --port 0 "
    f"--model {MODEL} --eval-data test.csv --wait-clients 3 --wait-timeout 60"
)
CLIENT = (
    "client --server {url} --client-id {id} --token-file tokens.json --data {data} "
    f"--model {MODEL} --poll-wait 2 --give-up-after 30"
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    header = ",".join([*(f"f{i}" for i in range(x.shape[1])), "is_fraud"])
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="", fmt="%.7g")
    return path


def _cli(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fedloop.cli", "federated", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class _Lines:
    """Collect a stream's lines in a thread (so that the pipe never fills up)."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def find(self, pattern: str, *, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            time.sleep(0.05)
        raise AssertionError(f"no line matched {pattern!r}:\n{''.join(self.lines)}")

    @property
    def text(self) -> str:
        self._thread.join(timeout=5)
        return "".join(self.lines)


def _store(cwd: Path):  # type: ignore[no-untyped-def]
    return open_workspace(resolve({"project": {"dir": str(cwd / ".fedloop")}}, {}, {}).config)


def _last_round(cwd: Path) -> int:
    if not (cwd / ".fedloop" / "fedloop.db").exists():
        return -1
    with _store(cwd) as ws:
        runs = ws.metadata.search_runs(ws.project.id, filter="kind = 'federated'")
        if not runs:
            return -1
        last = ws.metadata.latest_fl_round(runs[0].id)
        return last.round if last is not None else -1


def test_coordinator_and_three_client_processes_survive_a_killed_client(tmp_path: Path) -> None:
    """A client SIGKILLed mid-run is dropped; the run finishes every round with the others."""
    # Arrange: three silos' CSVs and an evaluation CSV
    data = make_fraudlike(6000, seed=0)
    silos = np.array_split(np.arange(len(data.y_train)), 3)
    files = [
        _write_csv(tmp_path / f"silo-{i}.csv", data.x_train[idx], data.y_train[idx])
        for i, idx in enumerate(silos)
    ]
    _write_csv(tmp_path / "test.csv", data.x_test, data.y_test)
    procs: list[subprocess.Popen[str]] = []
    try:
        server = _cli(tmp_path, *SERVE.split())
        procs.append(server)
        server_err = _Lines(server.stderr)
        url = server_err.find(r"Coordinator at (http://127\.0\.0\.1:\d+)", timeout_s=60).group(1)
        assert oct((tmp_path / "tokens.json").stat().st_mode)[-3:] == "600"

        clients = [
            _cli(tmp_path, *(a.format(url=url, id=client_id, data=path) for a in CLIENT.split()))
            for client_id, path in zip(CLIENTS, files, strict=True)
        ]
        procs.extend(clients)
        client_errs = [_Lines(c.stderr) for c in clients]

        # Act: SIGKILL the third client once round 1 is recorded
        deadline = time.monotonic() + 60
        while _last_round(tmp_path) < 1 and time.monotonic() < deadline:
            assert server.poll() is None, server_err.text
            time.sleep(0.02)
        os.kill(clients[2].pid, signal.SIGKILL)
        clients[2].wait(timeout=10)
        at_kill = _last_round(tmp_path)  # the next round may still have its result
        server_rc = server.wait(timeout=60)
        survivors = [c.wait(timeout=30) for c in clients[:2]]

        # Assert: the server and the survivors exited cleanly, every round is recorded
        assert server_rc == 0, server_err.text
        assert survivors == [0, 0], [e.text for e in client_errs[:2]]
        assert 1 <= at_kill < ROUNDS - 1, "the run ended before the client could be killed"
        run_id = server.stdout.read().strip() if server.stdout else ""
        with _store(tmp_path) as ws:
            run = ws.metadata.get_run(run_id)
            rounds = ws.metadata.list_fl_rounds(run_id)
            rows = ws.metadata.list_fl_client_rounds(run_id)
            model = ws.metadata.get_model_version(MODEL_NAME, 1)
        assert run.status == "finished"
        assert [r.round for r in rounds] == list(range(ROUNDS + 1))
        assert all(r.status == "completed" for r in rounds)
        killed = [(n, row.status, row.reason) for n, row in rows if row.client_id == CLIENTS[2]]
        assert any(n > at_kill and "lost contact" in (why or "") for n, _, why in killed), killed
        assert all(status in ("timeout", "failed") for n, status, _ in killed if n > at_kill + 1)
        last = [row for n, row in rows if n == ROUNDS]
        assert {row.client_id for row in last if row.status == "ok"} == set(CLIENTS[:2])
        assert "eval_auc" in rounds[-1].metrics
        assert "submitted" in client_errs[0].text

        # Assert: the final model is registered as champion, crediting each client's rounds
        assert model.run_id == run_id
        assert model.aliases == ("champion",)
        assert [(c.contributor, c.rounds) for c in model.contributors] == [
            (c, tuple(n for n, row in rows if row.client_id == c and row.status == "ok"))
            for c in CLIENTS
        ]
        assert all(n <= at_kill + 1 for n in model.contributors[2].rounds)
        assert f"Registered {MODEL_NAME} v1 (champion) with lineage over 3 clients" in (
            server_err.text
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
