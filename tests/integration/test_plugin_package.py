"""The example out-of-tree plugin (examples/json-field-exchange) installed and used for real.

Covers: the package is installed with pip (``--target``, offline, from a copy of the
example) and a broker started as a process (``python -m warrenmq serve``) with it on
PYTHONPATH finds it through the ``warrenmq.exchanges`` entry point (the
``exchange_type_plugin_loaded`` event names the package); a client declares an
``x-json-field`` exchange, binds queues and publishes JSON bodies, which route by the
field; a declare without the ``field`` argument gets the plugin's 406; the management
overview lists the type with its origin; ``warrenmq check-config`` accepts a YAML
declaring the type when the plugin is installed and refuses it (exit 2, file and line)
when it is not; a broken plugin (its module fails to import) stops the broker at start
with exit status 2 and a message naming the entry point and the package.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiormq
import pytest

from tests.helpers import TIMEOUT
from tests.mgmthttp import Http
from tests.process import REPO, BrokerProcess, run_cli

EXAMPLE = REPO / "examples" / "json-field-exchange"


def pip_install(source: Path, target: Path) -> None:
    """Offline install of a local package into ``target`` (no index, no build isolation)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(EXAMPLE, source)  # the build leaves build/ and egg-info beside it
    target = work / "site"
    pip_install(source, target)
    yield target


def pythonpath(*extra: Path) -> str:
    return os.pathsep.join([*map(str, extra), os.environ.get("PYTHONPATH", "")])


async def get_bodies(ch: aiormq.abc.AbstractChannel, queue: str) -> list[bytes]:
    bodies = []
    while True:
        got = await asyncio.wait_for(ch.basic_get(queue, no_ack=True), TIMEOUT)
        if isinstance(got.delivery, aiormq.spec.Basic.GetEmpty):
            return bodies
        bodies.append(got.body)


async def test_installed_plugin_is_found_declared_and_routes(
    plugin_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", pythonpath(plugin_path))
    async with BrokerProcess(tmp_path / "data") as broker:
        assert "exchange_type_plugin_loaded" in broker.log
        assert "warrenmq-json-field-exchange" in broker.log
        conn = await aiormq.connect(broker.amqp_url)
        try:
            ch = await conn.channel()
            await ch.exchange_declare("orders.by-country", exchange_type="x-json-field",
                                      arguments={"field": "order.country"})
            for country in ("DE", "FR"):
                await ch.queue_declare(f"q.{country}")
                await ch.queue_bind(f"q.{country}", "orders.by-country", routing_key=country)
            await ch.confirm_delivery()
            for n, country in enumerate(["DE", "FR", "DE", "IT"]):
                body = json.dumps({"order": {"id": n, "country": country}}).encode()
                await ch.basic_publish(body, exchange="orders.by-country", routing_key="")
            await ch.basic_publish(b"not json", exchange="orders.by-country", routing_key="")
            de = [json.loads(b)["order"]["id"] for b in await get_bodies(ch, "q.DE")]
            fr = [json.loads(b)["order"]["id"] for b in await get_bodies(ch, "q.FR")]
            assert (de, fr) == ([0, 2], [1])
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as info:
                await ch.exchange_declare("nofield", exchange_type="x-json-field")
            assert "x-json-field needs the argument 'field'" in str(info.value)
        finally:
            await conn.close()
        overview = await Http(broker.management_port).json("/api/overview")
        listed = {t["name"]: t for t in overview["exchange_types"]}
        assert "warrenmq-json-field-exchange" in listed["x-json-field"]["origin"]
        assert listed["direct"]["origin"] == "built-in"
        assert await broker.stop() == 0


def test_check_config_knows_plugin_types_when_installed(plugin_path: Path,
                                                        tmp_path: Path) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text("exchanges:\n  - name: by-country\n    type: x-json-field\n"
                      "    arguments: {field: country}\n")
    ok = run_cli("check-config", str(config), env={"PYTHONPATH": pythonpath(plugin_path)})
    assert ok.returncode == 0, ok.stderr
    assert f"{config}: ok" in ok.stdout
    missing = run_cli("check-config", str(config))
    assert missing.returncode == 2
    assert f'{config}:3:11: exchanges[0].type: unknown exchange type "x-json-field"' \
        in missing.stderr
    assert "Traceback" not in missing.stderr
    config.write_text("exchanges:\n  - name: by-country\n    type: x-json-field\n")
    refused = run_cli("check-config", str(config), env={"PYTHONPATH": pythonpath(plugin_path)})
    assert refused.returncode == 2
    assert "x-json-field needs the argument 'field'" in refused.stderr


def test_a_broken_plugin_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "broken"
    (source / "broken_exchange").mkdir(parents=True)
    (source / "broken_exchange" / "__init__.py").write_text(
        "raise ImportError('needs libfoo, which is not installed')\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "broken-exchange"\nversion = "1.2.3"\n'
        '[project.entry-points."warrenmq.exchanges"]\n'
        'x-broken = "broken_exchange:BrokenExchange"\n'
        '[tool.setuptools]\npackages = ["broken_exchange"]\n')
    target = tmp_path / "site"
    pip_install(source, target)
    result = run_cli("serve", "--host", "127.0.0.1", "--port", "0", "--no-management",
                     "--data-dir", str(tmp_path / "data"),
                     env={"PYTHONPATH": pythonpath(target)}, timeout=60)
    assert result.returncode == 2
    assert ("warrenmq: cannot start: exchange-type plugin 'x-broken = broken_exchange:"
            "BrokenExchange' (package broken-exchange 1.2.3, entry point group"
            " warrenmq.exchanges) failed to load: ImportError: needs libfoo, which is not"
            " installed (fix or uninstall the package)") in result.stderr
    assert "Traceback" not in result.stderr
