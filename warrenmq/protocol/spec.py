"""The AMQP 0-9-1 method table (spec §1.x, with RabbitMQ's extensions) as data.

Each entry is ``(class_id, method_id, name, fields)`` where a field is ``name:type`` and
the types are the spec's domains: octet, short, long, longlong, shortstr, longstr, bit,
table. ``methods.py`` builds a decoder and an encoder per method from this table, so there
is one place that says what a method carries.
"""

from __future__ import annotations

METHODS: tuple[tuple[int, int, str, str], ...] = (
    (10, 10, "ConnectionStart",
     "version_major:octet version_minor:octet server_properties:table mechanisms:longstr"
     " locales:longstr"),
    (10, 11, "ConnectionStartOk",
     "client_properties:table mechanism:shortstr response:longstr locale:shortstr"),
    (10, 20, "ConnectionSecure", "challenge:longstr"),
    (10, 21, "ConnectionSecureOk", "response:longstr"),
    (10, 30, "ConnectionTune", "channel_max:short frame_max:long heartbeat:short"),
    (10, 31, "ConnectionTuneOk", "channel_max:short frame_max:long heartbeat:short"),
    (10, 40, "ConnectionOpen", "virtual_host:shortstr capabilities:shortstr insist:bit"),
    (10, 41, "ConnectionOpenOk", "known_hosts:shortstr"),
    (10, 50, "ConnectionClose",
     "reply_code:short reply_text:shortstr class_id:short method_id:short"),
    (10, 51, "ConnectionCloseOk", ""),
    (10, 60, "ConnectionBlocked", "reason:shortstr"),
    (10, 61, "ConnectionUnblocked", ""),
    (10, 70, "ConnectionUpdateSecret", "new_secret:longstr reason:shortstr"),
    (10, 71, "ConnectionUpdateSecretOk", ""),
    (20, 10, "ChannelOpen", "out_of_band:shortstr"),
    (20, 11, "ChannelOpenOk", "channel_id:longstr"),
    (20, 20, "ChannelFlow", "active:bit"),
    (20, 21, "ChannelFlowOk", "active:bit"),
    (20, 40, "ChannelClose",
     "reply_code:short reply_text:shortstr class_id:short method_id:short"),
    (20, 41, "ChannelCloseOk", ""),
    (40, 10, "ExchangeDeclare",
     "ticket:short exchange:shortstr type:shortstr passive:bit durable:bit auto_delete:bit"
     " internal:bit nowait:bit arguments:table"),
    (40, 11, "ExchangeDeclareOk", ""),
    (40, 20, "ExchangeDelete", "ticket:short exchange:shortstr if_unused:bit nowait:bit"),
    (40, 21, "ExchangeDeleteOk", ""),
    (40, 30, "ExchangeBind",
     "ticket:short destination:shortstr source:shortstr routing_key:shortstr nowait:bit"
     " arguments:table"),
    (40, 31, "ExchangeBindOk", ""),
    (40, 40, "ExchangeUnbind",
     "ticket:short destination:shortstr source:shortstr routing_key:shortstr nowait:bit"
     " arguments:table"),
    (40, 51, "ExchangeUnbindOk", ""),
    (50, 10, "QueueDeclare",
     "ticket:short queue:shortstr passive:bit durable:bit exclusive:bit auto_delete:bit"
     " nowait:bit arguments:table"),
    (50, 11, "QueueDeclareOk", "queue:shortstr message_count:long consumer_count:long"),
    (50, 20, "QueueBind",
     "ticket:short queue:shortstr exchange:shortstr routing_key:shortstr nowait:bit"
     " arguments:table"),
    (50, 21, "QueueBindOk", ""),
    (50, 30, "QueuePurge", "ticket:short queue:shortstr nowait:bit"),
    (50, 31, "QueuePurgeOk", "message_count:long"),
    (50, 40, "QueueDelete",
     "ticket:short queue:shortstr if_unused:bit if_empty:bit nowait:bit"),
    (50, 41, "QueueDeleteOk", "message_count:long"),
    (50, 50, "QueueUnbind",
     "ticket:short queue:shortstr exchange:shortstr routing_key:shortstr arguments:table"),
    (50, 51, "QueueUnbindOk", ""),
    (60, 10, "BasicQos", "prefetch_size:long prefetch_count:short global_:bit"),
    (60, 11, "BasicQosOk", ""),
    (60, 20, "BasicConsume",
     "ticket:short queue:shortstr consumer_tag:shortstr no_local:bit no_ack:bit"
     " exclusive:bit nowait:bit arguments:table"),
    (60, 21, "BasicConsumeOk", "consumer_tag:shortstr"),
    (60, 30, "BasicCancel", "consumer_tag:shortstr nowait:bit"),
    (60, 31, "BasicCancelOk", "consumer_tag:shortstr"),
    (60, 40, "BasicPublish",
     "ticket:short exchange:shortstr routing_key:shortstr mandatory:bit immediate:bit"),
    (60, 50, "BasicReturn",
     "reply_code:short reply_text:shortstr exchange:shortstr routing_key:shortstr"),
    (60, 60, "BasicDeliver",
     "consumer_tag:shortstr delivery_tag:longlong redelivered:bit exchange:shortstr"
     " routing_key:shortstr"),
    (60, 70, "BasicGet", "ticket:short queue:shortstr no_ack:bit"),
    (60, 71, "BasicGetOk",
     "delivery_tag:longlong redelivered:bit exchange:shortstr routing_key:shortstr"
     " message_count:long"),
    (60, 72, "BasicGetEmpty", "cluster_id:shortstr"),
    (60, 80, "BasicAck", "delivery_tag:longlong multiple:bit"),
    (60, 90, "BasicReject", "delivery_tag:longlong requeue:bit"),
    (60, 100, "BasicRecoverAsync", "requeue:bit"),
    (60, 110, "BasicRecover", "requeue:bit"),
    (60, 111, "BasicRecoverOk", ""),
    (60, 120, "BasicNack", "delivery_tag:longlong multiple:bit requeue:bit"),
    (85, 10, "ConfirmSelect", "nowait:bit"),
    (85, 11, "ConfirmSelectOk", ""),
    (90, 10, "TxSelect", ""),
    (90, 11, "TxSelectOk", ""),
    (90, 20, "TxCommit", ""),
    (90, 21, "TxCommitOk", ""),
    (90, 30, "TxRollback", ""),
    (90, 31, "TxRollbackOk", ""),
)

#: Methods that carry content (a header frame and body frames follow the method frame).
CONTENT_METHODS = frozenset({(60, 40), (60, 50), (60, 60), (60, 71)})
