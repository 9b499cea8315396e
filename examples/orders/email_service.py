"""Email: sends each customer an order confirmation (``email_service``, not ``email``,
so that it does not shadow the standard library's ``email`` package it uses).

Owns the consumer and :class:`SentLog`, the record of mails handed to the SMTP relay,
which outlives an instance (it is the provider's log). The relay is simulated by its
round-trip time; the message itself is a real ``email.message.EmailMessage``. An order
already in the log is acked and skipped. The demo takes this service down for a while
and brings it back: its queue grows meanwhile, and nothing is lost.
Must not touch other services' state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from service import Events, Service, parse_order


@dataclass
class SentLog:
    sent: dict[str, str] = field(default_factory=dict)  # order id -> Message-ID
    duplicates: int = 0


def confirmation(order: dict[str, Any]) -> EmailMessage:
    customer = order["customer"]
    mail = EmailMessage()
    mail["From"] = "orders@shop.example"
    mail["To"] = f"{customer['name']} <{customer['email']}>"
    mail["Subject"] = f"Your order {order['order_id']} is confirmed"
    mail["Message-ID"] = make_msgid(domain="shop.example")
    lines = [f"  {item['qty']} x {item['sku']} at {item['price']}" for item in order["items"]]
    mail.set_content("Thank you for your order.\n\n" + "\n".join(lines)
                     + f"\n\nTotal: {order['total']} {order['currency']}\n")
    return mail


class Email(Service):
    name = "email"
    queue = "email"
    prefetch = 10

    def __init__(self, url: str, events: Events, log: SentLog, latency: float) -> None:
        super().__init__(url, events)
        self.log = log
        self.latency = latency

    async def handle(self, message: AbstractIncomingMessage) -> None:
        order = await parse_order(message, self.events, self.name)
        if order is None:
            return
        order_id = order["order_id"]
        if order_id in self.log.sent:
            self.log.duplicates += 1
            await message.ack()
            return
        mail = confirmation(order)
        await asyncio.sleep(self.latency)  # the SMTP relay's round trip
        self.log.sent[order_id] = str(mail["Message-ID"])
        await message.ack()
