"""The topology half of ``warrenmq migrate``: definitions in, conflicts, definitions out.

``plan`` takes WarrenMQ's own definitions document (``GET /api/definitions?format=
warrenmq``: argument values as declared, users with ``loopback_only``) and the target's
RabbitMQ export, chooses each durable queue's type (``--queue-type``), turns the document
into RabbitMQ's JSON with ``config.rabbit.for_rabbitmq`` (so the loss notes are exactly
``warrenmq definitions export``'s), and compares every entity with the target's: an
identical one is left out of the upload, a different one is a conflict, named. Users
are identical when their tags match and their password hashes are equal or verify the
same known password (the two URLs' credentials): hashes are salted, so a fresh node's
``guest`` never has our hash string. Must not talk HTTP or AMQP.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from warrenmq.config.rabbit import entity_key, for_rabbitmq

QUEUE_TYPES = ("auto", "quorum", "classic")
#: Queue arguments a RabbitMQ 3.10 quorum queue refuses (the queue stays classic).
_NOT_QUORUM = ("x-max-priority", "x-queue-mode", "x-queue-master-locator")


@dataclass
class Plan:
    upload: dict[str, Any]                  # RabbitMQ JSON: what the target lacks
    document: dict[str, Any]                # RabbitMQ JSON: everything (for --dry-run)
    notes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    present: int = 0                        # entities the target already has, identical

    def queues(self) -> list[tuple[str, str]]:
        """(vhost, queue) of every queue whose messages move (not streams: consuming one
        does not empty it, so its contents are listed as not moved instead)."""
        return [(q["vhost"], q["name"]) for q in self.document.get("queues") or []
                if (q.get("arguments") or {}).get("x-queue-type") != "stream"]


def _who(section: str, entry: dict[str, Any]) -> str:
    name = entry.get("name", entry.get("user", entry.get("source", "")))
    vhost = f' in vhost "{entry["vhost"]}"' if "vhost" in entry else ""
    return f'{section[:-1]} "{name}"{vhost}'


def choose_types(document: dict[str, Any], mode: str) -> list[str]:
    """Set ``x-queue-type`` on durable queues that do not name one; returns notes.

    auto: quorum for a queue with x-delivery-limit (RabbitMQ counts deliveries on quorum
    queues only), classic otherwise; quorum / classic: that type for every such queue.
    A queue a quorum queue cannot be (auto-delete, or arguments it refuses) stays classic.
    """
    notes: list[str] = []
    for q in document.get("queues") or []:
        arguments = q.setdefault("arguments", {})
        if arguments.get("x-queue-type") == "stream":
            notes.append(f"{_who('queues', q)}: a stream; declared on the target, its"
                         " contents are not moved")
        if "x-queue-type" in arguments:
            continue  # the application declares its type: the target must match it
        want = mode if mode != "auto" else (
            "quorum" if "x-delivery-limit" in arguments else "classic")
        if want != "quorum":
            continue
        refused = [a for a in _NOT_QUORUM if a in arguments]
        if arguments.get("x-overflow") == "reject-publish-dlx":
            refused.append("x-overflow=reject-publish-dlx")
        if q.get("auto_delete") or refused:
            why = "auto-delete" if q.get("auto_delete") else ", ".join(refused)
            notes.append(f"{_who('queues', q)}: stays classic; a quorum queue cannot be {why}")
            continue
        arguments["x-queue-type"] = "quorum"
        notes.append(f"{_who('queues', q)}: becomes a quorum queue; clients that declare it"
                     " must pass x-queue-type: quorum")
    return notes


def _check_hash(password_hash: str, password: str) -> bool:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt(4) + sha256(salt + pw))."""
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except ValueError:
        return False
    salt, digest = raw[:4], raw[4:]
    return len(raw) == 36 and hashlib.sha256(salt + password.encode()).digest() == digest


def _normal(section: str, entry: dict[str, Any]) -> Any:
    """What must match for an entry to be the same entity, in comparable form."""
    if section == "vhosts":
        return None
    if section == "permissions":
        return [entry.get(k) for k in ("configure", "write", "read")]
    if section == "policies":
        return [entry.get(k) for k in ("pattern", "apply-to", "definition", "priority")]
    if section == "exchanges":
        return [entry.get("type"), entry.get("durable", True),
                bool(entry.get("auto_delete")), bool(entry.get("internal")),
                entry.get("arguments") or {}]
    if section == "queues":
        arguments = dict(entry.get("arguments") or {})
        kind = arguments.pop("x-queue-type", entry.get("type") or "classic")
        return {"type": kind, "durable": entry.get("durable", True),
                "auto_delete": bool(entry.get("auto_delete")), "arguments": arguments}
    return json.dumps(entry, sort_keys=True, default=str)


def _tags(entry: dict[str, Any]) -> list[str]:
    tags = entry.get("tags") or []
    return sorted(t for t in (tags.split(",") if isinstance(tags, str) else tags) if t)


def _same_user(ours: dict[str, Any], theirs: dict[str, Any], passwords: list[str]) -> str:
    """'' when the same user, else what differs."""
    if _tags(ours) != _tags(theirs):
        return f"tags {_tags(theirs)} there, {_tags(ours)} here"
    mine, other = ours.get("password_hash") or "", theirs.get("password_hash") or ""
    if mine == other or any(_check_hash(mine, p) and _check_hash(other, p)
                            for p in passwords):
        return ""
    return "a different password (or one this tool cannot compare: hashes are salted)"


def _differs(section: str, ours: dict[str, Any], theirs: dict[str, Any],
             passwords: list[str]) -> str:
    if section == "users":
        return _same_user(ours, theirs, passwords)
    mine, other = _normal(section, ours), _normal(section, theirs)
    if mine == other:
        return ""
    return (f"the target has {json.dumps(other, sort_keys=True, default=str)}, this broker "
            f"{json.dumps(mine, sort_keys=True, default=str)}")


def plan(source: dict[str, Any], target: dict[str, Any], mode: str,
         passwords: list[str]) -> Plan:
    """Compare WarrenMQ's own document ``source`` with the target's RabbitMQ export."""
    source = json.loads(json.dumps(source))  # ours to change
    type_notes = choose_types(source, mode)
    document, notes = for_rabbitmq(source)
    result = Plan(upload={k: v for k, v in document.items() if not isinstance(v, list)},
                  document=document, notes=[*notes, *type_notes])
    for section, entries in document.items():
        if not isinstance(entries, list):
            continue
        there = {entity_key(section, e): e for e in target.get(section) or []}
        kept = []
        for entry in entries:
            match = there.get(entity_key(section, entry))
            if match is None:
                kept.append(entry)
                continue
            difference = _differs(section, entry, match, passwords)
            if difference:
                result.conflicts.append(f"{_who(section, entry)}: {difference}")
            else:
                result.present += 1
        if kept:  # an absent section changes nothing (an empty one may mean "none")
            result.upload[section] = kept
    return result


def entity_count(document: dict[str, Any]) -> int:
    return sum(len(v) for v in document.values() if isinstance(v, list))
