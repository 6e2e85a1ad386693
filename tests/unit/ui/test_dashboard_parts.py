"""The dashboard's parts: sessions, redirects, figures, graphs, audit paging, the open dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from _loopback import running
from fedloop.api import dashboard as api_dashboard
from fedloop.api.auth import Access
from fedloop.cli import ui as cli_ui
from fedloop.core import ApiConfig, Forbidden, Unauthenticated, resolve
from fedloop.store import (
    FlClientRound,
    FlRound,
    ModelVersion,
    StoreAuthenticator,
    Workspace,
    open_workspace,
)
from fedloop.ui import Sessions
from fedloop.ui.audit import newest_events, subject_href
from fedloop.ui.charts import round_figures
from fedloop.ui.graph import Edge, Node, layered_svg, version_tree
from fedloop.ui.login import safe_next
from fedloop.ui.models import privacy_rows
from fedloop.ui.runs import client_table


class FakeClock:
    """Seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class KeysRequired:
    """An Access stand-in that always asks for a key."""

    def __init__(self, ws: Workspace) -> None:
        self.authenticator = StoreAuthenticator(ws.metadata, "api", cache_s=0)

    def required(self) -> bool:
        return True

    def caller(self, authorization: str | None, needs: str, route: str) -> str | None:
        return self.authenticator.check(authorization).name


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as workspace:
        yield workspace


def test_a_session_ends_when_it_expires(ws: Workspace) -> None:
    """A login is good until its ttl passes."""
    # Arrange
    clock = FakeClock()
    sessions = Sessions(KeysRequired(ws), ws.metadata, ttl_s=60, clock=clock)  # type: ignore[arg-type]
    _, key = ws.metadata.create_credential("api", "ana", role="viewer")
    sid, viewer = sessions.login(key)

    # Act
    during = sessions.viewer({"fedloop_session": sid})
    clock.now += 61
    after = sessions.viewer({"fedloop_session": sid})

    # Assert
    assert (viewer.name, viewer.role) == ("ana", "viewer")
    assert during == viewer
    assert after is None


def test_a_session_ends_soon_after_its_key_is_revoked(ws: Workspace) -> None:
    """Revoking the key ends its dashboard sessions within recheck_s."""
    # Arrange
    clock = FakeClock()
    sessions = Sessions(KeysRequired(ws), ws.metadata, recheck_s=2, clock=clock)  # type: ignore[arg-type]
    _, key = ws.metadata.create_credential("api", "ana", role="operator")
    sid, _ = sessions.login(key)
    assert sessions.viewer({"fedloop_session": sid}) is not None

    # Act
    ws.metadata.revoke_credential("api", "ana", actor="test")
    clock.now += 2.5
    after = sessions.viewer({"fedloop_session": sid})

    # Assert
    assert after is None


def test_a_client_key_cannot_log_in_and_a_bad_key_is_unauthenticated(ws: Workspace) -> None:
    """Client keys only send payload logs (403); unknown keys are 401."""
    # Arrange
    sessions = Sessions(KeysRequired(ws), ws.metadata)  # type: ignore[arg-type]
    _, key = ws.metadata.create_credential("api", "server", role="client")

    # Act / Assert
    with pytest.raises(Forbidden, match=r"payload logs"):
        sessions.login(key)
    with pytest.raises(Unauthenticated):
        sessions.login("made-up")


def test_csrf_tokens_are_tied_to_the_cookie(ws: Workspace) -> None:
    """A token is valid with the cookie it was made for, and with no other."""
    # Arrange
    sessions = Sessions(None, ws.metadata)
    token, anchor = sessions.csrf_token({})
    assert anchor is not None

    # Act / Assert
    assert sessions.check_csrf({"fedloop_csrf": anchor}, token)
    assert not sessions.check_csrf({"fedloop_csrf": "other"}, token)
    assert not sessions.check_csrf({}, token)
    assert not sessions.check_csrf({"fedloop_csrf": anchor}, None)


def test_the_oldest_sessions_go_beyond_the_limit(ws: Workspace) -> None:
    """With max_sessions reached, a new login drops the oldest session."""
    # Arrange
    clock = FakeClock()
    sessions = Sessions(KeysRequired(ws), ws.metadata, max_sessions=2, clock=clock)  # type: ignore[arg-type]
    _, key = ws.metadata.create_credential("api", "ana", role="viewer")
    ids = []
    for _ in range(3):
        clock.now += 1
        ids.append(sessions.login(key)[0])

    # Act
    alive = [sessions.viewer({"fedloop_session": sid}) is not None for sid in ids]

    # Assert
    assert alive == [False, True, True]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("/ui/runs/abc?x=1", "/ui/runs/abc?x=1", id="a-page"),
        pytest.param("https://evil.example/ui/", "/ui/runs", id="another-site"),
        pytest.param("//evil.example/ui/", "/ui/runs", id="scheme-relative"),
        pytest.param("/ui\\@evil", "/ui/runs", id="backslash"),
        pytest.param("/ui/login", "/ui/runs", id="the-login-itself"),
        pytest.param("/elsewhere", "/ui/runs", id="outside-the-dashboard"),
        pytest.param(None, "/ui/runs", id="none"),
    ],
)
def test_after_login_only_dashboard_paths_are_followed(target: str | None, expected: str) -> None:
    """The login's next is never another site (no open redirect)."""
    # Act / Assert
    assert safe_next(target, prefix="/ui") == expected


@pytest.mark.parametrize(
    ("subject", "href"),
    [
        pytest.param("model:fraud/3", "/ui/models/fraud/3", id="version"),
        pytest.param("model:fraud@champion", "/ui/models/fraud", id="alias"),
        pytest.param("model:fraud", "/ui/models/fraud", id="model"),
        pytest.param("run:abc/round:2", "/ui/runs/abc", id="round"),
        pytest.param("deployment:fraud", "/ui/deployments", id="deployment"),
        pytest.param("credential:api/ana", None, id="credential"),
    ],
)
def test_event_subjects_link_to_their_pages(subject: str, href: str | None) -> None:
    """An audit event's subject leads to the page about it."""
    # Act / Assert
    assert subject_href(subject, prefix="/ui") == href


def test_the_audit_log_pages_backwards_with_filters(ws: Workspace) -> None:
    """Pages of newest events chain to older ones, with and without a kind filter."""
    # Arrange
    head = ws.metadata.latest_event_seq()
    for i in range(250):
        ws.metadata.append_event("test.even" if i % 2 == 0 else "test.odd", f"item:{i}")
    last = head + 250
    assert ws.metadata.latest_event_seq() == last

    # Act
    first, older = newest_events(ws.metadata, before=last + 1, limit=100)
    second, _ = newest_events(ws.metadata, before=older or 0, limit=100)
    odd, odd_older = newest_events(ws.metadata, before=last + 1, kind="test.odd", limit=100)

    # Assert
    assert [e.seq for e in first] == list(range(last, last - 100, -1))
    assert [e.seq for e in second] == list(range(last - 100, last - 200, -1))
    assert len(odd) == 100
    assert all(e.kind == "test.odd" for e in odd)
    assert odd_older is not None


def _round(num: int, metrics: dict[str, float]) -> FlRound:
    return FlRound(
        run_id="r", round=num, status="completed", parameters_digest="d", state_digest=None,  # type: ignore[arg-type]
        num_selected=3, num_succeeded=2, num_failed=1, bytes_up=2_000, bytes_down=1_000,
        seconds=0.5, metrics=metrics, created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


def test_round_figures_skip_round_zero_and_have_no_nan() -> None:
    """Round 0 (the initial model) is not charted; a NaN loss becomes a gap, valid JSON."""
    # Arrange
    rounds = [_round(0, {}), _round(1, {"train_loss": float("nan"), "eval_auc": 0.7})]

    # Act
    figures = round_figures(rounds)

    # Assert
    json.dumps(figures, allow_nan=False)
    loss = figures["loss"]["data"]
    assert [t["name"] for t in loss] == ["eval AUC"]  # the all-missing losses are left out
    assert loss[0]["x"] == [1]
    assert figures["clients"]["data"][1]["y"] == [1]  # dropouts
    assert figures["bytes"]["data"][0]["name"] == "kB up"


def test_client_table_counts_rounds_and_dropouts() -> None:
    """Per client: ok rounds, dropped ones, the last status and reason, bytes summed."""
    # Arrange
    ok = FlClientRound("a", "ok", None, 10, {"loss": 0.5}, 100, 50, 0.1)
    failed = FlClientRound("a", "timeout", "too slow", None, {}, 0, 50, 2.0)

    # Act
    rows = client_table([(1, ok), (2, failed)])

    # Assert
    assert rows == [
        {
            "client": "a", "ok": 1, "dropped": 1, "examples": 10, "loss": 0.5, "bytes_up": 100,
            "bytes_down": 100, "seconds": 2.1, "last_round": 2, "last_status": "timeout",
            "reason": "too slow",
        }
    ]  # fmt: skip


def test_privacy_rows_split_dp_and_secure_aggregation() -> None:
    """Epsilon and the DP ledger, then the SecAgg protocol; none for a plain version."""
    # Act
    both = privacy_rows(
        {"mechanism": "dp-fedavg", "epsilon": 3.5, "delta": 1e-5,
         "secure_aggregation": {"protocol": "secagg+", "neighbours": 4}}
    )  # fmt: skip
    none = privacy_rows(None)

    # Assert
    assert both["epsilon"] == 3.5
    assert ("mechanism", "dp-fedavg") in both["dp"]
    assert both["secure"] == [("neighbours", 4), ("protocol", "secagg+")]
    assert (none["dp"], none["secure"], none["epsilon"]) == ([], [], None)


def test_the_lineage_svg_escapes_labels_and_links_nodes() -> None:
    """Labels are text, links are anchors, edges between unknown nodes are skipped."""
    # Arrange
    nodes = [
        Node("a", "<script>x</script>", "d", "client", 0),
        Node("b", "v2", "champion", "current", 1, href="/ui/models/m/2"),
    ]

    # Act
    svg = str(layered_svg(nodes, [Edge("a", "b", "trained"), Edge("a", "zzz")], title="t"))

    # Assert
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert '<a href="/ui/models/m/2">' in svg
    assert svg.count('class="edge"') == 1


def test_the_fedloop_ui_command_and_its_app_agree_on_the_environment() -> None:
    """`fedloop ui` hands its config over in the variables the app factory reads."""
    # Act / Assert
    assert (cli_ui._CONFIG_ENV, cli_ui._HOST_ENV, cli_ui._SERVING_URL_ENV) == (
        api_dashboard.DASHBOARD_CONFIG_ENV,
        api_dashboard.DASHBOARD_HOST_ENV,
        api_dashboard.DASHBOARD_SERVING_URL_ENV,
    )


def test_the_read_only_dashboard_shows_a_broken_audit_chain(ws: Workspace) -> None:
    """An edited event turns the audit page's verification red, naming the event."""
    # Arrange
    ws.metadata.append_event("test.first", "item:1")
    edited = ws.metadata.append_event("test.second", "item:2", {"amount": 1})
    ws.metadata.append_event("test.third", "item:3")
    with ws.metadata.engine.begin() as conn:
        conn.execute(
            text("UPDATE events SET payload = :p WHERE seq = :s"),
            {"p": '{"amount":1000}', "s": edited.seq},
        )
    access = Access(StoreAuthenticator(ws.metadata, "api"), ApiConfig(), host="127.0.0.1")
    app = api_dashboard.create_dashboard_app(ws, access=access)

    # Act
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        audit = http.get("/ui/audit")
        loop = http.get("/ui/loop")
        deployments = http.get("/ui/deployments")
        trigger = http.post("/ui/loop/policies/any/trigger", data={"csrf": "x"})

    # Assert
    assert audit.status_code == 200
    assert 'data-ok="false"' in audit.text
    assert f"Chain broken at event #{edited.seq}" in audit.text
    assert "open · no login" in audit.text
    assert "read-only" in loop.text
    assert "this control plane knows no inference server" in deployments.text
    assert trigger.status_code == 403  # the CSRF token is checked before anything else


def test_the_version_tree_puts_each_child_right_of_its_parent() -> None:
    """v1 <- v2 <- v3 (listed newest first) lie in three columns; v4 without parent in the first."""

    # Arrange
    def version(number: int, parent: int | None) -> ModelVersion:
        return ModelVersion(
            id=f"id{number}", model_name="m", version=number, run_id=None,  # type: ignore[arg-type]
            parent_version_id=f"id{parent}" if parent else None,  # type: ignore[arg-type]
            weights_digest="w", onnx_digest="o", signature=None,  # type: ignore[arg-type]
            metrics={}, tags={}, privacy=None, description="",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip

    versions = [version(4, None), version(3, 2), version(2, 1), version(1, None)]

    # Act
    svg = str(version_tree(versions, prefix="/ui"))

    # Assert
    x = {
        node: float(left)
        for node, left in re.findall(r'data-node="(id\d)"><rect x="([0-9.]+)"', svg)
    }
    assert x["id1"] < x["id2"] < x["id3"]
    assert x["id4"] == x["id1"]
    assert svg.count('class="edge"') == 2
