"""WarrenMQ: an AMQP 0-9-1 message broker that RabbitMQ clients use unmodified.

``HOT_PATH`` says whether the mypyc-compiled hot path runs ("compiled") or the same
modules run interpreted ("pure"), and ``HOT_PATH_REASON`` why (see hotpath.py).
"""

from pathlib import Path

from warrenmq import hotpath as _hotpath

__version__ = "0.1.0"

HOT_PATH, HOT_PATH_REASON = _hotpath.select(Path(__file__).resolve().parent)
