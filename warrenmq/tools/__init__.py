"""Operator tools that talk to a broker as ordinary AMQP 0-9-1 clients.

They use only client-visible behaviour (basic.get, publisher confirms, mandatory
publishes), so they work against RabbitMQ as well as WarrenMQ:

- ``deaths``: reading the ``x-death`` headers of dead-lettered messages;
- ``dlq``: ``warrenmq dlq inspect`` and ``warrenmq dlq replay`` (arguments in
  ``dlq_args``, counts/progress/rate limiting in ``progress``).
"""
