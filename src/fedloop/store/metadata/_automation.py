"""Closed-loop actions: one row per policy trigger, moved through its states with audit events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from fedloop.core import Conflict, InvalidInput, NotFound, new_id
from fedloop.store.audit import append_event
from fedloop.store.metadata._monitoring import MonitoringMixin
from fedloop.store.metadata.records import LoopAction
from fedloop.store.metadata.tables import loop_actions

#: Every state of an action; the last four are final.
LOOP_STATES = (
    "triggered",
    "training",
    "gating",
    "rolling_out",
    "promoted",
    "rolled_back",
    "rejected",
    "failed",
)
_TRIGGERS = ("drift", "metric", "schedule", "manual")
_UNSET: Any = object()


class AutomationMixin(MonitoringMixin):
    """The closed loop's action records."""

    def create_loop_action(
        self,
        policy: str,
        model_name: str,
        *,
        trigger_kind: str,
        trigger_ref: str,
        champion_version: int | None,
        detail: Mapping[str, Any] | None = None,
        reason: str = "",
        actor: str = "controller",
    ) -> LoopAction:
        """Record a new action for a trigger, once: the same (policy, trigger) is refused.

        Parameters
        ----------
        policy, model_name : str
            The policy that fired and the model it watches.
        trigger_kind : {"drift", "metric", "schedule", "manual"}
            What fired.
        trigger_ref : str
            The trigger's identity (``event:<seq>``, ``window:<id>``, ``schedule:<slot>``,
            ``manual:<id>``); unique per policy, so one trigger never starts two trainings.
        champion_version : int or None
            The champion when it fired.
        detail : Mapping or None
            JSON-ready facts about the trigger.
        reason : str
            Why (recorded in the ``automation.triggered`` audit event).
        actor : str
            Who decided.

        Returns
        -------
        LoopAction
            The new action, state ``triggered``.

        Raises
        ------
        Conflict
            When this trigger already has an action.
        """
        if trigger_kind not in _TRIGGERS:
            raise InvalidInput(
                f"`trigger_kind` must be one of {', '.join(_TRIGGERS)}; got {trigger_kind!r}.",
                field="trigger_kind",
                value=trigger_kind,
            )
        now = self.clock.now()
        values: dict[str, Any] = {
            "id": new_id(),
            "policy": policy,
            "model_name": model_name,
            "trigger_kind": trigger_kind,
            "trigger_ref": trigger_ref,
            "state": "triggered",
            "champion_version": champion_version,
            "challenger_version": None,
            "run_id": None,
            "step": 0,
            "step_started_at": None,
            "detail": dict(detail or {}),
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self.transaction() as conn:
                conn.execute(loop_actions.insert(), values)
                append_event(
                    conn,
                    kind="automation.triggered",
                    subject=f"model:{model_name}",
                    actor=actor,
                    at=now,
                    payload={
                        "action_id": values["id"],
                        "policy": policy,
                        "trigger": trigger_kind,
                        "trigger_ref": trigger_ref,
                        "champion_version": champion_version,
                        "reason": reason,
                    },
                )
        except (Conflict, SqlIntegrityError) as err:
            raise Conflict(
                f"policy {policy!r} already acted on trigger {trigger_ref!r}.",
                field="trigger_ref",
                value=trigger_ref,
            ) from err
        return LoopAction(**values)

    def update_loop_action(
        self,
        action_id: str,
        *,
        state: str | None = None,
        challenger_version: int | None = _UNSET,
        run_id: str | None = _UNSET,
        step: int | None = None,
        step_started_at: datetime | None = _UNSET,
        detail: Mapping[str, Any] | None = None,
        reason: str = "",
        event: str | None = None,
        actor: str = "controller",
    ) -> LoopAction:
        """Move an action on, with an audit event carrying the reason, in one transaction.

        Parameters
        ----------
        action_id : str
            The action.
        state : str or None
            The new state (None keeps it).
        challenger_version, run_id, step, step_started_at
            New values (omitted: unchanged).
        detail : Mapping or None
            Keys merged into the action's detail.
        reason : str
            Why (in the audit event).
        event : str or None
            The event kind; default ``automation.<state>`` (or ``automation.updated``).
        actor : str
            Who decided.

        Returns
        -------
        LoopAction
            The updated action.

        Raises
        ------
        NotFound
            When there is no such action.
        Conflict
            When the action is already final.
        """
        if state is not None and state not in LOOP_STATES:
            raise InvalidInput(
                f"`state` must be one of {', '.join(LOOP_STATES)}; got {state!r}.",
                field="state",
                value=state,
            )
        now = self.clock.now()
        with self.transaction() as conn:
            row = conn.execute(
                select(loop_actions).where(loop_actions.c.id == action_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no loop action {action_id!r}.", field="action_id", value=action_id)
            current = LoopAction(**row._mapping)
            if not current.is_open:
                raise Conflict(
                    f"loop action {action_id} is already {current.state}.",
                    field="state",
                    value=current.state,
                )
            values: dict[str, Any] = {"updated_at": now}
            if state is not None:
                values["state"] = state
            if challenger_version is not _UNSET:
                values["challenger_version"] = challenger_version
            if run_id is not _UNSET:
                values["run_id"] = run_id
            if step is not None:
                values["step"] = step
            if step_started_at is not _UNSET:
                values["step_started_at"] = step_started_at
            if detail:
                values["detail"] = {**current.detail, **detail}
            conn.execute(loop_actions.update().where(loop_actions.c.id == action_id), values)
            append_event(
                conn,
                kind=event or (f"automation.{state}" if state else "automation.updated"),
                subject=f"model:{current.model_name}",
                actor=actor,
                at=now,
                payload={
                    "action_id": action_id,
                    "policy": current.policy,
                    "from_state": current.state,
                    "state": values.get("state", current.state),
                    "challenger_version": values.get(
                        "challenger_version", current.challenger_version
                    ),
                    "step": values.get("step", current.step),
                    "reason": reason,
                },
            )
        merged = {**row._mapping, **values}
        return LoopAction(**merged)

    def get_loop_action(self, action_id: str) -> LoopAction:
        """Return an action or raise NotFound."""
        with self.reading() as conn:
            row = conn.execute(select(loop_actions).where(loop_actions.c.id == action_id)).first()
        if row is None:
            raise NotFound(f"no loop action {action_id!r}.", field="action_id", value=action_id)
        return LoopAction(**row._mapping)

    def list_loop_actions(
        self,
        *,
        model_name: str | None = None,
        policy: str | None = None,
        open_only: bool = False,
        limit: int = 100,
    ) -> list[LoopAction]:
        """Return actions, oldest first (the newest ``limit``)."""
        query = select(loop_actions)
        if model_name is not None:
            query = query.where(loop_actions.c.model_name == model_name)
        if policy is not None:
            query = query.where(loop_actions.c.policy == policy)
        if open_only:
            query = query.where(loop_actions.c.state.in_(LOOP_STATES[:4]))
        query = query.order_by(loop_actions.c.created_at.desc(), loop_actions.c.id.desc()).limit(
            limit
        )
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [LoopAction(**r._mapping) for r in reversed(rows)]
