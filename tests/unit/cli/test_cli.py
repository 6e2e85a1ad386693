"""The fedloop CLI: commands over a prepared store, JSON output, exit codes and error rendering."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli import sigmoid_graph, store_args
from typer.testing import CliRunner, Result

from fedloop import __version__
from fedloop.cli import app, main
from fedloop.core import InvalidInput, NotFound, fingerprint_arrays, resolve
from fedloop.registry import ModelRegistry, read_package
from fedloop.store import open_workspace, start_run

MODEL = "fraud"


@dataclass(frozen=True)
class Prepared:
    """A project folder with a store holding runs, data sets and model versions."""

    root: Path
    run_id: str
    weak_run_id: str

    @property
    def db(self) -> Path:
        """Return the SQLite file."""
        return self.root / ".fedloop" / "fedloop.db"

    @property
    def store_args(self) -> list[str]:
        """Return the global flags that point the CLI at this store."""
        return store_args(self.root)


@pytest.fixture
def prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    """Return a project in tmp_path: two runs, two data sets, fraud v1 (champion) and v2."""
    monkeypatch.chdir(tmp_path)
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        datasets = []
        for role, seed in (("train", 0), ("eval", 1)):
            x = np.random.default_rng(seed).normal(size=(8, 4))
            ds = ws.metadata.register_dataset(
                ws.project.id, f"tx-{role}", fingerprint=fingerprint_arrays(x), num_rows=8
            )
            datasets.append((ds.id, role))
        with start_run(
            "train",
            params={"lr": 0.05},
            dataset_ids=datasets,
            store=ws.metadata,
            artifacts=ws.artifacts,
        ) as run:
            run.log_metric("auc", 0.8, step=0)
        with start_run("weak", store=ws.metadata) as weak:
            weak.log_metric("auc", 0.3, step=0)
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        weights = {"w": np.arange(4, dtype=np.float32)}
        registry.register(
            MODEL, weights=weights, onnx_model=sigmoid_graph(), run_id=run.id, metrics={"auc": 0.8}
        )
        registry.register(MODEL, weights=weights, onnx_model=sigmoid_graph(), parent_version=1)
        registry.promote(MODEL, 1, alias="champion", actor="setup", reason="first")
    return Prepared(root=tmp_path, run_id=run.id, weak_run_id=weak.id)


@pytest.fixture
def runner() -> CliRunner:
    """Return a typer test runner."""
    return CliRunner()


def _invoke(runner: CliRunner, prepared: Prepared, *args: str, **kwargs: Any) -> Result:
    return runner.invoke(app, [*prepared.store_args, *args], **kwargs)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env.update(extra)
    return env


def _fedloop(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fedloop.cli ARGS`` as a real process in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "fedloop.cli", *args],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_one_error(stderr: str, code: str) -> None:
    lines = stderr.strip().splitlines()
    assert lines[0].startswith(f"Error ({code}):")
    assert any(line.startswith("Hint:") for line in lines)
    assert "Traceback" not in stderr


# -- the program -----------------------------------------------------------------------------


def test_help_lists_commands(tmp_path: Path) -> None:
    """`fedloop --help` exits 0 and lists the command groups."""
    # Act
    done = _fedloop(tmp_path, "--help")

    # Assert
    assert done.returncode == 0
    for command in ("models", "runs", "audit", "store", "config", "quickstart"):
        assert command in done.stdout


def test_version_prints_version(tmp_path: Path) -> None:
    """`fedloop --version` prints the package version and exits 0."""
    # Act
    done = _fedloop(tmp_path, "--version")

    # Assert
    assert done.returncode == 0
    assert done.stdout.strip() == f"fedloop {__version__}"


def test_help_opens_no_store(tmp_path: Path) -> None:
    """`fedloop --help` creates no project folder."""
    # Act
    _fedloop(tmp_path, "--help")

    # Assert
    assert list(tmp_path.iterdir()) == []


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    """`fedloop` without arguments prints the usage."""
    # Act
    result = runner.invoke(app, [])

    # Assert
    assert "Usage" in result.output


# -- models ----------------------------------------------------------------------------------


def test_models_list_table(runner: CliRunner, prepared: Prepared) -> None:
    """`models list` prints a table with the model, its latest version and aliases."""
    # Act
    result = _invoke(runner, prepared, "models", "list")

    # Assert
    assert result.exit_code == 0, result.output
    assert "Registered models" in result.stdout
    assert MODEL in result.stdout
    assert "champion→v1" in result.stdout


def test_models_list_json(runner: CliRunner, prepared: Prepared) -> None:
    """`models list --format json` prints the models as JSON."""
    # Act
    data = _json(_invoke(runner, prepared, "models", "list", "--format", "json"))

    # Assert
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in data] == [
        (MODEL, 2, {"champion": 1})
    ]


def test_models_ls_is_hidden_alias(runner: CliRunner, prepared: Prepared) -> None:
    """`models ls` works like `models list` but is not listed in the help."""
    # Act
    listed = _json(_invoke(runner, prepared, "models", "ls", "-f", "json"))
    help_text = runner.invoke(app, ["models", "--help"]).stdout

    # Assert
    assert [m["name"] for m in listed] == [MODEL]
    assert " ls " not in help_text


def test_models_show_name_lists_versions(runner: CliRunner, prepared: Prepared) -> None:
    """`models show NAME --format json` lists every version, newest first."""
    # Act
    data = _json(_invoke(runner, prepared, "models", "show", MODEL, "--format", "json"))

    # Assert
    assert [v["version"] for v in data] == [2, 1]
    assert data[1]["signature"]["inputs"][0]["name"] == "features"


def test_models_show_name_table(runner: CliRunner, prepared: Prepared) -> None:
    """`models show NAME` prints a table of versions with aliases and metrics."""
    # Act
    result = _invoke(runner, prepared, "models", "show", MODEL)

    # Assert
    assert result.exit_code == 0, result.output
    assert "champion" in result.stdout
    assert "auc=0.8" in result.stdout


@pytest.mark.parametrize(
    ("ref", "version"),
    [pytest.param(f"{MODEL}:1", 1, id="version"), pytest.param(f"{MODEL}@champion", 1, id="alias")],
)
def test_models_show_version_json(
    runner: CliRunner, prepared: Prepared, ref: str, version: int
) -> None:
    """`models show NAME:V` and `NAME@ALIAS` print that version as JSON."""
    # Act
    data = _json(_invoke(runner, prepared, "models", "show", ref, "--format", "json"))

    # Assert
    assert (data["model_name"], data["version"], data["aliases"]) == (MODEL, version, ["champion"])
    assert data["run_id"] == prepared.run_id
    assert data["metrics"] == {"auc": 0.8}


def test_models_show_version_table(runner: CliRunner, prepared: Prepared) -> None:
    """`models show NAME:V` prints the version's fields, signature and metrics."""
    # Act
    result = _invoke(runner, prepared, "models", "show", f"{MODEL}:1")

    # Assert
    assert result.exit_code == 0, result.output
    assert "input features" in result.stdout
    assert "metric auc" in result.stdout


def test_models_show_unknown_raises_not_found(runner: CliRunner, prepared: Prepared) -> None:
    """`models show` of an unknown model raises NotFound on model."""
    # Act
    result = _invoke(runner, prepared, "models", "show", "nope")

    # Assert
    assert isinstance(result.exception, NotFound)
    assert result.exception.field == "model"


def test_models_promote_then_history(runner: CliRunner, prepared: Prepared) -> None:
    """`models promote` moves the alias and `models history` shows the move with its reason."""
    # Act
    promoted = _invoke(
        runner, prepared, "models", "promote", MODEL, "2", "--alias", "champion", "--reason", "r"
    )
    history = _json(_invoke(runner, prepared, "models", "history", MODEL, "--format", "json"))

    # Assert
    assert promoted.exit_code == 0, promoted.output
    assert "v1 → v2" in promoted.stdout
    last = history[-1]
    assert (last["alias"], last["from_version"], last["to_version"]) == ("champion", 1, 2)
    assert (last["reason"], last["actor"], last["action"]) == ("r", "cli", "set")


def test_models_history_table(runner: CliRunner, prepared: Prepared) -> None:
    """`models history` prints a table of alias moves."""
    # Act
    result = _invoke(runner, prepared, "models", "history", MODEL, "--alias", "champion")

    # Assert
    assert result.exit_code == 0, result.output
    assert "setup" in result.stdout


def test_models_promote_new_alias_shows_unset(runner: CliRunner, prepared: Prepared) -> None:
    """Promoting a new alias reports that it was unset before."""
    # Act
    result = _invoke(runner, prepared, "models", "promote", MODEL, "2", "-a", "challenger")

    # Assert
    assert result.exit_code == 0, result.output
    assert "(unset) → v2" in result.stdout


def test_models_promote_refuses_version_zero(runner: CliRunner, prepared: Prepared) -> None:
    """`models promote NAME 0` is a usage error (exit 2)."""
    # Act
    result = _invoke(runner, prepared, "models", "promote", MODEL, "0")

    # Assert
    assert result.exit_code == 2


def test_models_rollback(runner: CliRunner, prepared: Prepared) -> None:
    """`models rollback` moves champion back to the version before and reports it."""
    # Arrange
    _invoke(runner, prepared, "models", "promote", MODEL, "2")

    # Act
    result = _invoke(runner, prepared, "models", "rollback", MODEL, "--reason", "regression")

    # Assert
    assert result.exit_code == 0, result.output
    assert "v2 → v1" in result.stdout
    shown = _json(_invoke(runner, prepared, "models", "show", f"{MODEL}@champion", "-f", "json"))
    assert shown["version"] == 1


def test_models_lineage_json(runner: CliRunner, prepared: Prepared) -> None:
    """`models lineage NAME:1 --format json` prints the run, params and data sets."""
    # Act
    data = _json(_invoke(runner, prepared, "models", "lineage", f"{MODEL}:1", "--format", "json"))

    # Assert
    assert data["run"]["id"] == prepared.run_id
    assert data["run"]["params"] == {"lr": "0.05"}
    assert sorted((d["name"], d["role"]) for d in data["datasets"]) == [
        ("tx-eval", "eval"),
        ("tx-train", "train"),
    ]


def test_models_lineage_tree(runner: CliRunner, prepared: Prepared) -> None:
    """`models lineage NAME:2` prints a tree with the ancestor."""
    # Act
    result = _invoke(runner, prepared, "models", "lineage", f"{MODEL}:2")

    # Assert
    assert result.exit_code == 0, result.output
    assert "ancestors" in result.stdout
    assert "v1" in result.stdout


def test_models_lineage_tree_shows_run_and_data(runner: CliRunner, prepared: Prepared) -> None:
    """`models lineage NAME@champion` prints the run, its params and data sets."""
    # Act
    result = _invoke(runner, prepared, "models", "lineage", f"{MODEL}@champion")

    # Assert
    assert result.exit_code == 0, result.output
    assert "lr = 0.05" in result.stdout
    assert "tx-train (train, 8 rows)" in result.stdout


def test_models_export_writes_package(
    runner: CliRunner, prepared: Prepared, tmp_path: Path
) -> None:
    """`models export NAME:1 DIR` writes the four package files, which read back."""
    # Arrange
    out = tmp_path / "pkg"

    # Act
    result = _invoke(runner, prepared, "models", "export", f"{MODEL}:1", str(out))

    # Assert
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "weights.safetensors",
        "model.onnx",
        "signature.json",
        "manifest.json",
    }
    assert read_package(out).metadata["version"] == 1


# -- runs ------------------------------------------------------------------------------------


def test_runs_list_filter_json(runner: CliRunner, prepared: Prepared) -> None:
    """`runs list --filter "metrics.auc > 0.5"` returns only the run above the threshold."""
    # Act
    data = _json(
        _invoke(runner, prepared, "runs", "list", "--filter", "metrics.auc > 0.5", "-f", "json")
    )

    # Assert
    assert [r["id"] for r in data] == [prepared.run_id]
    assert data[0]["latest_metrics"] == {"auc": 0.8}


def test_runs_list_table(runner: CliRunner, prepared: Prepared) -> None:
    """`runs list` prints both runs, best first with --order-by."""
    # Act
    result = _invoke(runner, prepared, "runs", "list", "--order-by", "metrics.auc desc")

    # Assert
    assert result.exit_code == 0, result.output
    assert result.stdout.index(prepared.run_id[:8]) < result.stdout.index(prepared.weak_run_id[:8])


def test_runs_list_bad_filter_is_invalid_input(runner: CliRunner, prepared: Prepared) -> None:
    """An unreadable filter raises InvalidInput."""
    # Act
    result = _invoke(runner, prepared, "runs", "list", "--filter", "metrics.auc >>> 1")

    # Assert
    assert isinstance(result.exception, InvalidInput)


def test_runs_show_by_prefix(runner: CliRunner, prepared: Prepared) -> None:
    """`runs show PREFIX --format json` finds the run by a unique 8-character prefix."""
    # Act
    data = _json(_invoke(runner, prepared, "runs", "show", prepared.run_id[:8], "-f", "json"))

    # Assert
    assert data["id"] == prepared.run_id
    assert (data["name"], data["status"], data["params"]) == ("train", "finished", {"lr": "0.05"})
    assert data["artifacts"] == []


def test_runs_show_table(runner: CliRunner, prepared: Prepared) -> None:
    """`runs show ID` prints the run's fields, params and metrics."""
    # Act
    result = _invoke(runner, prepared, "runs", "show", prepared.run_id)

    # Assert
    assert result.exit_code == 0, result.output
    assert "param lr" in result.stdout
    assert "metric auc" in result.stdout


@pytest.mark.parametrize(
    ("prefix", "error", "field"),
    [
        pytest.param("abc", InvalidInput, "run_id", id="too-short"),
        pytest.param("zzzzzzzz", NotFound, "run_id", id="no-match"),
    ],
)
def test_runs_show_bad_prefix(
    runner: CliRunner, prepared: Prepared, prefix: str, error: type[Exception], field: str
) -> None:
    """A run id prefix that is too short or matches nothing raises an error on run_id."""
    # Act
    result = _invoke(runner, prepared, "runs", "show", prefix)

    # Assert
    assert isinstance(result.exception, error)
    assert getattr(result.exception, "field", None) == field


# -- audit -----------------------------------------------------------------------------------


def test_audit_verify_ok(prepared: Prepared) -> None:
    """`audit verify` on an untouched log exits 0 and reports it intact."""
    # Act
    done = _fedloop(prepared.root, "audit", "verify")

    # Assert
    assert done.returncode == 0, done.stderr
    assert "audit log intact" in done.stdout


def test_audit_verify_json(runner: CliRunner, prepared: Prepared) -> None:
    """`audit verify --format json` prints the report."""
    # Act
    data = _json(_invoke(runner, prepared, "audit", "verify", "-f", "json"))

    # Assert
    assert data["ok"] is True
    assert data["checked"] == data["head_seq"] >= 3


def test_audit_verify_detects_tampering(prepared: Prepared) -> None:
    """After a raw UPDATE of an event, `audit verify` exits 5 with one error line, no traceback."""
    # Arrange
    with sqlite3.connect(prepared.db) as conn:
        conn.execute("""UPDATE events SET payload = '{"forged":true}' WHERE seq = 1""")

    # Act
    done = _fedloop(prepared.root, "audit", "verify")

    # Assert
    assert done.returncode == 5
    assert "audit log is broken" in done.stderr
    _assert_one_error(done.stderr, "audit_chain_broken")


def test_audit_verify_wrong_head_fails(runner: CliRunner, prepared: Prepared) -> None:
    """`audit verify --expect-head` with another head fails with AuditChainBroken."""
    # Act
    result = _invoke(runner, prepared, "audit", "verify", "--expect-head", "f" * 64)

    # Assert
    assert type(result.exception).__name__ == "AuditChainBroken"
    assert getattr(result.exception, "field", None) == "expect_head"


def test_audit_list_json(runner: CliRunner, prepared: Prepared) -> None:
    """`audit list --format json` prints events oldest first with kinds and subjects."""
    # Act
    data = _json(_invoke(runner, prepared, "audit", "list", "--format", "json"))

    # Assert
    assert [e["seq"] for e in data] == sorted(e["seq"] for e in data)
    kinds = [e["kind"] for e in data]
    assert kinds.count("model.version_registered") == 2
    assert "model.alias_moved" in kinds


def test_audit_list_filters_by_kind(runner: CliRunner, prepared: Prepared) -> None:
    """`audit list --kind 'model.alias*'` keeps only alias events."""
    # Act
    data = _json(_invoke(runner, prepared, "audit", "list", "--kind", "model.alias*", "-f", "json"))

    # Assert
    assert {e["kind"] for e in data} == {"model.alias_moved"}


def test_audit_list_table(runner: CliRunner, prepared: Prepared) -> None:
    """`audit list` prints a table of events."""
    # Act
    result = _invoke(runner, prepared, "audit", "list", "--limit", "2")

    # Assert
    assert result.exit_code == 0, result.output
    assert "Audit events" in result.stdout


# -- config and store ------------------------------------------------------------------------


def test_config_show_reports_sources(runner: CliRunner, prepared: Prepared) -> None:
    """`config show --format json` gives each value with its source (flag, env, default)."""
    # Act
    data = _json(
        _invoke(
            runner,
            prepared,
            "config",
            "show",
            "--format",
            "json",
            env={"FEDLOOP_STORE__BUSY_TIMEOUT_MS": "1234"},
        )
    )

    # Assert
    assert data["store.busy_timeout_ms"] == {"value": 1234, "source": "env"}
    assert data["store.url"] == {"value": f"sqlite:///{prepared.db}", "source": "flag"}
    assert data["project.name"] == {"value": "default", "source": "default"}


def test_config_show_reads_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value from fedloop.toml in the working directory has the source file."""
    # Arrange
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fedloop.toml").write_text('[project]\nname = "risk"\n')

    # Act
    result = runner.invoke(app, ["config", "show"])

    # Assert
    assert result.exit_code == 0, result.output
    assert "risk" in result.stdout
    assert "file" in result.stdout


def test_store_info_json(runner: CliRunner, prepared: Prepared) -> None:
    """`store info --format json` reports the dialect, schema, project and counts."""
    # Act
    data = _json(_invoke(runner, prepared, "store", "info", "--format", "json"))

    # Assert
    assert data["dialect"] == "sqlite"
    assert data["schema_revision"] == data["schema_head"]
    assert (data["project"], data["runs"], data["models"]) == ("default", 2, 1)
    assert data["audit_events"] >= 3
    assert data["artifacts_url"].endswith("artifacts")


def test_store_info_table(runner: CliRunner, prepared: Prepared) -> None:
    """`store info` prints a table."""
    # Act
    result = _invoke(runner, prepared, "store", "info")

    # Assert
    assert result.exit_code == 0, result.output
    assert "schema_revision" in result.stdout


def test_store_upgrade(runner: CliRunner, prepared: Prepared) -> None:
    """`store upgrade` on a current store reports its revision and exits 0."""
    # Act
    result = _invoke(runner, prepared, "store", "upgrade")

    # Assert
    assert result.exit_code == 0, result.output
    assert "schema revision" in result.stdout


def test_store_upgrade_creates_new_store(runner: CliRunner, tmp_path: Path) -> None:
    """`store upgrade` on a new SQLite path creates the schema."""
    # Arrange
    db = tmp_path / "new" / "fresh.db"

    # Act
    result = runner.invoke(app, ["--store-url", f"sqlite:///{db}", "store", "upgrade"])

    # Assert
    assert result.exit_code == 0, result.output
    assert db.is_file()


# -- errors as the user sees them ------------------------------------------------------------


def test_unknown_model_exits_3(prepared: Prepared) -> None:
    """An unknown model exits 3 with one `Error (not_found)` line and a hint, no traceback."""
    # Act
    done = _fedloop(prepared.root, "models", "show", "nope")

    # Assert
    assert done.returncode == 3
    _assert_one_error(done.stderr, "not_found")
    assert done.stdout == ""


def test_main_renders_error_in_process(
    prepared: Prepared, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() turns a FedloopError into its exit code plus an error line and a hint on stderr."""
    # Arrange
    monkeypatch.setattr(sys, "argv", ["fedloop", *prepared.store_args, "models", "show", "nope"])

    # Act
    with pytest.raises(SystemExit) as info:
        main()

    # Assert
    assert info.value.code == 3
    _assert_one_error(capsys.readouterr().err, "not_found")


def test_main_runs_command_in_process(
    prepared: Prepared, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() runs a command that succeeds and exits 0."""
    # Arrange
    monkeypatch.setattr(
        sys, "argv", ["fedloop", *prepared.store_args, "models", "list", "-f", "json"]
    )

    # Act
    with pytest.raises(SystemExit) as exited:
        main()

    # Assert
    assert exited.value.code == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == [MODEL]


def test_bad_reference_exits_2(prepared: Prepared) -> None:
    """A malformed model reference exits 2 with an invalid_input error."""
    # Act
    done = _fedloop(prepared.root, "models", "show", f"{MODEL}:abc")

    # Assert
    assert done.returncode == 2
    _assert_one_error(done.stderr, "invalid_input")


def test_unicode_digit_version_exits_2(prepared: Prepared) -> None:
    """A version written with a non-ASCII digit is bad input (exit 2), not an internal error."""
    # Act
    done = _fedloop(prepared.root, "models", "show", f"{MODEL}:²")

    # Assert
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_rollback_without_history_exits_4(prepared: Prepared) -> None:
    """Rolling back an alias set once exits 4 (conflict)."""
    # Act
    done = _fedloop(prepared.root, "models", "rollback", MODEL)

    # Assert
    assert done.returncode == 4
    _assert_one_error(done.stderr, "conflict")


def test_unreachable_postgres_exits_6(tmp_path: Path) -> None:
    """A PostgreSQL URL nobody answers exits 6 (store unavailable) without a traceback."""
    # Arrange
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")

    # Act
    done = _fedloop(
        tmp_path, "--store-url", "postgresql+psycopg://u@127.0.0.1:1/db", "models", "list"
    )

    # Assert
    assert done.returncode == 6
    assert done.stderr.startswith("Error (store_unavailable):")
    assert "Traceback" not in done.stderr


def test_malformed_config_file_exits_2(tmp_path: Path) -> None:
    """A fedloop.toml that is not TOML exits 2 and names the file."""
    # Arrange
    (tmp_path / "fedloop.toml").write_text('[store\nurl = "sqlite:///x.db"\n')

    # Act
    done = _fedloop(tmp_path, "models", "list")

    # Assert
    assert done.returncode == 2
    assert "fedloop.toml" in done.stderr
    _assert_one_error(done.stderr, "config_error")


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """--config naming a file that does not exist exits 2."""
    # Act
    done = _fedloop(tmp_path, "--config", str(tmp_path / "nope.toml"), "config", "show")

    # Assert
    assert done.returncode == 2
    _assert_one_error(done.stderr, "config_error")


def test_unsupported_database_exits_2(tmp_path: Path) -> None:
    """--store-url mysql://x exits 2 (config error) naming store.url."""
    # Act
    done = _fedloop(tmp_path, "--store-url", "mysql://x", "models", "list")

    # Assert
    assert done.returncode == 2
    assert "store.url" in done.stderr
    _assert_one_error(done.stderr, "config_error")


def test_bad_env_value_exits_2(tmp_path: Path) -> None:
    """A FEDLOOP_* variable with a bad value exits 2 naming the key."""
    # Act
    done = _fedloop(tmp_path, "config", "show", FEDLOOP_STORE__BUSY_TIMEOUT_MS="soon")

    # Assert
    assert done.returncode == 2
    assert "store.busy_timeout_ms" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["frobnicate"], id="unknown-command"),
        pytest.param(["models", "promote", MODEL, "0"], id="version-below-min"),
        pytest.param(["models", "list", "--format", "xml"], id="unknown-format"),
        pytest.param(["quickstart", "--rows", "10"], id="rows-below-min"),
    ],
)
def test_usage_error_exits_2(tmp_path: Path, args: list[str]) -> None:
    """A usage error exits 2 with click's message, not an internal error with a traceback."""
    # Act
    done = _fedloop(tmp_path, *args)

    # Assert
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "Internal error" not in done.stderr


@pytest.mark.parametrize(
    "args", [pytest.param([], id="no-arguments"), pytest.param(["models"], id="group-only")]
)
def test_missing_command_prints_usage(tmp_path: Path, args: list[str]) -> None:
    """`fedloop` or `fedloop models` alone prints the usage, not an internal error."""
    # Act
    done = _fedloop(tmp_path, *args)

    # Assert
    assert "Usage" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "Internal error" not in done.stderr
