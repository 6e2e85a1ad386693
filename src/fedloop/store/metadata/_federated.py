"""Federated rounds: atomic per-round checkpoints with per-client summaries and round metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from fedloop.core import InvalidInput, NotFound, RunId
from fedloop.store.audit import append_event
from fedloop.store.metadata._runs import RunsMixin, _prepare_points
from fedloop.store.metadata.records import FlClientRound, FlRound, MetricPoint
from fedloop.store.metadata.tables import fl_client_rounds, fl_rounds, runs

_CLIENT_STATUSES = ("ok", "failed", "rejected", "timeout", "unused")
_ROUND_STATUSES = ("completed", "skipped")


class FederatedMixin(RunsMixin):
    """Round checkpoints of federated runs."""

    def record_fl_round(
        self,
        run_id: RunId,
        round_num: int,
        *,
        status: str,
        parameters_digest: str,
        state_digest: str | None,
        clients: Sequence[FlClientRound],
        seconds: float,
        metrics: Mapping[str, float],
        actor: str = "coordinator",
    ) -> FlRound:
        """Record a finished round in one transaction: checkpoint, client rows, metrics, event.

        The round's metrics also go to the run's metric series at ``step=round_num``, so
        they can be charted and searched like any other metric.

        Parameters
        ----------
        run_id : RunId
            The federated run.
        round_num : int
            Round number (1-based, consecutive).
        status : {"completed", "skipped"}
            ``skipped`` when too few clients answered (the model did not change).
        parameters_digest, state_digest : str
            Artifact digests of the global model and of the strategy state after the round.
        clients : sequence of FlClientRound
            One row per selected client.
        seconds : float
            Wall time of the round.
        metrics : Mapping[str, float]
            Round metrics (loss, AUC, participants…).
        actor : str
            Recorded in the audit event.

        Returns
        -------
        FlRound
            The stored round.

        Raises
        ------
        Conflict
            When the round was already recorded.
        NotFound
            When the run does not exist.
        """
        if status not in _ROUND_STATUSES:
            raise InvalidInput(
                f"round `status` must be completed or skipped; got {status!r}.", field="status"
            )
        bad = [c for c in clients if c.status not in _CLIENT_STATUSES]
        if bad:
            raise InvalidInput(
                f"client status must be one of {', '.join(_CLIENT_STATUSES)}; got {bad[0].status!r}.",
                field="clients.status",
            )
        now = self.clock.now()
        succeeded = sum(1 for c in clients if c.status == "ok")
        values: dict[str, Any] = {
            "run_id": run_id,
            "round": round_num,
            "status": status,
            "parameters_digest": parameters_digest,
            "state_digest": state_digest,
            "num_selected": len(clients),
            "num_succeeded": succeeded,
            "num_failed": len(clients) - succeeded,
            "bytes_up": sum(c.bytes_up for c in clients),
            "bytes_down": sum(c.bytes_down for c in clients),
            "seconds": float(seconds),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "created_at": now,
        }
        ts = int(now.timestamp() * 1000)
        rows, latest = _prepare_points(
            (run_id, MetricPoint(key, float(value), round_num, ts))
            for key, value in metrics.items()
        )
        with self.transaction() as conn:
            if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
                raise NotFound(f"no run with id {run_id!r}.", field="run_id", value=run_id)
            conn.execute(fl_rounds.insert(), values)
            if clients:
                conn.execute(
                    fl_client_rounds.insert(),
                    [
                        {
                            "run_id": run_id,
                            "round": round_num,
                            "client_id": c.client_id,
                            "status": c.status,
                            "reason": c.reason,
                            "num_examples": c.num_examples,
                            "metrics": dict(c.metrics),
                            "bytes_up": c.bytes_up,
                            "bytes_down": c.bytes_down,
                            "seconds": c.seconds,
                        }
                        for c in clients
                    ],
                )
            if rows:
                self._write_points(conn, rows, list(latest.values()))
            append_event(
                conn,
                kind=f"federated.round_{status}",
                subject=f"run:{run_id}/round:{round_num}",
                actor=actor,
                at=now,
                payload={
                    "parameters_digest": parameters_digest,
                    "participants": sorted(c.client_id for c in clients if c.status == "ok"),
                    "dropped": {c.client_id: c.reason for c in clients if c.status != "ok"},
                },
            )
        return FlRound(**values)

    def latest_fl_round(self, run_id: RunId) -> FlRound | None:
        """Return the last recorded round of a run (the checkpoint to resume from), or None."""
        with self.reading() as conn:
            row = conn.execute(
                select(fl_rounds)
                .where(fl_rounds.c.run_id == run_id)
                .order_by(fl_rounds.c.round.desc())
                .limit(1)
            ).first()
        return FlRound(**row._mapping) if row else None

    def list_fl_rounds(self, run_id: RunId) -> list[FlRound]:
        """Return every recorded round of a run, in order."""
        with self.reading() as conn:
            rows = conn.execute(
                select(fl_rounds).where(fl_rounds.c.run_id == run_id).order_by(fl_rounds.c.round)
            ).all()
        return [FlRound(**r._mapping) for r in rows]

    def list_fl_client_rounds(
        self, run_id: RunId, *, round_num: int | None = None
    ) -> list[tuple[int, FlClientRound]]:
        """Return (round, client summary) rows of a run, by round then client."""
        query = select(fl_client_rounds).where(fl_client_rounds.c.run_id == run_id)
        if round_num is not None:
            query = query.where(fl_client_rounds.c.round == round_num)
        with self.reading() as conn:
            rows = conn.execute(
                query.order_by(fl_client_rounds.c.round, fl_client_rounds.c.client_id)
            ).all()
        return [
            (
                r.round,
                FlClientRound(
                    client_id=r.client_id,
                    status=r.status,
                    reason=r.reason,
                    num_examples=r.num_examples,
                    metrics=dict(r.metrics),
                    bytes_up=r.bytes_up,
                    bytes_down=r.bytes_down,
                    seconds=r.seconds,
                ),
            )
            for r in rows
        ]
