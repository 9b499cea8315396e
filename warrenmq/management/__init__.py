"""Management: the HTTP listener beside AMQP — RabbitMQ-compatible API, Prometheus
``/metrics`` and the dashboard (aiohttp, on the broker's own event loop).

Owns nothing the broker needs to run: it reads the broker's state on request and acts
on it only through the domain (``VirtualHost`` methods) and the server's public methods.
Must not add work to the AMQP hot path (counters on queues are plain ints bumped where
messages pass anyway), and must not import ``warrenmq.server`` (a sibling of the same
layer): what it reads of the server is described by the protocols in ``edge.py``.
"""
