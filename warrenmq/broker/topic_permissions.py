"""Topic permissions: RabbitMQ's topic authorisation, per user, vhost and topic exchange.

A record holds two regular expressions for one exchange: ``write``, searched in the
routing key of each basic.publish to that exchange, and ``read``, searched in the binding
key of each queue.bind / queue.unbind / exchange.bind / exchange.unbind whose source it
is. ``{username}`` and ``{vhost}`` in a regex are replaced by the user's and the vhost's
names before it is compiled (RabbitMQ substitutes them verbatim, unescaped). As in
RabbitMQ 3.10's internal backend: only topic exchanges are checked, an exchange without a
record allows everything, the match is a search, and the empty regex stands for ``^$``
as in the other permissions: it allows only the empty key (observed on a 3.10.8 node,
tests/differential/test_diff_topic_permissions.py).

Owns ``TopicPermission`` (one record as given) and ``TopicRules`` (a user's compiled
records in one vhost, shared through its ``Grant`` by its connections and replaced in
place when a record changes). Must not know about channels or the config file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from warrenmq.errors import AccessRefused

TopicAccess = Literal["write", "read"]


def expand(pattern: str, user: str, vhost: str) -> str:
    """The regex with RabbitMQ's variables substituted ("" stands for ``^$``)."""
    if not pattern:
        return "^$"
    return pattern.replace("{username}", user).replace("{vhost}", vhost)


@dataclass(frozen=True, slots=True)
class TopicPermission:
    """The write and read regexes of one user for one exchange of one vhost."""

    exchange: str
    write: str
    read: str

    def __post_init__(self) -> None:
        for which in ("exchange", "write", "read"):
            if not isinstance(getattr(self, which), str):
                raise ValueError(f"{which}: expected a string, got {getattr(self, which)!r}")
        for which in ("write", "read"):
            try:  # as given: expanded variables cannot make a valid regex invalid here
                re.compile(expand(getattr(self, which), "u", "v"))
            except re.error as exc:
                raise ValueError(f"{which}: invalid regular expression"
                                 f" {getattr(self, which)!r}: {exc}") from None


class TopicRules:
    """A user's compiled topic permissions in one vhost: exchange name -> regexes."""

    __slots__ = ("rules", "user", "vhost")

    def __init__(self, user: str, vhost: str) -> None:
        self.user = user
        self.vhost = vhost
        self.rules: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {}

    def replace(self, records: list[TopicPermission]) -> None:
        """Take ``records`` as the whole set, in place (channels hold this object)."""
        compiled = {
            r.exchange: (re.compile(expand(r.write, self.user, self.vhost)),
                         re.compile(expand(r.read, self.user, self.vhost)))
            for r in records
        }
        self.rules.clear()
        self.rules.update(compiled)

    def check(self, access: TopicAccess, exchange: str, exchange_type: str, key: str) -> None:
        """403 worded as RabbitMQ's unless ``key`` may be used on ``exchange``."""
        if exchange_type != "topic":
            return
        rule = self.rules.get(exchange)
        if rule is None:
            return
        if rule[0 if access == "write" else 1].search(key) is None:
            raise AccessRefused(
                f"access to topic '{key}' in exchange '{exchange}' in vhost '{self.vhost}'"
                f" refused for user '{self.user}'")
