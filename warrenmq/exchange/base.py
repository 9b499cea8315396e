"""The exchange abstraction: a binding table that maps a published message to destinations.

This module owns the ``Exchange`` base class, the binding identity rules shared by every
exchange type, and the canonical (hashable, type-aware) form of AMQP field-table values.
It must not know about queues, channels, I/O or the broker: destinations are opaque
hashables, and exchange-to-exchange routing is walked by the broker, not here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeAlias, TypedDict

Destination: TypeAlias = Hashable
HeadersGetter: TypeAlias = Callable[[], Mapping[str, Any] | None]
CanonicalArguments: TypeAlias = tuple[tuple[str, Hashable], ...]
BindingIdentity: TypeAlias = tuple[Destination, str, CanonicalArguments]


def canonical_value(value: object) -> Hashable:
    """A hashable form of a decoded field-table value, equal only for equal typed values.

    Type tags keep ``True``, ``1`` and ``1.0`` apart (RabbitMQ stores typed values).
    A ``str`` and ``bytes`` holding the same UTF-8 text are the same longstr. (A plain
    chain of type tests, bool before int, rather than ``functools.singledispatch``, which
    mypyc cannot register compiled functions with.)
    """
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return ("str", raw.decode("utf-8"))
        except UnicodeDecodeError:
            return ("bytes", raw)
    if isinstance(value, list | tuple):
        return ("array", tuple(canonical_value(item) for item in value))
    if isinstance(value, Mapping):
        return ("table", canonical_arguments(value))
    return _canonical_scalar(value)


def _canonical_scalar(value: object) -> Hashable:
    if value is None:
        return ("void",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, Decimal):
        return ("decimal", value.as_tuple())
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, datetime):
        return ("timestamp", value)
    if isinstance(value, Hashable):
        return ("other", type(value).__qualname__, value)
    return ("other", type(value).__qualname__, repr(value))


def canonical_arguments(arguments: Mapping[str, Any] | None) -> CanonicalArguments:
    """Binding arguments as a key-sorted tuple, so argument tables compare by value."""
    if not arguments:
        return ()
    return tuple(
        sorted(
            ((str(key), canonical_value(value)) for key, value in arguments.items()),
            key=lambda item: item[0],
        )
    )


class ExchangeOptions(TypedDict, total=False):
    """The keyword options every exchange constructor accepts."""

    durable: bool
    auto_delete: bool
    internal: bool
    arguments: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True, eq=False)
class Binding:
    """One binding as stored by an exchange; ``identity`` is what makes it unique."""

    destination: Destination
    binding_key: str
    arguments: Mapping[str, Any]
    identity: BindingIdentity


def add_reference(counter: Counter[Destination], destination: Destination) -> None:
    """Count one more binding leading to ``destination`` (several may share a key)."""
    counter[destination] += 1


def drop_reference(counter: Counter[Destination], destination: Destination) -> None:
    """Count one binding fewer, forgetting the destination when none remain."""
    remaining = counter[destination] - 1
    if remaining > 0:
        counter[destination] = remaining
    else:
        del counter[destination]


class Exchange(ABC):
    """Common binding bookkeeping; subclasses index bindings for their own ``route``.

    Binding identity is ``(destination, binding_key, arguments)`` as in RabbitMQ, with
    arguments compared by value.  Subclasses implement ``_attach``/``_detach`` to keep
    their routing index in step, and ``route``.
    """

    type_name: ClassVar[str]

    def __init__(
        self,
        name: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = dict(arguments) if arguments else {}
        # the policy that applies (set by the broker) and the arguments in force: the
        # declared ones merged with the policy's; routing reads alternate-exchange here
        self.policy: str | None = None
        self.effective_policy_definition: dict[str, Any] = {}
        self.effective_arguments: dict[str, Any] = self.arguments
        self._bindings: dict[BindingIdentity, Binding] = {}
        self._by_destination: dict[Destination, dict[BindingIdentity, None]] = {}
        self._init_index()

    @abstractmethod
    def _init_index(self) -> None:
        """Create the subclass's routing index (called once, from ``__init__``; the
        subclasses take the same keyword options and need no ``__init__`` of their own)."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} durable={self.durable} "
            f"auto_delete={self.auto_delete} internal={self.internal} "
            f"bindings={len(self._bindings)}>"
        )

    def bind(
        self,
        destination: Destination,
        binding_key: str,
        arguments: Mapping[str, Any] | None = None,
    ) -> bool:
        """Add a binding; False (and no change) if an identical one exists."""
        args: dict[str, Any] = dict(arguments) if arguments else {}
        self.validate_binding(binding_key, args)
        identity = (destination, binding_key, canonical_arguments(args))
        if identity in self._bindings:
            return False
        binding = Binding(destination, binding_key, args, identity)
        self._attach(binding)
        self._bindings[identity] = binding
        self._by_destination.setdefault(destination, {})[identity] = None
        return True

    def unbind(
        self,
        destination: Destination,
        binding_key: str,
        arguments: Mapping[str, Any] | None = None,
    ) -> bool:
        """Remove a binding; False if there was no such binding."""
        identity = (destination, binding_key, canonical_arguments(arguments))
        binding = self._bindings.get(identity)
        if binding is None:
            return False
        self._remove(binding)
        return True

    def unbind_destination(self, destination: Destination) -> int:
        """Remove every binding to ``destination``; returns how many there were."""
        identities = self._by_destination.get(destination)
        if not identities:
            return 0
        doomed = [self._bindings[identity] for identity in identities]
        for binding in doomed:
            self._remove(binding)
        return len(doomed)

    def bindings(self) -> Iterator[tuple[Destination, str, dict[str, Any]]]:
        """Every binding as ``(destination, binding_key, arguments)``, in bind order."""
        for binding in list(self._bindings.values()):
            yield binding.destination, binding.binding_key, dict(binding.arguments)

    def has_bindings(self) -> bool:
        return bool(self._bindings)

    def has_binding(
        self,
        destination: Destination,
        binding_key: str,
        arguments: Mapping[str, Any] | None = None,
    ) -> bool:
        return (destination, binding_key, canonical_arguments(arguments)) in self._bindings

    def validate_binding(  # noqa: B027 - accepting every binding is the default
        self, binding_key: str, arguments: Mapping[str, Any]
    ) -> None:
        """Raise ``PreconditionFailed`` if this type rejects the binding; default accepts."""

    @abstractmethod
    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        """Destinations of a message, each at most once; ``headers`` is called lazily."""

    @abstractmethod
    def _attach(self, binding: Binding) -> None:
        """Index a new binding for routing."""

    @abstractmethod
    def _detach(self, binding: Binding) -> None:
        """Drop a binding from the routing index."""

    def _remove(self, binding: Binding) -> None:
        self._detach(binding)
        del self._bindings[binding.identity]
        identities = self._by_destination[binding.destination]
        del identities[binding.identity]
        if not identities:
            del self._by_destination[binding.destination]
