"""Typed AMQP errors.

The domain (exchanges, queues, virtual hosts) raises these with a reply code and text;
only the server's channel and connection turn them into channel.close or connection.close,
adding the class and method ids of the method that failed (design habit 7).
"""

from __future__ import annotations

from enum import IntEnum


class ReplyCode(IntEnum):
    """AMQP 0-9-1 reply codes (spec §1.9 "Constants")."""

    REPLY_SUCCESS = 200
    CONTENT_TOO_LARGE = 311
    NO_ROUTE = 312
    NO_CONSUMERS = 313
    CONNECTION_FORCED = 320
    INVALID_PATH = 402
    ACCESS_REFUSED = 403
    NOT_FOUND = 404
    RESOURCE_LOCKED = 405
    PRECONDITION_FAILED = 406
    FRAME_ERROR = 501
    SYNTAX_ERROR = 502
    COMMAND_INVALID = 503
    CHANNEL_ERROR = 504
    UNEXPECTED_FRAME = 505
    RESOURCE_ERROR = 506
    NOT_ALLOWED = 530
    NOT_IMPLEMENTED = 540
    INTERNAL_ERROR = 541


#: Codes that are channel-level; everything else closes the connection (spec §1.9).
CHANNEL_CODES = frozenset(
    {
        ReplyCode.CONTENT_TOO_LARGE,
        ReplyCode.NO_ROUTE,
        ReplyCode.NO_CONSUMERS,
        ReplyCode.ACCESS_REFUSED,
        ReplyCode.NOT_FOUND,
        ReplyCode.RESOURCE_LOCKED,
        ReplyCode.PRECONDITION_FAILED,
    }
)


class AMQPError(Exception):
    """An AMQP-level failure carrying a reply code.

    ``class_id``/``method_id`` are filled in by the server when it knows which method
    failed; the domain leaves them at 0.
    """

    reply_code: ReplyCode = ReplyCode.INTERNAL_ERROR

    def __init__(
        self,
        text: str,
        *,
        reply_code: ReplyCode | None = None,
        class_id: int = 0,
        method_id: int = 0,
    ) -> None:
        super().__init__(text)
        if reply_code is not None:
            self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def is_channel_error(self) -> bool:
        return self.reply_code in CHANNEL_CODES

    def reply_text(self) -> str:
        """The text sent in close, prefixed by the code name as RabbitMQ does."""
        text = f"{self.reply_code.name} - {self.text}"
        return text[:255]


class NotFound(AMQPError):
    reply_code = ReplyCode.NOT_FOUND


class AccessRefused(AMQPError):
    reply_code = ReplyCode.ACCESS_REFUSED


class ResourceLocked(AMQPError):
    reply_code = ReplyCode.RESOURCE_LOCKED


class PreconditionFailed(AMQPError):
    reply_code = ReplyCode.PRECONDITION_FAILED


class FrameError(AMQPError):
    reply_code = ReplyCode.FRAME_ERROR


class SyntaxError_(AMQPError):  # noqa: N801 - avoid shadowing the builtin
    reply_code = ReplyCode.SYNTAX_ERROR


class CommandInvalid(AMQPError):
    reply_code = ReplyCode.COMMAND_INVALID


class ChannelError(AMQPError):
    reply_code = ReplyCode.CHANNEL_ERROR


class UnexpectedFrame(AMQPError):
    reply_code = ReplyCode.UNEXPECTED_FRAME


class NotAllowed(AMQPError):
    reply_code = ReplyCode.NOT_ALLOWED


class NotImplemented_(AMQPError):  # noqa: N801 - avoid shadowing the builtin
    reply_code = ReplyCode.NOT_IMPLEMENTED


class InternalError(AMQPError):
    reply_code = ReplyCode.INTERNAL_ERROR
