"""Unit tests for warrenmq.logging: structlog configured from LoggingConfig."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from warrenmq.config import LoggingConfig
from warrenmq.logging import configure_logging, reset_logging

ANSI = re.compile(r"\x1b\[")


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    reset_logging()


def configured(fmt: str, level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format=fmt, level=level), stream)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_event_level_timestamp_and_context():
    stream = configured("json")
    structlog.get_logger().info("connection_opened", peer="127.0.0.1:5555", channels=3)
    (line,) = json_lines(stream)
    assert line["event"] == "connection_opened"
    assert line["level"] == "info"
    assert line["peer"] == "127.0.0.1:5555"
    assert line["channels"] == 3
    stamp = datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None


def test_level_filters_below_threshold():
    stream = configured("json", level="warning")
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["event"] for line in json_lines(stream)] == ["w", "e"]


def test_debug_level_lets_everything_through():
    stream = configured("json", level="debug")
    structlog.get_logger().debug("frame_received", size=8)
    assert json_lines(stream)[0]["level"] == "debug"


def test_bound_context_is_kept():
    stream = configured("json")
    structlog.get_logger().bind(conn=7).info("channel_opened", channel=1)
    (line,) = json_lines(stream)
    assert (line["conn"], line["channel"]) == (7, 1)


def test_json_exception_is_rendered():
    stream = configured("json")
    try:
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger().exception("handler_failed")
    (line,) = json_lines(stream)
    assert line["level"] == "error"
    assert "ValueError: bad" in str(line["exception"])


def test_console_format_without_colors_on_a_non_tty():
    stream = configured("console")
    structlog.get_logger().info("connection_opened", peer="x")
    text = stream.getvalue()
    assert "connection_opened" in text
    assert "peer=x" in text
    assert "info" in text
    assert not ANSI.search(text)
    assert text.count("\n") == 1


def test_module_level_logger_follows_reconfiguration():
    log = structlog.get_logger()
    first = configured("json")
    log.info("one")
    second = configured("console")
    log.info("two")
    assert [line["event"] for line in json_lines(first)] == ["one"]
    assert "two" in second.getvalue()


def test_stdlib_records_use_the_same_renderer():
    stream = configured("json")
    logging.getLogger("asyncio").error("Task exception was never retrieved %s", "x")
    logging.getLogger("asyncio").debug("hidden")
    (line,) = json_lines(stream)
    assert line["event"] == "Task exception was never retrieved x"
    assert line["logger"] == "asyncio"
    assert line["level"] == "error"


def test_reconfiguring_does_not_stack_stdlib_handlers():
    configured("json")
    stream = configured("json")
    logging.getLogger("warrenmq.test").warning("once")
    assert len(json_lines(stream)) == 1


def test_default_stream_is_stderr_at_call_time(capsys):
    configure_logging(LoggingConfig(format="json"))
    structlog.get_logger().info("to_stderr")
    assert json.loads(capsys.readouterr().err)["event"] == "to_stderr"
