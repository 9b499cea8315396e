"""The exchange abstraction: a binding table that maps a published message to destinations.

This module owns the ``Exchange`` base class, the binding identity rules shared by every
exchange type, and the canonical (hashable, type-aware) form of AMQP field-table values.
It must not know about queues, channels, I/O or the broker: destinations are opaque
hashables, and exchange-to-exchange routing is walked by the broker, not here.

``Exchange`` is also the public interface of exchange-type plugins (docs/plugins.md):
a plugin subclasses it in interpreted Python, so the compiled class allows interpreted
subclasses. Beyond the binding index (``_init_index``/``_attach``/``_detach``) and
``route``, it has three optional hooks, each off unless a class asks for it, so the
built-in types pay nothing for them: ``validate_arguments`` (declare time),
``route_message`` (``ROUTES_MESSAGE``: routing that reads the properties or the body)
and ``hold``/``release``/``next_release`` (``HOLDS_MESSAGES``: an exchange that keeps
a message now and hands it back to be routed later).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypedDict

from mypy_extensions import mypyc_attr

from warrenmq.errors import AMQPError
from warrenmq.exchange.failure import contain

if TYPE_CHECKING:
    from warrenmq.message import Message

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


@mypyc_attr(allow_interpreted_subclasses=True)
class Exchange(ABC):
    """Common binding bookkeeping; subclasses index bindings for their own ``route``.

    Binding identity is ``(destination, binding_key, arguments)`` as in RabbitMQ, with
    arguments compared by value.  Subclasses implement ``_attach``/``_detach`` to keep
    their routing index in step, and ``route``.
    """

    #: the ``exchange.declare`` type name (registered in ``exchange/registry.py``)
    type_name: ClassVar[str]
    #: routing needs the whole message: the broker calls ``route_message`` instead of
    #: ``route`` (read once per exchange, into ``routes_message``, at construction)
    ROUTES_MESSAGE: ClassVar[bool] = False
    #: the exchange may keep a published message and release it later: the broker offers
    #: each message published to it to ``hold`` first (``holds_messages``)
    HOLDS_MESSAGES: ClassVar[bool] = False

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
        cls = type(self)
        self.routes_message: bool = cls.ROUTES_MESSAGE
        self.holds_messages: bool = cls.HOLDS_MESSAGES
        self._init_index()

    @classmethod  # noqa: B027 - accepting every argument table is the default
    def validate_arguments(
        cls, arguments: Mapping[str, Any]
    ) -> None:
        """Raise ``PreconditionFailed`` (406) with a clear text if this type refuses the
        declare's arguments; called before the exchange is created (not on redeclare,
        whose arguments must equal the existing ones). Default: accept."""

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
        self.check_binding(binding_key, args)
        identity = (destination, binding_key, canonical_arguments(args))
        if identity in self._bindings:
            return False
        binding = Binding(destination, binding_key, args, identity)
        try:
            self._attach(binding)
        except AMQPError:
            raise
        except Exception as exc:
            raise contain(self, "index a binding", exc) from exc
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

    def check_binding(self, binding_key: str, arguments: Mapping[str, Any]) -> None:
        """``validate_binding``, with a type's own exception (not an ``AMQPError``)
        turned into ``ExchangeTypeFailed`` (541 on the binding channel only)."""
        try:
            self.validate_binding(binding_key, arguments)
        except AMQPError:
            raise
        except Exception as exc:  # a plugin's fault: a clear 541, the broker goes on
            raise contain(self, "validate a binding", exc) from exc

    def validate_binding(  # noqa: B027 - accepting every binding is the default
        self, binding_key: str, arguments: Mapping[str, Any]
    ) -> None:
        """Raise ``PreconditionFailed`` if this type rejects the binding; default accepts."""

    @abstractmethod
    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        """Destinations of a message, each at most once; ``headers`` is called lazily."""

    def route_message(self, message: Message) -> set[Destination]:
        """Destinations of ``message`` when routing needs more than the key and headers
        (its properties or body). Called instead of ``route`` only for a class that sets
        ``ROUTES_MESSAGE``; must not change the message."""
        return self.route(message.routing_key, message.headers)

    def hold(self, message: Message, now: float) -> int | None:
        """Offered every message published to this exchange when the class sets
        ``HOLDS_MESSAGES``. ``None``: route it now as usual. An int: the exchange has
        taken the message (nothing is routed now, it is not returned as unroutable); the
        int is the store ticket whose commit makes the hold durable (the publisher's
        confirm waits for it), or 0 when nothing was stored. The broker then visits the
        exchange on its timer (``next_release``/``release``)."""
        return None

    def next_release(self) -> float | None:
        """When the next held message is due (the clock's seconds), or None if none is held."""
        return None

    def release(self, now: float) -> list[Message]:
        """The held messages due at ``now``, in due order, no longer held; the broker
        routes each through this exchange's ``route``/``route_message`` (not ``hold``)."""
        return []

    @abstractmethod
    def _attach(self, binding: Binding) -> None:
        """Index a new binding for routing."""

    @abstractmethod
    def _detach(self, binding: Binding) -> None:
        """Drop a binding from the routing index."""

    def _remove(self, binding: Binding) -> None:
        try:
            self._detach(binding)
        except Exception as exc:  # logged; the binding goes all the same (a queue's
            contain(self, "drop a binding", exc)  # delete must not fail on a plugin)
        del self._bindings[binding.identity]
        identities = self._by_destination[binding.destination]
        del identities[binding.identity]
        if not identities:
            del self._by_destination[binding.destination]
