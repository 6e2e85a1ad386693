"""Where config values come from: layers merged, each key's source, and errors naming it.

The layers are fedloop.toml, ``FEDLOOP_<SECTION>__<KEY>`` variables and command-line flags.
A refused value becomes a :class:`~fedloop.core.errors.ConfigError` that names the key, its
source and, for fedloop.toml, the line it is written on (pure: the file's text is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ValidationError

from fedloop.core.errors import ConfigError
from fedloop.core.toml_lines import KeyPath, format_key_path, key_line

__all__ = [
    "ENV_PREFIX",
    "FieldCheckError",
    "Source",
    "TomlDocument",
    "config_error",
    "describe_source",
    "env_tree",
    "flag_tree",
    "flatten_config",
    "merge_layers",
    "source_of",
]

ENV_PREFIX = "FEDLOOP_"
#: Environment variables that are documented aliases of a nested key.
_ENV_ALIASES: dict[str, tuple[str, ...]] = {"FEDLOOP_STORE_URL": ("store", "url")}

#: Where a value came from, lowest precedence first.
Source = Literal["default", "file", "env", "flag"]


class FieldCheckError(ValueError):
    """A section's cross-field check that failed, blaming one key below the section.

    Raised inside a pydantic validator; :func:`config_error` appends ``loc`` to the location
    pydantic reports for the section, so that the message and the line name that key.

    Parameters
    ----------
    message : str
        What is wrong, worded to follow "`key` in fedloop.toml line N: ".
    loc : tuple of str or int
        The key's path below the section (``()``: the section itself).
    value : Any
        The value shown as "got".
    """

    def __init__(self, message: str, *, loc: tuple[str | int, ...], value: Any) -> None:
        super().__init__(message)
        self.loc = loc
        self.value = value


class TomlDocument(dict[str, Any]):
    """A parsed fedloop.toml that remembers its text, so that errors can name lines.

    It is the nested mapping ``tomllib`` returns; ``fedloop.core.config.resolve`` reads
    ``text`` and ``path`` to say on which line of the file a refused value is written.

    Parameters
    ----------
    values : Mapping
        The parsed document.
    text : str
        The file's content.
    path : str, default "fedloop.toml"
        The file's name, as shown in errors.
    """

    def __init__(self, values: Mapping[str, Any], *, text: str, path: str = "fedloop.toml") -> None:
        super().__init__(values)
        self.text = text
        self.path = path


def _set(tree: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"`{'.'.join(keys)}` conflicts with the scalar `{key}`.", field=".".join(keys)
            )
        node = child
    node[keys[-1]] = value


def _is_index_map(value: Any, shape: Any) -> bool:
    """Whether ``value`` overrides items of the list ``shape`` by index (``FEDLOOP_A__B__0__C``)."""
    return (
        isinstance(value, Mapping)
        and isinstance(shape, list | tuple)
        and bool(value)
        and all(str(key).isdigit() for key in value)
    )


def _flatten(tree: Any, path: KeyPath, shape: Any, *, keep_empty: bool) -> dict[str, Any]:
    def item(seq: Any, index: int) -> Any:
        return seq[index] if isinstance(seq, list | tuple) and index < len(seq) else None

    # ``shape`` is the merged tree at ``path``: it tells an override of list items by index
    # from a table whose keys happen to be digits.
    out: dict[str, Any] = {}
    if _is_index_map(tree, shape):
        for key, value in tree.items():
            index = int(key)
            sub = (*path, index)
            out.update(_flatten(value, sub, item(shape, index), keep_empty=keep_empty))
    elif isinstance(tree, Mapping) and (tree or not keep_empty):
        for key, value in tree.items():
            sub_shape = shape.get(key) if isinstance(shape, Mapping) else None
            out.update(_flatten(value, (*path, key), sub_shape, keep_empty=keep_empty))
    elif (
        isinstance(tree, list | tuple)
        and tree
        and all(isinstance(value, Mapping) for value in tree)
    ):
        for index, value in enumerate(tree):
            sub = (*path, index)
            out.update(_flatten(value, sub, item(shape, index), keep_empty=keep_empty))
    else:
        out[format_key_path(path)] = tree
    return out


def flatten_config(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested sections into dotted keys: the keys of ``ResolvedConfig.sources``.

    Tables nest with dots and lists of tables with indices (``automation.policies[0].name``);
    other lists, and empty tables, are values.

    Parameters
    ----------
    tree : Mapping
        E.g. ``config.model_dump(mode="json")``.

    Returns
    -------
    dict
        Dotted key to value.
    """
    return _flatten(tree, (), None, keep_empty=True)


def flag_tree(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Nest command-line values given as dotted keys; ``None`` values are left out.

    Parameters
    ----------
    overrides : Mapping
        E.g. ``{"store.url": "sqlite:///x.db", "project.name": None}``.

    Returns
    -------
    dict
        The nested layer.

    Raises
    ------
    ConfigError
        When a key goes below a key that holds a value.
    """
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is not None:
            _set(tree, tuple(dotted.split(".")), value)
    return tree


def env_tree(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nest the ``FEDLOOP_<SECTION>__<KEY>`` variables (and documented aliases) into a layer.

    Parameters
    ----------
    environ : Mapping[str, str]
        Environment variables; others are ignored. An index addresses an item of a list of
        tables: ``FEDLOOP_AUTOMATION__POLICIES__0__ENABLED``.

    Returns
    -------
    dict
        The nested layer (values are strings; the models parse them).

    Raises
    ------
    ConfigError
        For a malformed variable name.
    """
    tree: dict[str, Any] = {}
    # Aliases first, so that the canonical FEDLOOP_<SECTION>__<KEY> wins whatever the order.
    for name, keys in _ENV_ALIASES.items():
        if name in environ:
            _set(tree, keys, environ[name])
    for name, value in environ.items():
        if name in _ENV_ALIASES:
            continue
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if any(not k for k in keys):
            raise ConfigError(
                f"environment variable {name} is malformed.",
                field=name,
                hint="Use FEDLOOP_<SECTION>__<KEY>, e.g. FEDLOOP_STORE__URL.",
            )
        _set(tree, keys, value)
    return tree


def _merge(
    base: Mapping[str, Any], top: Mapping[str, Any], path: KeyPath, source: Source
) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = _merge(current, value, (*path, key), source)
        elif isinstance(current, list | tuple) and _is_index_map(value, current):
            out[key] = _merge_items(current, value, (*path, key), source)
        else:
            out[key] = value
    return out


def _merge_items(
    items: Sequence[Any], top: Mapping[str, Any], path: KeyPath, source: Source
) -> list[Any]:
    out = list(items)
    for key, value in top.items():
        index = int(key)
        if index >= len(out):
            field = format_key_path((*path, index))
            where = "in the environment" if source == "env" else "on the command line"
            count = f"{len(out)} entry" if len(out) == 1 else f"{len(out)} entries"
            raise ConfigError(
                f"`{field}` {where} overrides an entry that does not exist: "
                f"`{format_key_path(path)}` has {count}.",
                field=field,
                value=value,
                hint="Override only entries written in fedloop.toml, counting from 0 "
                "(e.g. FEDLOOP_AUTOMATION__POLICIES__0__ENABLED=false).",
            )
        current = out[index]
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[index] = _merge(current, value, (*path, index), source)
        else:
            out[index] = value
    return out


def merge_layers(
    layers: Sequence[tuple[Source, Mapping[str, Any]]],
) -> tuple[dict[str, Any], dict[str, Source]]:
    """Merge layers, lowest precedence first, and record the source of each key they set.

    Parameters
    ----------
    layers : sequence of (source, mapping)
        E.g. ``[("file", toml), ("env", env_tree(environ)), ("flag", flag_tree(overrides))]``.

    Returns
    -------
    merged : dict
        The nested values, later layers winning key by key (items of lists by index).
    sources : dict
        Dotted key (as :func:`flatten_config` writes it) to the layer that set it last.

    Raises
    ------
    ConfigError
        When a layer overrides a list item that no lower layer has.
    """
    merged: dict[str, Any] = {}
    for source, layer in layers:
        merged = _merge(merged, layer, (), source)
    sources: dict[str, Source] = {}
    for source, layer in layers:
        for key in _flatten(layer, (), merged, keep_empty=False):
            sources[key] = source
    return merged, sources


_PRECEDENCE: dict[Source, int] = {"default": 0, "file": 1, "env": 2, "flag": 3}
#: What one entry of a list of tables is called in messages.
_ITEM_NOUNS: dict[KeyPath, str] = {("automation", "policies"): "policy"}


def source_of(path: Sequence[str | int], sources: Mapping[str, Source]) -> Source:
    """Return where the value at ``path`` came from.

    Parameters
    ----------
    path : sequence of str or int
        Names and list indices.
    sources : Mapping
        Dotted key to source, as :func:`merge_layers` returns it.

    Returns
    -------
    {"default", "file", "env", "flag"}
        The key's source; for a table, its strongest key's; for a key set nowhere, "file"
        (where it belongs).
    """
    key = format_key_path(path)
    if key in sources:
        return sources[key]
    nested = [src for k, src in sources.items() if k.startswith((f"{key}.", f"{key}["))]
    return max(nested, key=_PRECEDENCE.__getitem__) if nested else "file"


def _env_name(path: KeyPath) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in path)


def describe_source(
    source: Source, path: Sequence[str | int], *, file_path: str, file_text: str | None
) -> str:
    """Word where a value was set, for messages.

    Parameters
    ----------
    source : {"default", "file", "env", "flag"}
        As :func:`source_of` returns it.
    path : sequence of str or int
        The key.
    file_path : str
        The config file's name.
    file_text : str or None
        Its content, to find the line (None: no line).

    Returns
    -------
    str
        ``"in fedloop.toml line 14"``, ``"in the environment (FEDLOOP_SERVING__PORT)"``,
        ``"on the command line"`` or ``"by default"``.
    """
    path = tuple(path)
    if source == "file":
        line = key_line(file_text, path) if file_text is not None else None
        return f"in {file_path}" + (f" line {line}" if line is not None else "")
    if source == "env":
        return f"in the environment ({_env_name(path)})"
    if source == "flag":
        return "on the command line"
    return "by default"


def _lookup(tree: Any, path: KeyPath) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(tree, list | tuple) and part < len(tree):
            tree = tree[part]
        elif isinstance(part, str) and isinstance(tree, Mapping):
            tree = tree.get(part)
        else:
            return None
    return tree


def _file_hint(path: KeyPath, merged: Mapping[str, Any], *, where: str, kind: str) -> str:
    """Say which table of fedloop.toml to fix: ``[a.b]`` or ``[[a.b]]``, and which key."""

    def names(part: KeyPath) -> str:
        return ".".join(str(p) for p in part if isinstance(p, str))

    verb = {"missing": "Add", "extra_forbidden": "Remove or rename"}.get(kind, "Fix")
    label = ""
    for i in range(len(path) - 1, 0, -1):
        if isinstance(path[i], int):
            noun = _ITEM_NOUNS.get(path[:i], "entry")
            name = _lookup(merged, (*path[: i + 1], "name"))
            label = f" ({noun} {name!r})" if isinstance(name, str) else f" ({noun} {path[i]})"
            break
    if path and isinstance(path[-1], int) and isinstance(_lookup(merged, path), Mapping):
        return f"{verb} [[{names(path)}]]{label} {where}"
    keys = list(path)
    while keys and isinstance(keys[-1], int):  # an item of a list of values: blame the list
        keys.pop()
    if len(keys) <= 1:
        return f"{verb} [{names(tuple(keys))}]{label} {where}"
    parent = tuple(keys[:-1])
    table = f"[[{names(parent)}]]" if isinstance(parent[-1], int) else f"[{names(parent)}]"
    return f"{verb} `{keys[-1]}` under {table}{label} {where}"


def config_error(
    err: ValidationError,
    *,
    sources: Mapping[str, Source],
    merged: Mapping[str, Any],
    document: TomlDocument | None,
) -> ConfigError:
    """Turn pydantic's first complaint into a ConfigError naming the key, source and line.

    Parameters
    ----------
    err : pydantic.ValidationError
        From validating ``merged``.
    sources : Mapping
        Dotted key to source, from :func:`merge_layers`.
    merged : Mapping
        The validated values (to name the list entry, e.g. the policy, in the hint).
    document : TomlDocument or None
        The fedloop.toml read, for its path and the line of the key.

    Returns
    -------
    ConfigError
        ``field`` is the dotted key (``automation.policies[0].rollout.steps``); the message
        and the hint give the source, and the line of fedloop.toml when it is known.
    """
    first = err.errors()[0]
    path: KeyPath = tuple(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    got = first.get("input")
    problem = first.get("ctx", {}).get("error")
    if isinstance(problem, FieldCheckError):  # a cross-field check that blames one key
        path = (*path, *problem.loc)
        message = str(problem)
        got = problem.value
    key = format_key_path(path)
    source = source_of(path, sources)
    where = describe_source(
        source,
        path,
        file_path=document.path if document is not None else "fedloop.toml",
        file_text=document.text if document is not None else None,
    )
    if source == "env":
        fix = f"Fix or unset the environment variable {_env_name(path)}"
    elif source == "flag":
        fix = "Fix the command-line option"
    else:
        fix = _file_hint(path, merged, where=where, kind=first["type"])
    shown = list(got) if isinstance(got, tuple) else got
    section = str(path[0]) if path else "project"
    return ConfigError(
        f"`{key}` {where}: {message}"
        + ("" if first["type"] == "missing" else f"; got {shown!r}")
        + ".",
        field=key,
        value=got,
        hint=f"{fix}; see `fedloop config show` for the [{section}] settings.",
    )
