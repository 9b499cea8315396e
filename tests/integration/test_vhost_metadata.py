"""Vhost description and tags: set with ``PUT /api/vhosts/{name}``, shown by
``GET /api/vhosts``, in the data directory before the answer and after a restart, in the
definitions export and import (RabbitMQ 3.10's top-level form and the ``metadata``
form), and in the YAML config. What a RabbitMQ 3.10.8 node answers was checked by hand
on a private node: a PUT sets both (one left out is cleared), ``default_queue_type``
is ignored ("undefined"), an existing vhost's PUT answers 204.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config
from tests.mgmthttp import MANAGEMENT, Http
from warrenmq.app import start
from warrenmq.config import ConfigError, VhostConfig, load_config


def saved_vhosts(tmp_path: Path) -> dict[str, dict[str, Any]]:
    document = json.loads((tmp_path / "data" / "definitions.json").read_text())
    return {v["name"]: v for v in document["vhosts"]}


async def test_put_get_save_restart(tmp_path: Path) -> None:
    server = await start(make_config(tmp_path, MANAGEMENT))
    try:
        assert server.management_port
        http = Http(server.management_port)
        reply = await http.request("PUT", "/api/vhosts/billing", body={
            "description": "invoices and payments", "tags": "finance,eu",
            "default_queue_type": "quorum"})
        assert reply.status == 201
        # in the data directory when the answer arrives
        assert saved_vhosts(tmp_path)["billing"]["description"] == "invoices and payments"
        vhost = await http.json("/api/vhosts/billing")
        assert (vhost["description"], vhost["tags"]) == ("invoices and payments",
                                                         ["finance", "eu"])
        assert vhost["metadata"] == {"description": "invoices and payments",
                                     "tags": ["finance", "eu"]}
        assert vhost["default_queue_type"] == "undefined"  # as RabbitMQ 3.10.8
        listed = {v["name"]: v for v in await http.json("/api/vhosts")}
        assert listed["billing"]["tags"] == ["finance", "eu"]
        assert listed["/"]["description"] == "" and listed["/"]["tags"] == []
        # a list of tags works too; a PUT that leaves tags out clears them (RabbitMQ)
        assert (await http.request("PUT", "/api/vhosts/ops", body={
            "description": "d", "tags": ["a", "b"]})).status == 201
        assert (await http.json("/api/vhosts/ops"))["tags"] == ["a", "b"]
        assert (await http.request("PUT", "/api/vhosts/ops", body={
            "description": "only this"})).status == 204
        ops = await http.json("/api/vhosts/ops")
        assert (ops["description"], ops["tags"]) == ("only this", [])
        for bad in ({"description": 7}, {"tags": 7}, {"tags": [1, 2]}):
            reply = await http.request("PUT", "/api/vhosts/ops", body=bad)
            assert (reply.status, reply.json["error"]) == (400, "bad_request"), bad
        assert (await http.json("/api/vhosts/ops"))["description"] == "only this"
    finally:
        await server.close(grace=2)
    server = await start(make_config(tmp_path, MANAGEMENT))
    try:
        assert server.management_port
        http = Http(server.management_port)
        vhost = await http.json("/api/vhosts/billing")
        assert (vhost["description"], vhost["tags"]) == ("invoices and payments",
                                                         ["finance", "eu"])
        assert (await http.json("/api/vhosts/ops"))["description"] == "only this"
        # deleting the vhost forgets them: a new one of the same name starts empty
        assert (await http.request("DELETE", "/api/vhosts/billing")).status == 204
        assert (await http.request("PUT", "/api/vhosts/billing", body={})).status == 201
        assert (await http.json("/api/vhosts/billing"))["description"] == ""
    finally:
        await server.close(grace=2)


async def test_definitions_export_and_import(tmp_path: Path) -> None:
    server = await start(make_config(tmp_path, MANAGEMENT))
    try:
        assert server.management_port
        http = Http(server.management_port)
        await http.request("PUT", "/api/vhosts/v1", body={"description": "one",
                                                          "tags": "x,y"})
        exported = {v["name"]: v for v in (await http.json("/api/definitions"))["vhosts"]}
        assert exported["v1"]["metadata"] == {"description": "one", "tags": ["x", "y"]}
        document = {"vhosts": [
            {"name": "v2", "description": "top-level form", "tags": "a,b"},  # 3.10 import
            {"name": "v3", "metadata": {"description": "metadata form", "tags": ["c"]}},
        ]}
        reply = await http.request("POST", "/api/definitions", body=document)
        assert reply.status in (200, 201, 204), reply
        v2, v3 = await http.json("/api/vhosts/v2"), await http.json("/api/vhosts/v3")
        assert (v2["description"], v2["tags"]) == ("top-level form", ["a", "b"])
        assert (v3["description"], v3["tags"]) == ("metadata form", ["c"])
        assert saved_vhosts(tmp_path)["v3"]["tags"] == ["c"]
    finally:
        await server.close(grace=2)


async def test_yaml_description_and_tags(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text(
        "vhosts:\n"
        "  - {name: /}\n"
        "  - name: shop\n"
        "    description: the web shop\n"
        "    tags: [production, eu]\n")
    config = load_config(path)
    assert config.vhosts[1] == VhostConfig("shop", description="the web shop",
                                           tags=("production", "eu"))
    path.write_text("vhosts:\n  - {name: shop, description: 7}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "vhosts[0].description" in str(refused.value), str(refused.value)
    assert "broker.yaml" in str(refused.value)
