"""The topic exchange: routing keys matched against dot-separated wildcard patterns.

Role and limits: owns a word trie of binding keys and a small cache of routing results.
It returns destinations only; it never follows exchange-to-exchange bindings, touches
queues, or does I/O.

Theory of operation
-------------------
Words.  A key is split on ``.``; every piece is a word, including empty pieces, so
``"a..b"`` is ``["a", "", "b"]`` and ``"a."`` is ``["a", ""]``.  The empty key is *zero*
words, not one empty word: RabbitMQ's ``split_topic_key(<<>>)`` returns ``[]`` (see
``rabbit_db_topic_exchange.erl``), and its ``routing_SUITE`` expects routing key ``""``
to reach the bindings ``""``, ``"#"``, ``"#.#"`` and ``"#.#.#"`` but not ``"*"``.  The
same split applies to binding keys, so binding key ``""`` matches only routing key ``""``.

Patterns.  In a binding key ``*`` matches exactly one word and ``#`` matches zero or more
words, wherever they appear (``#.a``, ``a.#.b``, ``#.#``).  ``a.#`` matches ``a``.

Trie.  Each binding key is a path from the root, one edge per word.  A node has a dict
of literal children, at most one ``*`` child and at most one ``#`` child, and a counter
of the destinations whose binding key ends there (a counter, because bindings that
differ only in arguments share a path and a destination).  Because ``*`` and ``#`` have
their own slots, a literal routing word ``*`` never takes a wildcard edge by accident.
Unbinding walks the path again and prunes nodes left with no children and no
destinations, so the trie's size tracks the live bindings.

Matching.  A search state is ``(node, i)``: the node reached after consuming the first
``i`` words of the routing key.  From a state:

* a literal child equal to word ``i`` and the ``*`` child lead to ``(child, i + 1)``;
* the ``#`` child leads to ``(hash_child, i)`` -- ``#`` consuming no word;
* a node entered through a ``#`` edge may also consume one more word: ``(node, i + 1)``;
* when ``i`` equals the number of words, the node's destinations are matched.

The states are explored with an explicit stack and a ``visited`` set, so each
``(node, i)`` is expanded once.  Work is bounded by the reachable nodes times the number
of words plus one, and a pattern such as ``#.#.#.#`` cannot blow up exponentially the way
naive backtracking does.  Literal edges are dict lookups, so the cost grows with the
length of the routing key and with the wildcard branches it can reach, not with the
total number of bindings.  No regular expressions are used.

Cache.  Publishers tend to reuse a few routing keys, so results are memoised per
routing key, in the manner of the NATS sublist cache.  Any bind or unbind clears the
cache, and the cache is also cleared when it reaches ``CACHE_SIZE`` entries, which keeps
memory bounded without any bookkeeping on the hot path.  Cached results are frozensets;
``route`` returns a fresh set, so callers may mutate what they get.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar, Final

from warrenmq.exchange.base import (
    Binding,
    Destination,
    Exchange,
    HeadersGetter,
    add_reference,
    drop_reference,
)

STAR: Final = "*"
HASH: Final = "#"


def split_topic_key(key: str) -> list[str]:
    """Words of a routing or binding key; the empty key has no words (as in RabbitMQ)."""
    return key.split(".") if key else []


class _Node:
    __slots__ = ("children", "destinations", "hash_child", "is_hash", "star_child")

    def __init__(self, *, is_hash: bool = False) -> None:
        self.children: dict[str, _Node] = {}
        self.star_child: _Node | None = None
        self.hash_child: _Node | None = None
        self.is_hash = is_hash
        self.destinations: Counter[Destination] = Counter()

    def child(self, word: str) -> _Node | None:
        if word == STAR:
            return self.star_child
        if word == HASH:
            return self.hash_child
        return self.children.get(word)

    def ensure_child(self, word: str) -> _Node:
        existing = self.child(word)
        if existing is not None:
            return existing
        created = _Node(is_hash=word == HASH)
        if word == STAR:
            self.star_child = created
        elif word == HASH:
            self.hash_child = created
        else:
            self.children[word] = created
        return created

    def remove_child(self, word: str) -> None:
        if word == STAR:
            self.star_child = None
        elif word == HASH:
            self.hash_child = None
        else:
            del self.children[word]

    def is_empty(self) -> bool:
        return not (self.destinations or self.children or self.star_child or self.hash_child)


def _match(root: _Node, words: list[str]) -> set[Destination]:
    end = len(words)
    found: set[Destination] = set()
    visited: set[tuple[_Node, int]] = set()
    pending: list[tuple[_Node, int]] = [(root, 0)]
    while pending:
        state = pending.pop()
        if state in visited:
            continue
        visited.add(state)
        node, position = state
        if node.hash_child is not None:
            pending.append((node.hash_child, position))
        if position == end:
            found.update(node.destinations)
            continue
        following = position + 1
        if node.is_hash:
            pending.append((node, following))
        literal = node.children.get(words[position])
        if literal is not None:
            pending.append((literal, following))
        if node.star_child is not None:
            pending.append((node.star_child, following))
    return found


class TopicExchange(Exchange):
    type_name: ClassVar[str] = "topic"
    CACHE_SIZE: ClassVar[int] = 4096

    def _init_index(self) -> None:
        self._root = _Node()
        self._cache: dict[str, frozenset[Destination]] = {}

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        cached = self._cache.get(routing_key)
        if cached is None:
            cached = frozenset(_match(self._root, split_topic_key(routing_key)))
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[routing_key] = cached
        return set(cached)

    def _attach(self, binding: Binding) -> None:
        node = self._root
        for word in split_topic_key(binding.binding_key):
            node = node.ensure_child(word)
        add_reference(node.destinations, binding.destination)
        self._cache.clear()

    def _detach(self, binding: Binding) -> None:
        words = split_topic_key(binding.binding_key)
        path = [self._root]
        for word in words:
            node = path[-1].child(word)
            if node is None:
                raise AssertionError(f"topic trie has no path for {binding.binding_key!r}")
            path.append(node)
        drop_reference(path[-1].destinations, binding.destination)
        self._cache.clear()
        for depth in range(len(words), 0, -1):
            if not path[depth].is_empty():
                break
            path[depth - 1].remove_child(words[depth - 1])
