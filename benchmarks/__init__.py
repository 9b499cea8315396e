"""Load generator and comparison harness for AMQP 0-9-1 brokers (WarrenMQ vs RabbitMQ).

Must not import `warrenmq`: brokers are measured only through their AMQP URL.
"""
