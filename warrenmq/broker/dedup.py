"""Deduplication inside a virtual host: which entities deduplicate, and the publish path
that drops duplicates (see ``queues/dedup.py`` for the arguments and the cache).

``VirtualHost.dedup`` is None until some queue or exchange of the vhost turns
deduplication on; while it is None a publish pays one attribute test in ``flow.publish``
and nothing else. Once set, ``Deduplication.publish`` takes every publish of the vhost:

- the exchange published to, if it deduplicates, drops a duplicate before routing (no
  queue sees it, alternate exchanges included);
- each queue reached that deduplicates drops it for itself only: the other queues the
  message was routed to still get it, and it is stored only for the queues that keep it;
- a dropped duplicate is counted on its entity (``DedupCache.duplicates``) and reported
  as routed ``DUPLICATE`` (-1) when no queue took it, so the channel sends no
  basic.return for a mandatory publish (the message was accepted the first time) and
  confirms it once the key that caused the drop is durable.

Dead letters are not deduplicated (they were accepted once already); only publishes
(basic.publish, transactions, the management API's publish) come here.

A queue's cache lives on the queue (``Queue.dedup``) and goes with it; an exchange's
lives here by name, with the exchange it belongs to (a redeclared exchange of the same
name gets a new cache). A durable entity's cache writes its keys to the broker's
``DedupLog`` and, when the entity is restored at start-up, takes back the keys recovered
for it. Owns no asyncio; called from the vhost's declare, policy and publish paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from warrenmq.broker.flow import enqueue_routed
from warrenmq.broker.routing import route
from warrenmq.exchange import Exchange
from warrenmq.message import Message
from warrenmq.queues.dedup import DedupCache, DedupSettings, parse_settings
from warrenmq.queues.queue import Queue

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost

#: ``routed`` of a publish that every deduplicating entity it met dropped.
DUPLICATE: Final = -1


def entity_key(kind: str, vhost: str, name: str) -> str:
    """The dedup log's name for a queue ("q") or exchange ("e")."""
    return f"{kind}\x00{vhost}\x00{name}"


class Deduplication:
    def __init__(self, vhost: VirtualHost) -> None:
        self.vhost = vhost
        # exchange name -> (the exchange, its cache)
        self.exchanges: dict[str, tuple[Exchange, DedupCache]] = {}

    # ----------------------------------------------------------------- publish
    def publish(self, exchange: Exchange, message: Message) -> tuple[int, bool, int]:
        """``flow.publish`` for a vhost with deduplicating entities (module docstring)."""
        added: list[DedupCache] = []  # caches that took a new key from this message
        held = 0
        found = self.exchanges.get(exchange.name)
        if found is not None and found[0] is exchange:
            duplicate, held = _admit(found[1], message, added)
            if duplicate:
                return DUPLICATE, False, held
        queues = route(self.vhost, exchange, message)
        if any(queue.dedup is not None for queue in queues):
            queues, ticket = _filter(queues, message, added)
            held = max(held, ticket)
            if not queues:
                return DUPLICATE, False, held
        if not queues:
            return 0, False, held
        routed, rejected, ticket = enqueue_routed(self.vhost, queues, message)
        if rejected:  # nacked: the publisher will retry, and the retry must get through
            for cache in added:
                cache.forget(cache.last_key)
        return routed, rejected, max(ticket, held)

    # ----------------------------------------------------------------- configuration
    def configure_queue(self, queue: Queue) -> None:
        """Give ``queue`` the cache its effective arguments ask for (declare, policy)."""
        where = f"queue '{queue.name}' in vhost '{self.vhost.name}'"
        settings = parse_settings(queue.effective_arguments, where)
        key = entity_key("q", self.vhost.name, queue.name)
        durable = queue.durable and not queue.exclusive
        queues = self.vhost.queues
        queue.dedup = self._cache(queue.dedup, settings, key, durable,
                                  lambda: queues.get(queue.name) is queue)

    def configure_exchange(self, exchange: Exchange) -> None:
        where = f"exchange '{exchange.name}' in vhost '{self.vhost.name}'"
        settings = parse_settings(exchange.effective_arguments, where)
        found = self.exchanges.get(exchange.name)
        current = found[1] if found is not None and found[0] is exchange else None
        key = entity_key("e", self.vhost.name, exchange.name)
        exchanges = self.vhost.exchanges
        cache = self._cache(current, settings, key, exchange.durable,
                            lambda: exchanges.get(exchange.name) is exchange)
        if cache is None:
            self.exchanges.pop(exchange.name, None)
        else:
            self.exchanges[exchange.name] = (exchange, cache)
        for name, (owner, _) in list(self.exchanges.items()):  # deleted ones go
            if exchanges.get(name) is not owner:
                del self.exchanges[name]

    def _cache(self, current: DedupCache | None, settings: DedupSettings | None, key: str,
               durable: bool, alive: Callable[[], bool]) -> DedupCache | None:
        log = self.vhost.dedup_log if durable else None
        if settings is None:
            if current is not None and current.log is not None:
                current.log.append_clear(key)  # turned off: its keys are forgotten
                current.log.unregister(key)
            return None
        if current is not None:
            if settings.cache_size < current.settings.cache_size:
                current.resize(settings.cache_size)
            current.settings = settings
            return current
        cache = DedupCache(settings, self.vhost.clock, log, key)
        if log is not None:
            recovered = log.adopt(key)
            if recovered is None:
                log.append_clear(key)  # a new entity: no keys of an old one of that name
            else:
                cache.restore(recovered)
            log.register(key, cache, alive)
        return cache

    def reconfigure_all(self) -> None:
        """Policies changed: every entity's cache follows its effective arguments."""
        for queue in list(self.vhost.queues.values()):
            self.configure_queue(queue)
        for exchange in list(self.vhost.exchanges.values()):
            if exchange.name:
                self.configure_exchange(exchange)

    def active(self) -> bool:
        """Any entity of the vhost deduplicates."""
        return bool(self.exchanges) or any(
            q.dedup is not None for q in self.vhost.queues.values())

    def exchange_cache(self, exchange: Exchange) -> DedupCache | None:
        found = self.exchanges.get(exchange.name)
        return found[1] if found is not None and found[0] is exchange else None


def configure_queue(vhost: VirtualHost, queue: Queue) -> None:
    """The vhost's declare/policy hook for a queue: cheap unless dedup is involved."""
    if vhost.dedup is None:
        if parse_settings(queue.effective_arguments,
                          f"queue '{queue.name}' in vhost '{vhost.name}'") is None:
            return
        vhost.dedup = Deduplication(vhost)
    vhost.dedup.configure_queue(queue)


def configure_exchange(vhost: VirtualHost, exchange: Exchange) -> None:
    if vhost.dedup is None:
        if parse_settings(exchange.effective_arguments,
                          f"exchange '{exchange.name}' in vhost '{vhost.name}'") is None:
            return
        vhost.dedup = Deduplication(vhost)
    vhost.dedup.configure_exchange(exchange)


def reconfigure(vhost: VirtualHost) -> None:
    """After a policy change (``policies.reapply``)."""
    if vhost.dedup is None:
        for queue in list(vhost.queues.values()):
            configure_queue(vhost, queue)
        for exchange in list(vhost.exchanges.values()):
            if exchange.name:
                configure_exchange(vhost, exchange)
        return
    vhost.dedup.reconfigure_all()
    if not vhost.dedup.active():
        vhost.dedup = None


def _admit(cache: DedupCache, message: Message, added: list[DedupCache]) -> tuple[bool, int]:
    cache.last_key = b""
    duplicate, ticket = cache.admit(message)
    if cache.last_key:
        added.append(cache)
    return duplicate, ticket


def _filter(queues: list[Queue], message: Message, added: list[DedupCache]
            ) -> tuple[list[Queue], int]:
    """The queues that keep the message (each deduplicating one asked), and the highest
    ticket of the keys involved."""
    keep = []
    held = 0
    for queue in queues:
        cache = queue.dedup
        if cache is None:
            keep.append(queue)
            continue
        duplicate, ticket = _admit(cache, message, added)
        held = max(held, ticket)
        if not duplicate:
            keep.append(queue)
    return keep, held
