"""`fedloop ui` as a real process: the dashboard alone over a store, read-only, with logins."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from _processes import stderr_line, url_in
from fedloop.core import resolve
from fedloop.store import open_workspace

FEDLOOP = Path(sys.executable).with_name("fedloop")


def _ready(http: httpx.Client, timeout_s: float = 60) -> httpx.Response:
    """Return the first answer of /health/live (the socket is bound before the app starts)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return http.get("/health/live")
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_fedloop_ui_serves_the_dashboard_behind_a_login(tmp_path: Path) -> None:
    """With a key in the store, pages redirect to the login; a viewer's key opens them."""
    # Arrange
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        _, key = ws.metadata.create_credential("api", "ana", role="viewer")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    proc = subprocess.Popen(
        [str(FEDLOOP), "--project", "default", "ui", "--port", "0"],
        cwd=tmp_path,
        env={**env, "FEDLOOP_PROJECT__DIR": str(tmp_path / ".fedloop")},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = url_in(stderr_line(proc, "dashboard at"))

        # Act
        with httpx.Client(base_url=url, timeout=10) as http:
            health = _ready(http)
            redirect = http.get("/ui/runs")
            form = http.get("/ui/login")
            token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
            assert token
            login = http.post("/ui/login", data={"key": key, "csrf": token.group(1)})
            runs = http.get("/ui/runs")
            loop = http.get("/ui/loop")
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    # Assert
    assert health.status_code == 200
    assert redirect.status_code == 303
    assert redirect.headers["location"].startswith("/ui/login")
    assert login.status_code == 303
    assert runs.status_code == 200
    assert "ana" in runs.text
    assert "read-only" in loop.text
