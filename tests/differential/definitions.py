"""The users, vhosts and permissions both brokers of a differential test start with.

RabbitMQ's definitions document: the private node loads it at boot, and WarrenMQ is
started with it as its config (``serve --config definitions.json`` does the same), so the
import path is exercised too. Add what a new scenario needs here; keep names distinct.
"""

from __future__ import annotations

from typing import Any

from warrenmq.config.rabbit import SHA256, hash_password

ALL = {"configure": ".*", "write": ".*", "read": ".*"}


def _user(name: str, tags: list[str]) -> dict[str, Any]:
    return {"name": name, "password_hash": hash_password(name if name != "guest" else "guest"),
            "hashing_algorithm": SHA256, "tags": tags, "limits": {}}


DEFINITIONS: dict[str, Any] = {
    "rabbit_version": "3.10.8",
    "users": [_user("guest", ["administrator"]), _user("topics", [])],
    "vhosts": [{"name": "/"}, {"name": "tv"}],
    "permissions": [
        {"user": "guest", "vhost": "/", **ALL},
        {"user": "guest", "vhost": "tv", **ALL},
        {"user": "topics", "vhost": "/", **ALL},
        {"user": "topics", "vhost": "tv", **ALL},
    ],
    # Topic authorisation: user "topics" may publish to amq.topic only with routing keys
    # that start with its name, and bind from it only keys starting with "pub." or the
    # vhost's name; in vhost "tv" keys must start with the vhost's name, and the empty
    # regexes on "empty.topic" (and on amq.direct, not a topic exchange) are checked too.
    "topic_permissions": [
        {"user": "topics", "vhost": "/", "exchange": "amq.topic",
         "write": "^{username}\\.", "read": "^(pub|{vhost})\\."},
        {"user": "topics", "vhost": "tv", "exchange": "amq.topic",
         "write": "^{vhost}\\.", "read": ".*"},
        {"user": "topics", "vhost": "tv", "exchange": "amq.direct",
         "write": "", "read": ""},
        {"user": "topics", "vhost": "tv", "exchange": "empty.topic",
         "write": "", "read": ""},
    ],
    "exchanges": [
        {"name": "empty.topic", "vhost": "tv", "type": "topic", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {}},
    ],
    "policies": [], "queues": [], "bindings": [],
    "parameters": [], "global_parameters": [],
}
