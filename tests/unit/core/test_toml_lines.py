"""The TOML key locator: key paths to the line they are written on."""

from __future__ import annotations

import json
import tomllib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fedloop.core import format_key_path, key_line
from fedloop.core.toml_lines import KeyPath, key_lines

DOC = """\
[automation]
tick_s = 5

[[automation.policies]]
name = "a"

[automation.policies.rollout]
steps = [0.1, 1.0]

[[automation.policies]]
name = "b"
[automation.policies.rollout]
steps = [1.0]
"""


def test_array_of_tables_counts_elements() -> None:
    """The n-th [[a.b]] header is index n - 1, and its keys are below it."""
    # Act
    lines = key_lines(DOC)

    # Assert
    assert lines[("automation", "policies", 0)] == 4
    assert lines[("automation", "policies", 1)] == 10
    assert lines[("automation", "policies", 1, "name")] == 11


def test_subtable_belongs_to_latest_element() -> None:
    """[a.b.c] after the second [[a.b]] is the second element's table."""
    # Act
    lines = key_lines(DOC)

    # Assert
    assert lines[("automation", "policies", 0, "rollout", "steps")] == 8
    assert lines[("automation", "policies", 1, "rollout")] == 12
    assert lines[("automation", "policies", 1, "rollout", "steps")] == 13


def test_missing_key_falls_back_to_its_table() -> None:
    """A key that is not written is located at the header of the table that should hold it."""
    # Act
    line = key_line(DOC, ("automation", "policies", 1, "rollout", "step_min_s"))

    # Assert
    assert line == 12


def test_unwritten_section_has_no_line() -> None:
    """A path whose first name is not in the text has no line."""
    # Act
    line = key_line(DOC, ("serving", "port"))

    # Assert
    assert line is None


def test_strings_and_comments_do_not_move_lines() -> None:
    """Brackets, quotes and headers inside strings and comments are not structure."""
    # Arrange
    text = (
        "a = '[not.a.table]'  # [[nor.this]]\n"
        'b = """\n[fake]\nc = 1\n"""\n'
        '"quoted.key" = "]\\"["\n'
        "[t]\n"
        "d = [ # ]\n  { e = 1 },\n  { e = 2 },\n]\n"
    )

    # Act
    lines = key_lines(text)

    # Assert
    assert tomllib.loads(text)["t"]["d"][1] == {"e": 2}
    assert lines[("b",)] == 2
    assert lines[("quoted.key",)] == 6
    assert ("fake",) not in lines
    assert lines[("t", "d", 1, "e")] == 10


def test_text_it_cannot_read_keeps_what_was_found() -> None:
    """Invalid TOML does not raise: the keys before the problem are kept."""
    # Act
    lines = key_lines("a = 1\n[broken\nc = 3\n")

    # Assert
    assert lines == {("a",): 1}


def test_format_key_path_puts_indices_in_brackets() -> None:
    """Names are joined by dots, list indices are in brackets."""
    # Act
    dotted = format_key_path(("automation", "policies", 0, "rollout", "steps", 2))

    # Assert
    assert dotted == "automation.policies[0].rollout.steps[2]"


_strings = st.text(alphabet=st.sampled_from(list("ab[]#=\"'\\ .{},\n")), max_size=12)
_values = st.one_of(
    st.integers(-1000, 1000).map(str),
    _strings.map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.just("'''\n[fake]\nx = 1\n'''"),
    st.just("[\n  1, # ]\n  2,\n]"),
)
_tables = st.dictionaries(
    st.sampled_from(["trigger", "action", "gate", "rollout"]),
    st.tuples(
        st.sampled_from(["header", "inline", "dotted"]),
        st.dictionaries(st.sampled_from(["k1", "k-2", "k_3"]), _values, min_size=1, max_size=3),
    ),
    max_size=4,
)


def _render(policies: list[dict[str, Any]]) -> tuple[str, dict[KeyPath, int]]:
    """Write policies in mixed styles; return the text and the line each key was written on."""
    out: list[str] = ["[automation]", "tick_s = 1"]
    expected: dict[KeyPath, int] = {}

    def emit(text: str, *keys: KeyPath) -> None:
        for key in keys:
            expected[key] = len(out) + 1
        out.extend(text.split("\n"))

    for i, tables in enumerate(policies):
        base: KeyPath = ("automation", "policies", i)
        emit("[[automation.policies]]  # [x]", base)
        emit(f'name = "p{i}"', (*base, "name"))
        for table, (style, values) in tables.items():
            if style == "dotted":
                for key, value in values.items():
                    emit(f"{table}.{key} = {value}", (*base, table, key))
            elif style == "inline":
                body = ", ".join(f"{key} = {value}" for key, value in values.items())
                keys = [(*base, table, key) for key in values]
                emit(f"{table} = {{ {body} }}", (*base, table), *keys)
        for table, (style, values) in tables.items():
            if style == "header":
                emit("")
                emit(f"[automation.policies.{table}]", (*base, table))
                for key, value in values.items():
                    emit(f"{key} = {value}", (*base, table, key))
    return "\n".join(out) + "\n", expected


@given(policies=st.lists(_tables, max_size=4))
def test_every_written_key_is_found_on_its_line(policies: list[dict[str, Any]]) -> None:
    """For policies written as headers, inline tables and dotted keys, each key's line is found."""
    # Arrange
    one_line = [  # an inline table is written on one line
        {
            table: (style, {k: v for k, v in values.items() if style != "inline" or "\n" not in v})
            for table, (style, values) in tables.items()
        }
        for tables in policies
    ]
    text, expected = _render(one_line)
    tomllib.loads(text)  # the generator writes valid TOML

    # Act
    lines = key_lines(text)

    # Assert
    assert {key: lines.get(key) for key in expected} == expected
