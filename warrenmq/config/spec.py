"""Config constraints: the ``Spec`` kept in dataclass field metadata, rules, key paths.

Owns what a constraint on one field is (range, choices, unit, non-emptiness, the
constraint on each item of a list), how "expected ..." is worded, the ``Rule`` type for
checks across fields, key-path formatting (``queues[2].max_length``) and ``FreeMap``,
the immutable free-form map used for ``arguments`` and policy ``definition``. Shared by
the schema, the topology sections and the loader. Must not know any particular section,
read files or import the rest of the broker.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

PathPart = str | int
#: A location inside a config object: field names and sequence indices.
Path = tuple[PathPart, ...]
#: A rule's complaint: where (relative to the object checked) and what.
Finding = tuple[Path, str]
#: ``duration`` is whole seconds (heartbeat); ``duration_ms`` is milliseconds and must be
#: written with a unit ("30s", "500ms"), because RabbitMQ's x-arguments count in ms and a
#: bare number would be read a thousand times wrong by somebody.
Unit = Literal["size", "duration", "duration_ms"]

#: AMQP short strings (vhost, user, queue and exchange names, routing keys): 255 bytes.
SHORTSTR_MAX = 255


@dataclass(frozen=True, slots=True)
class Spec:
    """Constraints on one field's value, kept in ``dataclasses.field(metadata=...)``."""

    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    unit: Unit | None = None  # ints that may also be written as "128MiB" / "60s"
    non_empty: bool = False  # strings and lists
    item: Spec | None = None  # the constraint on each item of a list

    def accepts(self, value: object) -> bool:
        """Whether a value of the right type meets the constraints."""
        if isinstance(value, bool):
            return True
        if isinstance(value, int):
            too_low = self.minimum is not None and value < self.minimum
            too_high = self.maximum is not None and value > self.maximum
            return not (too_low or too_high)
        if isinstance(value, str) and self.choices:
            return value in self.choices
        if isinstance(value, str | tuple | FreeMap) and self.non_empty:
            return len(value) > 0
        return True

    def describe(self, tp: object) -> str:
        """What a valid value of type ``tp`` looks like, for "expected ..." messages."""
        if tp is int and self.unit == "duration_ms":
            return "a duration with a unit, such as \"30s\" or \"500ms\"" + self._range_ms()
        if tp is int:
            return "an integer" + self._range_text() + _UNIT_HINTS.get(self.unit or "", "")
        if self.choices:
            return "one of " + ", ".join(f'"{choice}"' for choice in self.choices)
        if tp is str:
            return "a non-empty string" if self.non_empty else "a string"
        if tp is bool:
            return "a boolean (true or false)"
        if dataclasses.is_dataclass(tp) or tp is FreeMap:
            return "a non-empty mapping" if self.non_empty else "a mapping"
        if typing.get_origin(tp) is tuple:
            return "a non-empty list" if self.non_empty else "a list"
        return "a value of type " + str(tp)

    def _range_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" between {self.minimum} and {self.maximum}"
        if self.minimum is not None:
            return f" >= {self.minimum}"
        if self.maximum is not None:
            return f" <= {self.maximum}"
        return ""

    def _range_ms(self) -> str:
        low = f"{self.minimum}ms" if self.minimum else None
        high = f"{self.maximum}ms" if self.maximum is not None else None
        if low and high:
            return f", between {low} and {high}"
        if high:
            return f", at most {high}"
        return f", at least {low}" if low else ""


_UNIT_HINTS = {
    "size": ' or a size such as "128MiB"',
    "duration": ' or a duration such as "60s"',
}
_NO_SPEC = Spec()


def spec(**constraints: Any) -> dict[str, Spec]:
    """Field metadata carrying a :class:`Spec`: ``field(default=1, metadata=spec(minimum=0))``."""
    return {"spec": Spec(**constraints)}


def spec_of(f: dataclasses.Field[Any]) -> Spec:
    """The constraints of a dataclass field (none if it has no ``spec`` metadata)."""
    found = f.metadata.get("spec", _NO_SPEC)
    assert isinstance(found, Spec)
    return found


def is_internal(f: dataclasses.Field[Any]) -> bool:
    """A field that is not a config key (e.g. where the config was read from)."""
    return bool(f.metadata.get("internal", False))


def config_fields(cls_or_obj: Any) -> list[dataclasses.Field[Any]]:
    """The fields that are config keys, in declaration order."""
    return [f for f in dataclasses.fields(cls_or_obj) if not is_internal(f)]


def format_path(path: Path) -> str:
    """``("users", 1, "name")`` -> ``users[1].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# ------------------------------------------------------------------------- free maps

class FreeMap(Mapping[str, Any]):
    """An immutable, hashable ``str -> value`` map (``arguments:``, policy ``definition:``).

    Values are str, int, float, bool, tuples (YAML/JSON lists) and nested ``FreeMap``s;
    :meth:`to_plain` gives the dicts and lists a broker or a JSON document takes.
    Key order is kept (it is the order written), but equality ignores it.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, Any] = {str(k): freeze(v) for k, v in pairs}

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FreeMap):
            return bool(_typed(self._items) == _typed(other._items))
        return NotImplemented

    def __repr__(self) -> str:
        return f"FreeMap({self._items!r})"

    def to_plain(self) -> dict[str, Any]:
        return {k: thaw(v) for k, v in self._items.items()}


def _typed(value: Any) -> Any:
    """A form where ``True``, ``1`` and ``1.0`` differ, as they do in an AMQP table."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, FreeMap):
        return _typed(value._items)
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return (type(value).__name__, value)


def freeze(value: Any) -> Any:
    """Lists -> tuples, dicts -> ``FreeMap``; scalars unchanged."""
    if isinstance(value, FreeMap):
        return value
    if isinstance(value, Mapping):
        return FreeMap(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`: plain dicts and lists."""
    if isinstance(value, FreeMap):
        return value.to_plain()
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


# ------------------------------------------------------------------- problems, sources


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


class ConfigSource:
    """Where a loaded config came from: the file, each section's position, and notes.

    ``positions`` maps a key path (``queues[2]``) to its (line, column) in a YAML file;
    for a RabbitMQ definitions file it maps our path to the document's own path
    (``queues[2]`` -> ``queues[5]``), since JSON has no useful line numbers (RabbitMQ
    writes one line). ``notes`` are what the file held that WarrenMQ cannot express.
    Kept out of config equality: two configs with the same settings are equal.
    """

    __slots__ = ("file", "notes", "positions")

    def __init__(
        self, file: str, positions: Mapping[str, tuple[int, int] | str] | None = None,
        notes: Iterable[str] = (),
    ) -> None:
        self.file = file
        self.positions: dict[str, tuple[int, int] | str] = dict(positions or {})
        self.notes: tuple[str, ...] = tuple(notes)

    def problem(self, path: Path, message: str) -> ConfigProblem:
        """A problem about the entity at ``path``, located as precisely as known."""
        text = format_path(path)
        position = self.positions.get(text)
        if isinstance(position, str):
            return ConfigProblem(self.file, 0, 0, position, message)
        line, column = position if position is not None else (0, 0)
        return ConfigProblem(self.file, line, column, text, message)

    def __repr__(self) -> str:
        return f"ConfigSource({self.file!r})"


# ------------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Rule:
    """A check across fields; skipped by the loader when a field it reads is invalid.

    ``tolerates`` names list fields the check may see partly loaded: the entries that
    failed to load are ``None`` there (indices kept), and the check skips them, so one
    bad entry does not hide the problems of the others."""

    reads: frozenset[str]
    check: Callable[[Any], Iterable[Finding]]
    tolerates: frozenset[str] = frozenset()


def rule(check: Callable[[Any], Iterable[Finding]], *reads: str,
         tolerates: Iterable[str] = ()) -> Rule:
    return Rule(frozenset(reads), check, frozenset(tolerates))


def unique(items: Iterable[tuple[object, Path]], what: str) -> Iterator[Finding]:
    """A finding for every key already seen; ``items`` are (key, where) pairs."""
    seen: set[object] = set()
    for key, where in items:
        if key in seen:
            yield where, f"duplicate {what} {key!r}"
        seen.add(key)


def shortstr_problem(text: str) -> str | None:
    if len(text.encode()) > SHORTSTR_MAX:
        return f"must be at most {SHORTSTR_MAX} bytes of UTF-8 (an AMQP short string)"
    return None
