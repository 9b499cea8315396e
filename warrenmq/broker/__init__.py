"""Virtual hosts, users and AMQP entity semantics, wired from exchanges and queues."""
