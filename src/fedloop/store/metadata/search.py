"""The run search filter: ``metrics.auc > 0.9 and params.lr = '0.05' and status = 'finished'``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Float, and_, case, cast, exists, not_, null, select
from sqlalchemy.sql.elements import ColumnClause

from fedloop.core import InvalidInput
from fedloop.store.metadata.tables import latest_metrics, run_params, run_tags, runs

__all__ = ["Clause", "compile_filter", "compile_order", "parse_filter"]

_CLAUSE = re.compile(
    r"""\s*(?P<ident>(?:metrics|params|tags)\.(?:`[^`]+`|[\w\-./:]+)|status|kind|name)\s*
        (?P<op><=|>=|!=|=|<|>)\s*
        (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_HINT = (
    "Write clauses like metrics.auc > 0.9, params.lr = '0.05', tags.team = 'risk' or "
    "status = 'finished', joined by 'and'."
)


@dataclass(frozen=True, slots=True)
class Clause:
    """One parsed comparison."""

    entity: str  # metrics | params | tags | attr
    key: str
    op: str
    value: float | str


def parse_filter(text: str) -> list[Clause]:
    """Parse a filter string into clauses.

    Parameters
    ----------
    text : str
        Clauses joined by ``and``; empty means no filter.

    Returns
    -------
    list of Clause
        In order.

    Raises
    ------
    InvalidInput
        Naming the clause that could not be read.
    """
    if not text.strip():
        return []
    clauses: list[Clause] = []
    for part in _AND.split(text.strip()):
        match = _CLAUSE.fullmatch(part)
        if match is None:
            raise InvalidInput(
                f"cannot read the search filter clause {part.strip()!r}.",
                field="filter",
                value=text,
                hint=_HINT,
            )
        ident, op, raw = match["ident"], match["op"], match["value"]
        value: float | str = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw[0] in "'\"" else float(raw)
        if "." in ident:
            entity, key = ident.split(".", 1)
            key = key.strip("`")
        else:
            entity, key = "attr", ident
        if entity == "metrics" and isinstance(value, str):
            raise InvalidInput(
                f"metric {key!r} must be compared with a number; got {raw}.",
                field="filter",
                hint=_HINT,
            )
        clauses.append(Clause(entity=entity, key=key, op=op, value=value))
    return clauses


def _compare(column: ColumnElement[object], op: str, value: object) -> ColumnElement[bool]:
    return {
        "=": column == value,
        "!=": column != value,
        "<": column < value,
        "<=": column <= value,
        ">": column > value,
        ">=": column >= value,
    }[op]


_NUMERIC_RE = r"^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$"


def _as_number(column: ColumnElement[str], dialect: str) -> ColumnElement[object]:
    """Cast text to a float only where it looks like a number (NULL elsewhere).

    CASE fixes the evaluation order, so PostgreSQL never tries to cast 'adam' to a float.
    """
    if dialect == "postgresql":
        looks_numeric: ColumnElement[bool] = column.regexp_match(_NUMERIC_RE)
    else:  # SQLite has no REGEXP by default: refuse any character outside a number's alphabet
        looks_numeric = and_(
            column != "", not_(column.op("GLOB", is_comparison=True)("*[^0-9.eE+-]*"))
        )
    return case((looks_numeric, cast(column, Float)), else_=null())


def compile_filter(clauses: list[Clause], *, dialect: str = "sqlite") -> ColumnElement[bool] | None:
    """Turn clauses into one SQL condition on the ``runs`` table.

    Parameters
    ----------
    clauses : list of Clause
        From :func:`parse_filter`.
    dialect : str, default "sqlite"
        The database backend, for the numeric cast of params and tags.

    Returns
    -------
    ColumnElement or None
        ``None`` when there are no clauses.
    """
    conds: list[ColumnElement[bool]] = []
    for clause in clauses:
        if clause.entity == "attr":
            column: ColumnElement[object] = runs.c[clause.key]
            conds.append(_compare(column, clause.op, str(clause.value)))
            continue
        table = {"metrics": latest_metrics, "params": run_params, "tags": run_tags}[clause.entity]
        value_col: ColumnElement[object] = table.c.value
        value: object = clause.value
        if clause.entity != "metrics":
            if isinstance(clause.value, float):
                value_col = _as_number(table.c.value, dialect)
            else:
                value = str(clause.value)
        conds.append(
            exists(
                select(1).where(
                    table.c.run_id == runs.c.id,
                    table.c.key == clause.key,
                    _compare(value_col, clause.op, value),
                )
            )
        )
    return and_(*conds) if conds else None


_ORDER = re.compile(
    r"\s*(?P<ident>metrics\.(?:`[^`]+`|[\w\-./:]+)|created_at|ended_at|name|status)"
    r"(?:\s+(?P<dir>asc|desc))?\s*",
    re.IGNORECASE,
)


def compile_order(
    text: str | None,
) -> tuple[str | None, ColumnElement[object] | ColumnClause[object], bool]:
    """Parse an ``order_by`` string (``"metrics.auc desc"``, ``"created_at"``).

    Parameters
    ----------
    text : str or None
        What to order by; default ``created_at desc``.

    Returns
    -------
    tuple
        (metric key or None, the run column to order by, descending).

    Raises
    ------
    InvalidInput
        When the text cannot be read.
    """
    if not text:
        return None, runs.c.created_at, True
    match = _ORDER.fullmatch(text)
    if match is None:
        raise InvalidInput(
            f"cannot read order_by {text!r}.",
            field="order_by",
            hint="Use metrics.<key>, created_at, ended_at, name or status, then asc or desc.",
        )
    desc = (match["dir"] or "asc").lower() == "desc"
    ident = match["ident"]
    if ident.startswith("metrics."):
        return ident.split(".", 1)[1].strip("`"), latest_metrics.c.value, desc
    return None, runs.c[ident.lower()], desc
