"""Configuration loader: YAML text -> a validated, frozen ``BrokerConfig``.

Owns reading the file, composing the YAML node graph (which keeps line and column
of every value), walking it against the schema dataclasses by their field types,
the size/duration unit parsers, and reporting every problem as
``FILE:LINE:COL: key.path: message`` in one ``ConfigError``. Loading is pure: it
returns a new config or raises, nothing is applied half-way. Must not hold
per-key parsing code (the walker is driven by the schema's types and ``Spec``s),
must not use asyncio, and must not touch the running broker.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from warrenmq.config.schema import RULES, BrokerConfig, Path, Spec, format_path, spec_of


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file; ``line``/``column`` are 1-based (0 = unknown)."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """Every problem found in a config file; ``str()`` gives one problem per line."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


# ------------------------------------------------------------------------- units

_NUMBER_UNIT = re.compile(r"\s*([0-9]+(?:_[0-9]+)*)\s*([A-Za-z]+)\s*")
SIZE_UNITS: Final = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600}


def _parse_units(text: str, units: dict[str, int], example: str) -> int:
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None:
        raise ValueError(f'not a whole number with a unit, such as "{example}"')
    factor = units.get(match[2])
    if factor is None:
        known = ", ".join(units)
        raise ValueError(f'unknown unit "{match[2]}" (known: {known})')
    return int(match[1]) * factor


def parse_size(text: str) -> int:
    """``"128MiB"`` -> 134217728. Units are case-sensitive: B, kB/KB, MB, GB, TB, KiB..TiB."""
    return _parse_units(text, SIZE_UNITS, "128MiB")


def parse_duration(text: str) -> int:
    """``"60s"`` -> 60, ``"1m"`` -> 60, ``"1h"`` -> 3600 (whole seconds)."""
    return _parse_units(text, DURATION_UNITS, "60s")


_UNIT_PARSERS: Final = {"size": parse_size, "duration": parse_duration}

# ------------------------------------------------------------------- YAML scalars

_TAG = "tag:yaml.org,2002:"
_TAG_NAMES: Final = {
    _TAG + "int": "an integer",
    _TAG + "float": "a float",
    _TAG + "bool": "a boolean",
    _TAG + "null": "null",
    _TAG + "timestamp": "a date",
    _TAG + "binary": "binary data",
    _TAG + "merge": "a merge key",
}
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*(?:_[0-9]+)*)")
_BOOLEANS: Final = {
    **dict.fromkeys(("true", "yes", "on"), True),
    **dict.fromkeys(("false", "no", "off"), False),
}
_BAD: Final[Any] = object()  # "no usable value"; the problem has been reported


def _is(node: Node, tag: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG + tag


def _shown(node: Node) -> str:
    """How a node appears in "got ..." messages."""
    if isinstance(node, MappingNode):
        return "a mapping" if node.value else "an empty mapping"
    if isinstance(node, SequenceNode):
        return "a list" if node.value else "an empty list"
    if node.tag == _TAG + "str":
        return json.dumps(node.value, ensure_ascii=False)
    if _is(node, "null"):
        return "null" if node.value else "an empty value"
    kind = _TAG_NAMES.get(node.tag, f"a value tagged {node.tag}")
    return f"{node.value} ({kind})"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# --------------------------------------------------------------------------- walker


class _Walker:
    """Converts a node graph to schema objects, collecting every problem on the way."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[ConfigProblem] = []

    def report(self, node: Node, path: Path, message: str) -> None:
        mark = node.start_mark
        self.problems.append(
            ConfigProblem(self.filename, mark.line + 1, mark.column + 1, format_path(path), message)
        )

    def convert(self, tp: Any, constraint: Spec, node: Node, path: Path) -> Any:
        """Dispatch on the declared type; returns the value, or ``_BAD`` after reporting."""
        if dataclasses.is_dataclass(tp):
            return self.section(tp, node, path)
        origin = typing.get_origin(tp)
        if origin is tuple:
            return self.sequence(tp, constraint, node, path)
        if origin in (types.UnionType, typing.Union):
            return self.optional(tp, constraint, node, path)
        if tp is int:
            return self.integer(constraint, node, path)
        if tp is str:
            return self.string(constraint, node, path)
        if tp is bool:
            return self.boolean(constraint, node, path)
        raise TypeError(f"config loader cannot handle fields of type {tp!r}")

    def expected(self, tp: Any, constraint: Spec, node: Node, path: Path, extra: str = "") -> Any:
        self.report(node, path, f"expected {constraint.describe(tp)}, got {_shown(node)}{extra}")
        return _BAD

    def checked(self, value: Any, tp: Any, constraint: Spec, node: Node, path: Path) -> Any:
        if constraint.accepts(value):
            return value
        extra = f" (= {value})" if tp is int and node.tag == _TAG + "str" else ""
        return self.expected(tp, constraint, node, path, extra)

    # ----------------------------------------------------------------- scalars

    def integer(self, constraint: Spec, node: Node, path: Path) -> Any:
        if _is(node, "int") and _DECIMAL.fullmatch(node.value):
            return self.checked(int(node.value), int, constraint, node, path)
        if _is(node, "int"):
            return self.expected(int, constraint, node, path, "; write integers in plain decimal")
        parser = _UNIT_PARSERS.get(constraint.unit or "")
        if parser is None or not _is(node, "str"):
            quoted_number = _is(node, "str") and _DECIMAL.fullmatch(node.value)
            hint = "; remove the quotes" if quoted_number else ""
            return self.expected(int, constraint, node, path, hint)
        try:
            value = parser(node.value)
        except ValueError as exc:
            return self.expected(int, constraint, node, path, f" ({exc})")
        return self.checked(value, int, constraint, node, path)

    def string(self, constraint: Spec, node: Node, path: Path) -> Any:
        if _is(node, "str"):
            return self.checked(node.value, str, constraint, node, path)
        hint = "; quote it if you meant a string" if isinstance(node, ScalarNode) else ""
        return self.expected(str, constraint, node, path, hint)

    def boolean(self, constraint: Spec, node: Node, path: Path) -> Any:
        if _is(node, "bool") and node.value.lower() in _BOOLEANS:
            return _BOOLEANS[node.value.lower()]
        return self.expected(bool, constraint, node, path)

    def optional(self, tp: Any, constraint: Spec, node: Node, path: Path) -> Any:
        if _is(node, "null"):
            return None
        inner = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return self.convert(inner[0], constraint, node, path)

    # -------------------------------------------------------------- containers

    def sequence(self, tp: Any, constraint: Spec, node: Node, path: Path) -> Any:
        if not isinstance(node, SequenceNode):
            return self.expected(tp, constraint, node, path)
        item_type = typing.get_args(tp)[0]
        items = [
            self.convert(item_type, Spec(), item, (*path, index))
            for index, item in enumerate(node.value)
        ]
        if any(item is _BAD for item in items):
            return _BAD
        return self.checked(tuple(items), tp, constraint, node, path)

    def entries(self, cls: type, node: MappingNode, path: Path) -> dict[str, Node]:
        """The mapping's values by key; unknown, duplicate and non-string keys reported."""
        known = [f.name for f in dataclasses.fields(cls)]
        found: dict[str, Node] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not _is(key_node, "str"):
                self.report(key_node, path, f"keys must be strings, got {_shown(key_node)}")
                continue
            key = key_node.value
            if key in first_line:
                self.report(
                    key_node, (*path, key), f"duplicate key (first given on line {first_line[key]})"
                )
                continue
            first_line[key] = key_node.start_mark.line + 1
            if key in known:
                found[key] = value_node
            else:
                self.report(key_node, (*path, key), _unknown_key(key, known))
        return found

    def section(self, cls: Any, node: Node, path: Path) -> Any:
        """A mapping onto dataclass ``cls``; an empty value means "all defaults"."""
        if _is(node, "null"):
            found: dict[str, Node] = {}
        elif isinstance(node, MappingNode):
            found = self.entries(cls, node, path)
        else:
            return self.expected(cls, Spec(), node, path)
        values: dict[str, Any] = {}
        failed: set[str] = set()
        for f in dataclasses.fields(cls):
            if f.name in found:
                value = self.field_value(cls, f, found[f.name], path)
                if value is _BAD:
                    failed.add(f.name)
                else:
                    values[f.name] = value
            elif _required(f):
                self.report(node, path, f"missing required key '{f.name}'")
                failed.add(f.name)
        if any(_required(f) and f.name in failed for f in dataclasses.fields(cls)):
            return _BAD
        obj = cls(**values)  # failed optional fields fall back to their defaults
        self.apply_rules(obj, failed, node, path)
        return _BAD if failed else obj

    def field_value(self, cls: type, f: dataclasses.Field[Any], node: Node, path: Path) -> Any:
        before = len(self.problems)
        value = self.convert(_hints(cls)[f.name], spec_of(f), node, (*path, f.name))
        return _BAD if len(self.problems) > before else value

    def apply_rules(self, obj: object, failed: set[str], node: Node, path: Path) -> None:
        for rule in RULES.get(type(obj), ()):
            if rule.reads & failed:
                continue  # it would judge a default standing in for an invalid value
            for where, message in rule.check(obj):
                self.report(_locate(node, where), (*path, *where), message)


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key '{key}'; did you mean '{close[0]}'?"
    return f"unknown key '{key}' (known keys: {', '.join(known)})"


def _locate(node: Node, where: Path) -> Node:
    """The node at ``where`` below ``node``, or the deepest one that exists."""
    for part in where:
        child: Node | None = None
        if isinstance(part, str) and isinstance(node, MappingNode):
            child = next((v for k, v in node.value if _is(k, "str") and k.value == part), None)
        elif isinstance(part, int) and isinstance(node, SequenceNode) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node


# ---------------------------------------------------------------------- entry points


def _syntax_problem(filename: str, text: str, exc: yaml.YAMLError) -> ConfigProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return ConfigProblem(filename, line, column, "", f"YAML syntax error: {message}")
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        message = f"YAML error: unacceptable character {shown}"
        return ConfigProblem(filename, line, column, "", message)
    return ConfigProblem(filename, 0, 0, "", f"YAML error: {exc}")


def load_config_text(text: str, filename: str = "<string>") -> BrokerConfig:
    """Parse and validate config text; ``filename`` is only used in messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_problem(filename, text, exc)]) from None
    if root is None:
        return BrokerConfig()
    walker = _Walker(filename)
    config = walker.convert(BrokerConfig, Spec(), root, ())
    if walker.problems:
        raise ConfigError(sorted(walker.problems, key=lambda p: (p.line, p.column)))
    assert isinstance(config, BrokerConfig)
    return config


def load_config(path: str | os.PathLike[str]) -> BrokerConfig:
    """Read, parse and validate a config file; raises :class:`ConfigError`."""
    filename = os.fspath(path)
    try:
        data = FilePath(filename).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigProblem(filename, 0, 0, "", f"cannot read: {reason}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        problem = ConfigProblem(filename, line, column, "", "not valid UTF-8")
        raise ConfigError([problem]) from None
    return load_config_text(text, filename)
