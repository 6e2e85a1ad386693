"""Where a key is written in a TOML text: key paths to line numbers (pure, no I/O)."""

from __future__ import annotations

import string
import tomllib
from collections.abc import Sequence

__all__ = ["KeyPath", "format_key_path", "key_line", "key_lines"]

#: A key's path from the document root: table and key names, and list indices.
KeyPath = tuple[str | int, ...]

_BARE_KEY = frozenset(string.ascii_letters + string.digits + "_-")
_SCALAR_END = frozenset(",]}#\r\n")
_QUOTES = ('"""', "'''", '"', "'")


class _Stop(Exception):
    """The text is not TOML the scanner understands: stop and keep what was found."""


class _Scanner:
    """A structural TOML reader: it records where keys are written and skips the values."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        # Elements seen so far of each array of tables ([[a.b]]), by its concrete path.
        self.arrays: dict[KeyPath, int] = {}

    def run(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        try:
            while True:
                self._skip(newlines=True)
                if self.pos >= len(self.text):
                    break
                if self._peek() == "[":
                    table = self._header()
                else:
                    self._keyval(table)
        except _Stop:
            pass
        return self.lines

    def _peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def _advance(self, count: int) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + count)
        self.pos += count

    def _skip(self, *, newlines: bool) -> None:
        while True:
            char = self._peek()
            if char in (" ", "\t") or (newlines and char in ("\r", "\n")):
                self._advance(1)
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def _header(self) -> KeyPath:
        line = self.line
        is_array = self.text.startswith("[[", self.pos)
        closing = "]]" if is_array else "]"
        self._advance(len(closing))
        keys = self._key()
        self._skip(newlines=False)
        if not self.text.startswith(closing, self.pos):
            raise _Stop
        self._advance(len(closing))
        path: KeyPath = ()
        for i, key in enumerate(keys):
            path = (*path, key)
            if is_array and i == len(keys) - 1:
                self.arrays[path] = self.arrays.get(path, 0) + 1
                self.lines.setdefault(path, line)
                path = (*path, self.arrays[path] - 1)
            elif path in self.arrays:  # [a.b.c] after [[a.b]] belongs to its latest element
                path = (*path, self.arrays[path] - 1)
            self.lines.setdefault(path, line)
        return path

    def _keyval(self, base: KeyPath) -> None:
        line = self.line
        path = base
        for key in self._key():
            path = (*path, key)
            self.lines.setdefault(path, line)
        self._skip(newlines=False)
        if self._peek() != "=":
            raise _Stop
        self._advance(1)
        self._skip(newlines=False)
        self._value(path)

    def _key(self) -> tuple[str, ...]:
        keys: list[str] = []
        while True:
            self._skip(newlines=False)
            if self._peek() in ('"', "'"):
                keys.append(self._string())
            else:
                start = self.pos
                while self._peek() and self._peek() in _BARE_KEY:
                    self.pos += 1
                if self.pos == start:
                    raise _Stop
                keys.append(self.text[start : self.pos])
            self._skip(newlines=False)
            if self._peek() != ".":
                return tuple(keys)
            self._advance(1)

    def _value(self, path: KeyPath) -> None:
        char = self._peek()
        if char == "{":
            self._sequence(path, closing="}")
        elif char == "[":
            self._sequence(path, closing="]")
        elif char in ('"', "'"):
            self._string()
        else:
            start = self.pos
            while self._peek() and self._peek() not in _SCALAR_END:
                self.pos += 1
            if self.pos == start:
                raise _Stop

    def _sequence(self, path: KeyPath, *, closing: str) -> None:
        """Read an inline table (``closing="}"``) or an array (``closing="]"``)."""
        self._advance(1)
        index = 0
        while True:
            self._skip(newlines=True)
            if self._peek() == closing:
                self._advance(1)
                return
            if closing == "}":
                self._keyval(path)
            else:
                item = (*path, index)
                self.lines.setdefault(item, self.line)
                self._value(item)
                index += 1
            self._skip(newlines=True)
            if self._peek() == ",":
                self._advance(1)
            elif self._peek() != closing:
                raise _Stop

    def _string(self) -> str:
        """Skip a string of any of the four kinds and return its value (used for quoted keys)."""
        text, start = self.text, self.pos
        quote = next(q for q in _QUOTES if text.startswith(q, start))
        basic = quote[0] == '"'
        i = start + len(quote)
        while not text.startswith(quote, i):
            if i >= len(text) or (len(quote) == 1 and text[i] == "\n"):
                raise _Stop
            i += 2 if basic and text[i] == "\\" else 1
        end = i + len(quote)
        # Up to two quote characters may end a multi-line string's content: """a"""".
        while len(quote) == 3 and end - i < 5 and text[end : end + 1] == quote[0]:
            end += 1
        raw = text[start:end]
        self._advance(end - start)
        if basic and "\\" in raw:
            try:
                return str(tomllib.loads(f"k = {raw}")["k"])
            except tomllib.TOMLDecodeError:
                pass
        return raw[len(quote) : len(raw) - len(quote)]


def key_lines(text: str) -> dict[KeyPath, int]:
    r"""Map every key and table written in a TOML text to the line it is first written on.

    Tables come from headers (``[a.b]``), from dotted keys (``a.b = 1``) and from inline tables;
    the n-th ``[[a.b]]`` is the path ``("a", "b", n - 1)`` and a ``[a.b.c]`` header that
    follows it belongs to that element. Items of arrays (``steps = [0.1, 1.0]``, including
    arrays of inline tables) are paths ending in their index, on the line where each item starts.

    Parameters
    ----------
    text : str
        The TOML document (expected to be valid: parse it with ``tomllib`` first). Scanning
        stops quietly at anything it does not understand and keeps what it found so far.

    Returns
    -------
    dict
        Key path (names and list indices) to its 1-based line number.

    Examples
    --------
    >>> lines = key_lines('[[jobs]]\nname = "a"\n[[jobs]]\nname = "b"\n')
    >>> lines[("jobs", 1, "name")]
    4
    """
    return _Scanner(text).run()


def key_line(text: str, path: Sequence[str | int]) -> int | None:
    """Return the line of ``path`` in a TOML text, or of its nearest ancestor written there.

    A key that is not written (a missing required key, a default) falls back to the table
    that should hold it: the header of ``[a.b]`` or ``[[a.b]]``, or the key of an inline table.

    Parameters
    ----------
    text : str
        The TOML document.
    path : sequence of str or int
        Table and key names and list indices, e.g. ``("automation", "policies", 0, "name")``.

    Returns
    -------
    int or None
        The 1-based line number; None when not even the first name is written in the text.
    """
    lines = key_lines(text)
    for end in range(len(path), 0, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


def format_key_path(path: Sequence[str | int]) -> str:
    """Return a key path as the dotted name used in errors: ``automation.policies[0].name``.

    Parameters
    ----------
    path : sequence of str or int
        Names and list indices.

    Returns
    -------
    str
        Names joined by dots, indices in brackets.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
