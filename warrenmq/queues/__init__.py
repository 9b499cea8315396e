"""Queues: holding messages and pushing them to consumers with credit. Never imports exchange."""
