"""Clients beyond Python, part 2: Ruby's Bunny (ruby-bunny) and PHP's php-amqplib, the
Debian packages (see .ci/run), each a real process against a real WarrenMQ.

Both: publisher confirms, headers and properties, a consumer with a prefetch that
nacks one delivery with requeue (it comes back redelivered, in its original place)
and acks the rest; the failure path is a passive declare of a missing queue (404,
that channel closed, the connection and its other channel fine).
"""

from __future__ import annotations

import json
import os

from tests.conftest import BrokerHandle
from tests.integration.test_clients_go_c import CLIENTS, need, run

HAS_AUTOLOAD = os.path.exists("/usr/share/php/PhpAmqpLib/autoload.php")


async def test_ruby_bunny(broker: BrokerHandle) -> None:
    ruby = need("ruby", "ruby-bunny")
    code, out, err = await run(ruby, str(CLIENTS / "ruby" / "roundtrip.rb"), broker.url)
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["confirmed"] is True
    # order.* matched i = 0, 2, 4; 2 was nacked once and came back redelivered
    assert report["seen"] == [
        {"i": 0, "redelivered": False, "n": 0, "id": "m0"},
        {"i": 2, "redelivered": True, "n": 2, "id": "m2"},
        {"i": 4, "redelivered": False, "n": 4, "id": "m4"}]
    assert report["missing"] == 404 and report["first_channel_open"] is True


async def test_php_amqplib(broker: BrokerHandle) -> None:
    php = need("php", "php-cli php-amqplib")
    assert HAS_AUTOLOAD, "apt-get install php-amqplib"
    code, out, err = await run(php, str(CLIENTS / "php" / "roundtrip.php"), broker.host,
                               str(broker.port))
    assert code == 0, out + err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["confirmed"] == 4
    # prefetch 1: 1 was nacked and requeued to its original place, ahead of 2 and 3
    assert report["seen"] == [
        {"i": 0, "redelivered": False, "n": 0, "lang": "php"},
        {"i": 1, "redelivered": True, "n": 1, "lang": "php"},
        {"i": 2, "redelivered": False, "n": 2, "lang": "php"},
        {"i": 3, "redelivered": False, "n": 3, "lang": "php"}]
    assert report["missing"] == 404
    assert broker.vhost().queues["php.work"].message_count == 0
