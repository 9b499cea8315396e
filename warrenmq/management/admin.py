"""Users, vhosts, permissions and policies over HTTP, as RabbitMQ's management API has them.

``/api/users[/{name}]`` (GET, PUT with ``password`` or ``password_hash`` and ``tags``,
DELETE), ``/api/users/without-permissions``, ``/api/users/bulk-delete``,
``/api/users/{name}/permissions``; ``/api/vhosts/{name}`` (GET, PUT, DELETE: deleting a
vhost deletes its queues and exchanges and closes its connections) and
``/api/vhosts/{name}/permissions``; ``/api/permissions[/{vhost}/{user}]``;
``/api/policies[/{vhost}[/{name}]]``. Status codes and error bodies are the ones a
RabbitMQ 3.10 node answers (201 created, 204 changed or deleted, 400 with RabbitMQ's
reason words, 404). Every change is saved to the data directory before the answer
(``persist``); a failed save is a 500 that says the change stands in memory and is
retried. Users and permissions need the administrator tag, policies policymaker or
administrator, as in RabbitMQ. Owns nothing; must not keep broker objects across
requests or await between reading and changing broker state.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warrenmq.broker.broker import User, VhostMetadata
from warrenmq.broker.definitions import mark_changed, user_document
from warrenmq.broker.permissions import FULL_ACCESS, Permission
from warrenmq.broker.policies import Policy
from warrenmq.config.rabbit import hash_password
from warrenmq.management.app import read_json
from warrenmq.management.auth import HttpError, Principal, bad_request, not_authorised, not_found
from warrenmq.management.edge import ServerView
from warrenmq.management.listing import arrange

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer

CONNECTION_FORCED = 320


def persist(server: ServerView) -> None:
    """Save the definitions now (users, permissions and policies included), or a 500."""
    mark_changed(server.broker)
    server.definitions_changed()
    if server.definitions_unsaved:
        raise HttpError(500, "internal_server_error",
                        "the change is in effect but could not be saved to the data"
                        " directory (see the broker's log); the save is retried every second")
    server.kick_commit()


def _body(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request("expected a JSON object")
    return raw


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(t.strip() for t in value if t.strip())
    raise bad_request("tags must be a comma-separated string or a list of strings")


def permission_json(user: str, vhost: str, p: Permission) -> dict[str, Any]:
    return {"user": user, "vhost": vhost, "configure": p.configure, "write": p.write,
            "read": p.read}


def policy_json(p: Policy) -> dict[str, Any]:
    return {"vhost": p.vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to,
            "definition": dict(p.definition), "priority": p.priority}


def user_json(user: User, limits: dict[str, int] | None = None) -> dict[str, Any]:
    entry = user_document(user)
    return {"name": user.name, "password_hash": entry.get("password_hash") or "",
            "hashing_algorithm": entry["hashing_algorithm"], "tags": list(user.tags),
            "limits": dict(limits or {})}


class AdminHandlers:
    def __init__(self, mgmt: ManagementServer) -> None:
        self.mgmt = mgmt
        self.server = mgmt.server
        self.broker = mgmt.broker

    def _admin(self, request: web.Request) -> Principal:
        p = self.mgmt.principal(request)
        p.require_admin()
        return p

    def _policymaker(self, request: web.Request) -> Principal:
        p = self.mgmt.principal(request)
        if not ({"administrator", "policymaker"} & set(p.user.tags)):
            raise not_authorised("Not policymaker user")
        return p

    def _user(self, name: str) -> User:
        user = self.broker.users.get(name)
        if user is None:
            raise not_found()
        return user

    def _vhost_name(self, name: str) -> str:
        if name not in self.broker.vhosts:
            raise not_found()
        return name

    # ----------------------------------------------------------------- users
    async def users(self, request: web.Request) -> web.Response:
        self._admin(request)
        return web.json_response(arrange(request.query, (
            user_json(u, self.broker.user_limits.get(u.name))
            for u in self.broker.users.values())))

    async def users_without_permissions(self, request: web.Request) -> web.Response:
        self._admin(request)
        granted = {user for user, _ in self.broker.permissions}
        return web.json_response(arrange(request.query, (
            user_json(u, self.broker.user_limits.get(u.name))
            for u in self.broker.users.values() if u.name not in granted)))

    async def user(self, request: web.Request) -> web.Response:
        self._admin(request)
        user = self._user(request.match_info["name"])
        return web.json_response(user_json(user, self.broker.user_limits.get(user.name)))

    async def put_user(self, request: web.Request) -> web.Response:
        self._admin(request)
        body = _body(await read_json(request))
        name = request.match_info["name"]
        if "tags" not in body:
            raise bad_request("tags_not_present")
        tags = _tags(body["tags"])
        password = body.get("password")
        password_hash = body.get("password_hash")
        if password is not None and not isinstance(password, str):
            raise bad_request("password must be a string")
        if password is None and password_hash is None:
            password_hash = ""  # RabbitMQ: no password login for this user
        if password_hash is not None:
            if not isinstance(password_hash, str):
                raise bad_request("password_hash must be a string")
            try:
                base64.b64decode(password_hash, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"password_hash is not base64: {password_hash!r}") from None
        algorithm = body.get("hashing_algorithm", "rabbit_password_hashing_sha256")
        if algorithm != "rabbit_password_hashing_sha256":
            raise bad_request(f"hashing_algorithm {algorithm!r} is not supported;"
                              " use rabbit_password_hashing_sha256")
        old = self.broker.users.get(name)
        if password is not None:
            password_hash, password = hash_password(password), None
        self.broker.set_user(User(name, password=None, password_hash=password_hash,
                                  tags=tags, loopback_only=old is not None and old.loopback_only))
        persist(self.server)
        return web.Response(status=201 if old is None else 204)

    async def delete_user(self, request: web.Request) -> web.Response:
        self._admin(request)
        if not self.broker.delete_user(request.match_info["name"]):
            raise not_found()
        persist(self.server)
        return web.Response(status=204)

    async def bulk_delete_users(self, request: web.Request) -> web.Response:
        self._admin(request)
        body = _body(await read_json(request))
        names = body.get("users")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad_request("users must be a list of user names")
        missing = [n for n in names if n not in self.broker.users]
        if missing:
            raise bad_request(f"no_such_user: {missing[0]}")
        for name in names:
            self.broker.delete_user(name)
        persist(self.server)
        return web.Response(status=204)

    async def user_permissions(self, request: web.Request) -> web.Response:
        self._admin(request)
        name = self._user(request.match_info["name"]).name
        return web.json_response(arrange(request.query, (
            permission_json(u, v, p) for (u, v), p in self.broker.permissions.items()
            if u == name)))

    # ----------------------------------------------------------------- vhosts
    async def vhost(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost = p.vhost(request.match_info["vhost"])
        return web.json_response(vhost_json(vhost.name, self.server))

    async def put_vhost(self, request: web.Request) -> web.Response:
        """Create a vhost, or set an existing one's description and tags (a PUT sets
        both: one left out is cleared, as RabbitMQ 3.10.8 does). ``default_queue_type``
        is ignored, as 3.10.8 ignores it."""
        p = self._admin(request)
        body = _body(await read_json(request))
        name = request.match_info["vhost"]
        description = body.get("description", "")
        if not isinstance(description, str):
            raise bad_request("description must be a string")
        metadata = VhostMetadata(description, _tags(body.get("tags", [])))
        existed = name in self.broker.vhosts
        if existed and self.broker.vhost_metadata.get(name, VhostMetadata()) == metadata:
            return web.Response(status=204)
        if not existed:
            try:
                self.broker.add_vhost(name)
            except ValueError as exc:
                raise bad_request(str(exc)) from None
            # RabbitMQ gives the user who created a vhost full permissions in it
            self.broker.set_permission(p.user.name, name, FULL_ACCESS)
        self.broker.set_vhost_metadata(name, metadata)
        persist(self.server)
        return web.Response(status=204 if existed else 201)

    async def delete_vhost(self, request: web.Request) -> web.Response:
        self._admin(request)
        name = self._vhost_name(request.match_info["vhost"])
        vhost = self.broker.vhosts[name]
        for conn in list(self.server.connections):
            if conn.vhost is vhost:
                conn.close(CONNECTION_FORCED, f"CONNECTION_FORCED - vhost '{name}' is deleted")
        self.broker.delete_vhost(name)
        persist(self.server)
        return web.Response(status=204)

    async def vhost_permissions(self, request: web.Request) -> web.Response:
        self._admin(request)
        name = self._vhost_name(request.match_info["vhost"])
        return web.json_response(arrange(request.query, (
            permission_json(u, v, p) for (u, v), p in self.broker.permissions.items()
            if v == name)))

    # ----------------------------------------------------------------- permissions
    async def permissions(self, request: web.Request) -> web.Response:
        self._admin(request)
        return web.json_response(arrange(request.query, (
            permission_json(u, v, p) for (u, v), p in self.broker.permissions.items())))

    def _permission_key(self, request: web.Request) -> tuple[str, str]:
        return request.match_info["user"], request.match_info["vhost"]

    async def permission(self, request: web.Request) -> web.Response:
        self._admin(request)
        user, vhost = self._permission_key(request)
        found = self.broker.permissions.get((user, vhost))
        if found is None:
            raise not_found()
        return web.json_response(permission_json(user, vhost, found))

    async def put_permission(self, request: web.Request) -> web.Response:
        self._admin(request)
        body = _body(await read_json(request))
        user, vhost = self._permission_key(request)
        missing = [k for k in ("configure", "write", "read") if k not in body]
        if missing:
            raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
        if user not in self.broker.users or vhost not in self.broker.vhosts:
            raise bad_request("vhost_or_user_not_found")
        try:
            permission = Permission(body["configure"], body["write"], body["read"])
        except (ValueError, TypeError) as exc:
            raise bad_request(str(exc)) from None
        existed = (user, vhost) in self.broker.permissions
        self.broker.set_permission(user, vhost, permission)
        persist(self.server)
        return web.Response(status=204 if existed else 201)

    async def delete_permission(self, request: web.Request) -> web.Response:
        self._admin(request)
        if not self.broker.clear_permission(*self._permission_key(request)):
            raise not_found()
        persist(self.server)
        return web.Response(status=204)

    # ----------------------------------------------------------------- policies
    async def policies(self, request: web.Request) -> web.Response:
        self._policymaker(request)
        name = request.match_info.get("vhost")
        if name is not None:
            self._vhost_name(name)
        return web.json_response(arrange(request.query, (
            policy_json(p) for (v, _), p in self.broker.policies.items()
            if name is None or v == name)))

    async def policy(self, request: web.Request) -> web.Response:
        self._policymaker(request)
        found = self.broker.policies.get((request.match_info["vhost"],
                                          request.match_info["name"]))
        if found is None:
            raise not_found()
        return web.json_response(policy_json(found))

    async def put_policy(self, request: web.Request) -> web.Response:
        self._policymaker(request)
        body = _body(await read_json(request))
        vhost = self._vhost_name(request.match_info["vhost"])
        name = request.match_info["name"]
        missing = [k for k in ("pattern", "definition") if k not in body]
        if missing:
            raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
        priority = body.get("priority", 0)
        if isinstance(priority, str) and priority.strip().lstrip("-").isdigit():
            priority = int(priority)  # rabbitmqadmin sends it as a string
        try:
            policy = Policy(name=name, vhost=vhost, pattern=body["pattern"],
                            apply_to=body.get("apply-to", "all"), priority=priority,
                            definition=body["definition"])
        except (ValueError, TypeError) as exc:
            raise bad_request(f"Validation failed: {exc}") from None
        existed = (vhost, name) in self.broker.policies
        self.broker.set_policy(policy)
        persist(self.server)
        return web.Response(status=204 if existed else 201)

    async def delete_policy(self, request: web.Request) -> web.Response:
        self._policymaker(request)
        if not self.broker.clear_policy(request.match_info["vhost"], request.match_info["name"]):
            raise not_found()
        persist(self.server)
        return web.Response(status=204)


def vhost_json(name: str, server: ServerView) -> dict[str, Any]:
    """RabbitMQ's vhost object; ``default_queue_type`` is "undefined" as 3.10.8 says."""
    vhost = server.broker.vhosts[name]
    ready = sum(q.message_count for q in vhost.queues.values())
    unacked = sum(q.unacked for q in vhost.queues.values())
    meta = server.broker.vhost_metadata.get(name, VhostMetadata())
    return {"name": name, "description": meta.description, "tags": list(meta.tags),
            "default_queue_type": "undefined",
            "metadata": {"description": meta.description, "tags": list(meta.tags)},
            "tracing": False,
            "cluster_state": {server.cluster_name: "running"},
            "messages": ready + unacked, "messages_ready": ready,
            "messages_unacknowledged": unacked}


def add_admin_routes(app: web.Application, mgmt: ManagementServer) -> None:
    h = AdminHandlers(mgmt)
    r = app.router
    r.add_get("/api/users", h.users)
    r.add_get("/api/users/without-permissions", h.users_without_permissions)
    r.add_post("/api/users/bulk-delete", h.bulk_delete_users)
    r.add_get("/api/users/{name}", h.user)
    r.add_put("/api/users/{name}", h.put_user)
    r.add_delete("/api/users/{name}", h.delete_user)
    r.add_get("/api/users/{name}/permissions", h.user_permissions)
    r.add_get("/api/vhosts/{vhost}", h.vhost)
    r.add_put("/api/vhosts/{vhost}", h.put_vhost)
    r.add_delete("/api/vhosts/{vhost}", h.delete_vhost)
    r.add_get("/api/vhosts/{vhost}/permissions", h.vhost_permissions)
    r.add_get("/api/permissions", h.permissions)
    r.add_get("/api/permissions/{vhost}/{user}", h.permission)
    r.add_put("/api/permissions/{vhost}/{user}", h.put_permission)
    r.add_delete("/api/permissions/{vhost}/{user}", h.delete_permission)
    r.add_get("/api/policies", h.policies)
    r.add_get("/api/policies/{vhost}", h.policies)
    r.add_get("/api/policies/{vhost}/{name}", h.policy)
    r.add_put("/api/policies/{vhost}/{name}", h.put_policy)
    r.add_delete("/api/policies/{vhost}/{name}", h.delete_policy)
