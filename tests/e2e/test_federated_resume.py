"""A coordinator killed with SIGKILL and restarted finishes with the uninterrupted model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedloop.core import resolve
from fedloop.store import open_workspace

ARGS = [
    "--clients",
    "3",
    "--rows",
    "20000",
    "--rounds",
    "6",
    "--backend",
    "inprocess",
    "--no-register",
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}


def _simulate(cwd: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fedloop.cli", "federated", "simulate", *ARGS, *extra],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _rounds(cwd: Path) -> tuple[str | None, list[tuple[int, str]]]:
    db = cwd / ".fedloop" / "fedloop.db"
    if not db.exists():
        return None, []
    with open_workspace(resolve({"project": {"dir": str(cwd / ".fedloop")}}, {}, {}).config) as ws:
        runs = ws.metadata.search_runs(ws.project.id, filter="kind = 'federated'")
        if not runs:
            return None, []
        run_id = runs[0].id
        return run_id, [(r.round, r.parameters_digest) for r in ws.metadata.list_fl_rounds(run_id)]


@pytest.mark.slow
def test_sigkilled_coordinator_resumes_bit_for_bit(tmp_path: Path) -> None:
    """Kill the coordinator mid-run, resume it, and get the same final weights as a clean run."""
    # Arrange: an uninterrupted reference run
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    reference = _simulate(clean)
    assert reference.wait(timeout=300) == 0
    _, clean_rounds = _rounds(clean)

    # Act: start the same run, SIGKILL it after round 2, then resume it
    victim = _simulate(killed)
    deadline = time.monotonic() + 120
    run_id, done = None, []
    while time.monotonic() < deadline:
        run_id, done = _rounds(killed)
        if done and done[-1][0] >= 2:
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    _, at_kill = _rounds(killed)
    assert run_id is not None
    assert at_kill[-1][0] < 6, "the run finished before it could be killed"
    resumed = _simulate(killed, "--resume", run_id)
    assert resumed.wait(timeout=300) == 0

    # Assert: same rounds, same content-addressed weights after every round
    _, killed_rounds = _rounds(killed)
    assert [r for r, _ in killed_rounds] == list(range(7))
    assert killed_rounds == clean_rounds
