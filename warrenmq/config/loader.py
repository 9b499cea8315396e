"""Configuration loader: YAML text -> a validated, frozen ``BrokerConfig``.

Owns reading the file, composing the YAML node graph (which keeps line and column
of every value), walking it against the schema dataclasses by their field types (units
come from :mod:`warrenmq.config.units`), free-form maps, and reporting every problem as
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
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from warrenmq.config.schema import RULES, BrokerConfig
from warrenmq.config.spec import (
    ConfigError,
    ConfigProblem,
    ConfigSource,
    FreeMap,
    Path,
    Spec,
    config_fields,
    format_path,
    spec_of,
)
from warrenmq.config.units import (
    UNIT_PARSERS,
    format_duration_ms,
    parse_duration,
    parse_duration_ms,
    parse_size,
)

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "format_duration_ms",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_duration_ms",
    "parse_size",
]


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Partial:
    """A list of sections some of which had problems: ``None`` where one failed to load."""

    items: tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class _Stub:
    """A named entry (exchange, queue, policy...) some of whose other keys had problems:
    its name and vhost loaded, so whole-config rules can still judge references to it
    (a binding to it is not "undeclared") in the same round."""

    obj: Any


#: Fields that identify a named entry; a stub needs both to have loaded.
_IDENTITY = frozenset(("name", "vhost"))


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
        self.positions: dict[str, tuple[int, int] | str] = {}  # each section's line, column

    def report(self, node: Node, path: Path, message: str) -> None:
        mark = node.start_mark
        self.problems.append(
            ConfigProblem(self.filename, mark.line + 1, mark.column + 1, format_path(path), message)
        )

    def convert(self, tp: Any, constraint: Spec, node: Node, path: Path) -> Any:
        """Dispatch on the declared type; returns the value, or ``_BAD`` after reporting."""
        if dataclasses.is_dataclass(tp):
            return self.section(tp, node, path)
        if tp is FreeMap:
            return self.free_map(constraint, node, path)
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
        if _is(node, "int") and constraint.unit == "duration_ms":
            hint = f'; write a unit, e.g. "{node.value}ms" or "{node.value}s"'
            return self.expected(int, constraint, node, path, hint)
        if _is(node, "int") and _DECIMAL.fullmatch(node.value):
            return self.checked(int(node.value), int, constraint, node, path)
        if _is(node, "int"):
            return self.expected(int, constraint, node, path, "; write integers in plain decimal")
        parser = UNIT_PARSERS.get(constraint.unit or "")
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
        item_spec = constraint.item or Spec()
        before = len(self.problems)
        items = [
            self.convert(item_type, item_spec, item, (*path, index))
            for index, item in enumerate(node.value)
        ]
        if len(self.problems) > before and dataclasses.is_dataclass(item_type):
            return _Partial(tuple(None if item is _BAD else
                                  item.obj if isinstance(item, _Stub) else item
                                  for item in items))
        if any(item is _BAD for item in items):
            return _BAD
        return self.checked(tuple(items), tp, constraint, node, path)

    def free_map(self, constraint: Spec, node: Node, path: Path) -> Any:
        """A free-form ``str -> value`` map (x-arguments, a policy definition)."""
        if _is(node, "null"):
            return self.checked(FreeMap(), FreeMap, constraint, node, path)
        if not isinstance(node, MappingNode):
            return self.expected(FreeMap, constraint, node, path)
        before = len(self.problems)
        items: dict[str, Any] = {}
        for key, _, value_node in self.keys(node, path):
            items[key] = self.free_value(value_node, (*path, key))
        if len(self.problems) > before:
            return _BAD
        return self.checked(FreeMap(items), FreeMap, constraint, node, path)

    def free_value(self, node: Node, path: Path) -> Any:
        """One value of a free map: string, integer, float, boolean, list or map."""
        if isinstance(node, MappingNode):
            return self.free_map(Spec(), node, path)
        if isinstance(node, SequenceNode):
            return tuple(self.free_value(item, (*path, i)) for i, item in enumerate(node.value))
        if _is(node, "str"):
            return node.value
        if _is(node, "bool") and node.value.lower() in _BOOLEANS:
            return _BOOLEANS[node.value.lower()]
        if _is(node, "int") and _DECIMAL.fullmatch(node.value):
            return int(node.value)
        if _is(node, "float"):
            try:
                return float(node.value.replace("_", ""))
            except ValueError:
                pass
        self.report(node, path, "expected a string, number, boolean, list or mapping, got "
                    + _shown(node) + ("; quote it if you meant a string"
                                      if isinstance(node, ScalarNode) else ""))
        return _BAD

    def entries(self, cls: type, node: MappingNode, path: Path) -> dict[str, Node]:
        """The mapping's values by key; unknown, duplicate and non-string keys reported."""
        known = [f.name for f in config_fields(cls)]
        found: dict[str, Node] = {}
        for key, key_node, value_node in self.keys(node, path):
            if key in known:
                found[key] = value_node
            else:
                self.report(key_node, (*path, key), _unknown_key(key, known))
        return found

    def keys(self, node: MappingNode, path: Path) -> Iterator[tuple[str, Node, Node]]:
        """(key, key node, value node) of each string key the first time it is given;
        non-string and duplicate keys are reported and skipped."""
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not _is(key_node, "str"):
                self.report(key_node, path, f"keys must be strings, got {_shown(key_node)}")
                continue
            key = key_node.value
            if key in first_line:
                self.report(key_node, (*path, key),
                            f"duplicate key (first given on line {first_line[key]})")
                continue
            first_line[key] = key_node.start_mark.line + 1
            yield key, key_node, value_node

    def section(self, cls: Any, node: Node, path: Path) -> Any:
        """A mapping onto dataclass ``cls``; an empty value means "all defaults"."""
        if _is(node, "null"):
            found: dict[str, Node] = {}
        elif isinstance(node, MappingNode):
            found = self.entries(cls, node, path)
        else:
            return self.expected(cls, Spec(), node, path)
        self.positions[format_path(path)] = (node.start_mark.line + 1, node.start_mark.column + 1)
        values: dict[str, Any] = {}
        failed: set[str] = set()
        partial: set[str] = set()
        for f in config_fields(cls):
            if f.name in found:
                value = self.field_value(cls, f, found[f.name], path)
                if value is _BAD:
                    failed.add(f.name)
                elif isinstance(value, _Partial):
                    partial.add(f.name)
                    values[f.name] = value.items
                else:
                    values[f.name] = value
            elif _required(f):
                self.report(node, path, f"missing required key '{f.name}'")
                failed.add(f.name)
        if any(_required(f) and f.name in failed for f in config_fields(cls)):
            return _BAD
        obj = cls(**values)  # failed optional fields fall back to their defaults
        self.apply_rules(obj, failed, partial, node, path)
        if not failed and not partial:
            return obj
        named = "name" in {f.name for f in config_fields(cls)}
        return _Stub(obj) if named and not _IDENTITY & (failed | partial) else _BAD

    def field_value(self, cls: type, f: dataclasses.Field[Any], node: Node, path: Path) -> Any:
        before = len(self.problems)
        value = self.convert(_hints(cls)[f.name], spec_of(f), node, (*path, f.name))
        if isinstance(value, _Partial):
            return value
        return _BAD if len(self.problems) > before else value

    def apply_rules(
        self, obj: object, failed: set[str], partial: set[str], node: Node, path: Path
    ) -> None:
        for rule in RULES.get(type(obj), ()):
            if rule.reads & failed or (rule.reads - rule.tolerates) & partial:
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
        return BrokerConfig(source=ConfigSource(filename))
    walker = _Walker(filename)
    config = walker.convert(BrokerConfig, Spec(), root, ())
    if walker.problems:
        raise ConfigError(sorted(walker.problems, key=lambda p: (p.line, p.column)))
    assert isinstance(config, BrokerConfig)
    return dataclasses.replace(config, source=ConfigSource(filename, walker.positions))


def load_config(path: str | os.PathLike[str]) -> BrokerConfig:
    """Read, parse and validate a config file; raises :class:`ConfigError`.

    A file whose name ends in ``.json`` is read as RabbitMQ's definitions JSON (what
    ``rabbitmqctl export_definitions`` writes): its users, vhosts, permissions, policies
    and topology, every setting at its default (:mod:`warrenmq.config.rabbit`).
    """
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
    if filename.endswith(".json"):
        from warrenmq.config.rabbit_import import load_definitions_text

        return load_definitions_text(text, filename)
    return load_config_text(text, filename)
