"""Unit tests for warrenmq.config: schema defaults, the shipped file, the strict loader."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from warrenmq.config import (
    BrokerConfig,
    ConfigError,
    ConfigProblem,
    LimitsConfig,
    ListenerConfig,
    LoggingConfig,
    StorageConfig,
    UserConfig,
    VhostConfig,
    load_config,
    load_config_text,
    parse_duration,
    parse_size,
    validate,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "broker.yaml"


def load(text: str) -> BrokerConfig:
    return load_config_text(textwrap.dedent(text), "c.yaml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return str(info.value).splitlines()


def error(text: str) -> str:
    found = errors(text)
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------------------------- defaults


def test_defaults():
    cfg = BrokerConfig()
    assert cfg.listeners == (ListenerConfig("127.0.0.1", 5672),)
    assert cfg.limits == LimitsConfig(131072, 2047, 128 * 2**20, 0, 60)
    assert cfg.storage == StorageConfig("./warrenmq-data", "group")
    assert cfg.logging == LoggingConfig("auto", "info")
    assert cfg.users == (
        UserConfig("guest", password="guest", tags=("administrator",), loopback_only=True),
    )
    assert cfg.vhosts == (VhostConfig("/"),)
    assert cfg.default_vhost == "/"
    assert cfg.memory_high_watermark_bytes == 0
    assert (cfg.write_buffer_high_water, cfg.write_buffer_low_water) == (1048576, 262144)
    assert validate(cfg) == []


def test_config_is_frozen_and_hides_passwords():
    cfg = BrokerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.default_vhost = "x"  # type: ignore[misc]
    assert "guest" in repr(cfg.users[0])
    assert "password" not in repr(cfg.users[0])
    assert hash(cfg) == hash(BrokerConfig())


def test_shipped_file_is_exactly_the_defaults():
    assert load_config(SHIPPED) == BrokerConfig()
    assert load_config(str(SHIPPED)) == BrokerConfig()


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # another\n", "~\n", "---\n"])
def test_empty_file_gives_defaults(text):
    assert load_config_text(text, "c.yaml") == BrokerConfig()


def test_empty_section_means_its_defaults():
    assert load("limits:\nstorage:  # all commented out\n") == BrokerConfig()


def test_partial_override_keeps_other_defaults():
    cfg = load(
        """
        listeners:
          - port: 0
          - host: "::"
            port: 5673
        limits:
          frame_max: 64KiB
          heartbeat: 1m
          max_message_size: 1_000_000
        storage: {fsync: always}
        users:
          - name: admin
            password_hash: Wahoc+CDsxYKRkqHRTVUtojppRCVVHcsdPQ/Q758k/HOsmHF
            tags: [administrator, monitoring]
        vhosts: [{name: /}, {name: prod}]
        default_vhost: prod
        memory_high_watermark_bytes: 2GiB
        """
    )
    assert cfg.listeners == (ListenerConfig("127.0.0.1", 0), ListenerConfig("::", 5673))
    assert cfg.limits == LimitsConfig(frame_max=65536, heartbeat=60, max_message_size=1000000)
    assert cfg.storage == StorageConfig(fsync="always")
    assert cfg.users == (
        UserConfig("admin", password_hash="Wahoc+CDsxYKRkqHRTVUtojppRCVVHcsdPQ/Q758k/HOsmHF",
                   tags=("administrator", "monitoring")),
    )
    assert cfg.default_vhost == "prod"
    assert cfg.memory_high_watermark_bytes == 2 * 2**30
    assert cfg.logging == LoggingConfig()


def test_load_config_accepts_a_utf8_bom(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_bytes(b"\xef\xbb\xbfdefault_vhost: /\n")
    assert load_config(path) == BrokerConfig()


# -------------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0B", 0),
        ("1B", 1),
        ("1kB", 1000),
        ("1KB", 1000),
        ("1MB", 1_000_000),
        ("2GB", 2 * 10**9),
        ("1TB", 10**12),
        ("64KiB", 65536),
        ("128MiB", 134217728),
        ("1GiB", 2**30),
        ("1TiB", 2**40),
        (" 4 KiB ", 4096),
        ("1_024B", 1024),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "10", "MiB", "1.5MiB", "-1KiB", "1 mib", "1Mb", "1__0B"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="unit"):
        parse_size(text)


@pytest.mark.parametrize(("text", "value"), [("0s", 0), ("60s", 60), ("1m", 60), ("2h", 7200),
                                             ("1d", 86400), ("2000ms", 2)])
def test_parse_duration(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["60", "1.5s", "s", "1 M", "1w"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="unit"):
        parse_duration(text)


def test_parse_duration_whole_seconds_only():
    with pytest.raises(ValueError, match="whole number of seconds"):
        parse_duration("1500ms")


# ------------------------------------------------------------------------ type problems

SIZE_HINT = 'or a size such as "128MiB"'
NOT_A_SIZE = '(not a whole number with a unit, such as "128MiB")'
QUOTE_IT = "quote it if you meant a string"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "limits:\n  frame_max: big\n",
            "c.yaml:2:14: limits.frame_max: expected an integer between 4096 and 2147483647 "
            f'{SIZE_HINT}, got "big" {NOT_A_SIZE}',
        ),
        (
            "write_buffer_high_water: 1XB\n",
            f'c.yaml:1:26: write_buffer_high_water: expected an integer >= 1 {SIZE_HINT}, got "1XB"'
            ' (unknown unit "XB" (known: B, kB, KB, MB, GB, TB, KiB, MiB, GiB, TiB))',
        ),
        (  # a quoted number is a string
            'limits:\n  channel_max: "10"\n',
            "c.yaml:2:16: limits.channel_max: expected an integer between 1 and 65535, "
            'got "10"; remove the quotes',
        ),
        (  # bool is not an int
            "listeners:\n  - port: true\n",
            "c.yaml:2:11: listeners[0].port: expected an integer between 0 and 65535, "
            "got true (a boolean)",
        ),
        (  # YAML 1.1 would read this as octal
            "limits:\n  max_connections: 0644\n",
            "c.yaml:2:20: limits.max_connections: expected an integer >= 0, "
            "got 0644 (an integer); write integers in plain decimal",
        ),
        (
            "limits:\n  heartbeat: 1.5\n",
            "c.yaml:2:14: limits.heartbeat: expected an integer between 0 and 65535 or a "
            'duration such as "60s", got 1.5 (a float)',
        ),
        (
            "storage:\n  data_dir: 5\n",
            f"c.yaml:2:13: storage.data_dir: expected a non-empty string, got 5 (an integer); "
            f"{QUOTE_IT}",
        ),
        (
            "users:\n  - name: u\n    password: p\n    loopback_only: 'yes'\n",
            'c.yaml:4:20: users[0].loopback_only: expected a boolean (true or false), got "yes"',
        ),
        ("limits: 5\n", "c.yaml:1:9: limits: expected a mapping, got 5 (an integer)"),
        (
            "listeners:\n  host: x\n",
            "c.yaml:2:3: listeners: expected a non-empty list, got a mapping",
        ),
        ("- 1\n", "c.yaml:1:1: expected a mapping, got a list"),
        (
            "default_vhost:\n",
            "c.yaml:1:15: default_vhost: expected a non-empty string, got an empty value; "
            + QUOTE_IT,
        ),
    ],
)
def test_type_problems(text, expected):
    assert error(text) == expected


# ----------------------------------------------------------------------- range problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("limits:\n  frame_max: 4095\n", "limits.frame_max: expected an integer between 4096"),
        ("limits:\n  frame_max: 2GiB\n", 'got "2GiB" (= 2147483648)'),
        ("limits:\n  channel_max: 0\n", "limits.channel_max: expected an integer between 1"),
        ("limits:\n  channel_max: 65536\n", "got 65536"),
        ("limits:\n  heartbeat: -1\n", "limits.heartbeat: expected an integer between 0"),
        ("limits:\n  heartbeat: 19h\n", 'got "19h" (= 68400)'),
        ("limits:\n  max_message_size: 0\n", "between 1 and 536870912"),
        ("limits:\n  max_message_size: 513MiB\n", 'got "513MiB" (= 537919488)'),
        ("limits:\n  max_connections: -1\n", "limits.max_connections: expected an integer >= 0"),
        ("listeners:\n  - port: 65536\n", "listeners[0].port: expected an integer between 0"),
        ("listeners:\n  - host: ''\n", 'listeners[0].host: expected a non-empty string, got ""'),
        ("memory_high_watermark_bytes: -5\n", "expected an integer >= 0"),
        ("storage:\n  fsync: sometimes\n", 'one of "group", "always", "never", got "sometimes"'),
        ("logging:\n  format: xml\n", 'logging.format: expected one of "console", "json"'),
        ("logging:\n  level: trace\n", '"debug", "info", "warning", "error", got "trace"'),
        ("listeners: []\n", "listeners: expected a non-empty list, got an empty list"),
        ("vhosts: []\n", "vhosts: expected a non-empty list, got an empty list"),
    ],
)
def test_range_and_choice_problems(text, message):
    assert message in error(text)


def test_boundary_values_are_accepted():
    cfg = load(
        """
        listeners: [{port: 0}, {port: 65535}]
        limits:
          frame_max: 4096
          channel_max: 65535
          heartbeat: 0
          max_message_size: 512MiB
        """
    )
    assert cfg.limits.frame_max == 4096
    assert cfg.limits.max_message_size == 536870912


# ------------------------------------------------------------------------- key problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "limits:\n  framemax: 4096\n",
            "c.yaml:2:3: limits.framemax: unknown key 'framemax'; did you mean 'frame_max'?",
        ),
        (
            "storage:\n  zzz: 1\n",
            "c.yaml:2:3: storage.zzz: unknown key 'zzz'"
            " (known keys: data_dir, fsync, queue_memory_limit)",
        ),
        (
            "listener:\n  - port: 1\n",
            "c.yaml:1:1: listener: unknown key 'listener'; did you mean 'listeners'?",
        ),
        ("users:\n  - password: x\n", "c.yaml:2:5: users[0]: missing required key 'name'"),
        # cross-field rules
        (
            "users:\n  - name: bob\n",
            'c.yaml:2:11: users[0].name: user "bob" needs one of password or password_hash',
        ),
        (
            "users:\n  - {name: bob, password: a, password_hash: b}\n",
            "c.yaml:2:45: users[0].password_hash: give either password or password_hash, not both",
        ),
        (
            "default_vhost: prod\n",
            'c.yaml:1:16: default_vhost: no vhost named "prod" (vhosts: "/")',
        ),
        (
            "write_buffer_low_water: 1MiB\n",
            "c.yaml:1:25: write_buffer_low_water: must be below write_buffer_high_water (1048576)",
        ),
    ],
)
def test_key_and_rule_problems(text, expected):
    assert error(text) == expected


def test_duplicate_keys():
    assert errors("limits:\n  heartbeat: 1\n  heartbeat: 2\nlimits: {}\n") == [
        "c.yaml:3:3: limits.heartbeat: duplicate key (first given on line 2)",
        "c.yaml:4:1: limits: duplicate key (first given on line 1)",
    ]


def test_non_string_keys():
    assert errors("limits:\n  1: 2\n  <<: {}\n") == [
        "c.yaml:2:3: limits: keys must be strings, got 1 (an integer)",
        "c.yaml:3:3: limits: keys must be strings, got << (a merge key)",
    ]


def test_duplicate_names_and_listeners():
    assert errors(
        """
        listeners: [{port: 1}, {port: 0}, {port: 0}, {port: 1}]
        users:
          - {name: a, password: x}
          - {name: a, password: y}
        vhosts: [{name: /}, {name: /}]
        """
    ) == [
        "c.yaml:2:46: listeners[3]: duplicate listener (host, port) ('127.0.0.1', 1)",
        "c.yaml:5:12: users[1].name: duplicate user name 'a'",
        "c.yaml:6:28: vhosts[1].name: duplicate vhost name '/'",
    ]


def test_empty_tag_and_long_name():
    long_name = "v" * 256
    text = (
        "users:\n"
        "  - {name: u, password: p, tags: ['']}\n"
        f"vhosts: [{{name: {long_name}}}]\n"
        f"default_vhost: {long_name}\n"
    )
    assert errors(text) == [
        "c.yaml:2:35: users[0].tags[0]: tags must be non-empty strings",
        "c.yaml:3:17: vhosts[0].name: must be at most 255 bytes of UTF-8 (an AMQP short string)",
    ]


def test_rule_is_skipped_when_its_field_is_invalid():
    # high_water is invalid, so the default standing in for it must not be judged
    # against low_water; only the real problem is reported.
    assert errors("write_buffer_high_water: lots\nwrite_buffer_low_water: 2MiB\n") == [
        "c.yaml:1:26: write_buffer_high_water: expected an integer >= 1 or a size such as "
        '"128MiB", got "lots" (not a whole number with a unit, such as "128MiB")'
    ]


# ------------------------------------------------------------ collection and reporting


def test_every_problem_is_reported_in_file_order():
    found = errors(
        """
        limits:
          frame_max: big
          channel_mx: 5
        storage:
          fsync: maybe
        logging: {level: loud}
        default_vhost: nowhere
        """
    )
    assert [line.split(": ")[0] for line in found] == [
        "c.yaml:3:14",
        "c.yaml:4:3",
        "c.yaml:6:10",
        "c.yaml:7:18",
        "c.yaml:8:16",
    ]
    assert found[1] == (
        "c.yaml:4:3: limits.channel_mx: unknown key 'channel_mx'; did you mean 'channel_max'?"
    )


def test_config_error_carries_structured_problems():
    with pytest.raises(ConfigError) as info:
        load_config_text("limits:\n  heartbeat: soon\n", "x/broker.yaml")
    (problem,) = info.value.problems
    assert problem == ConfigProblem(
        "x/broker.yaml",
        2,
        14,
        "limits.heartbeat",
        'expected an integer between 0 and 65535 or a duration such as "60s", got "soon" '
        '(not a whole number with a unit, such as "60s")',
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("limits:\n  frame_max: [1\n", "c.yaml:3:1: YAML syntax error: while parsing a flow"),
        ("a: b: c\n", "c.yaml:1:5: YAML syntax error: mapping values are not allowed here"),
        ("x:\n\t- 1\n", "c.yaml:2:1: YAML syntax error: while scanning for the next token"),
        ("--- {}\n--- {}\n", "c.yaml:2:1: YAML syntax error: expected a single document"),
        ('logging: "\x07"\n', "c.yaml:1:11: YAML error: unacceptable character #x0007"),
    ],
)
def test_yaml_syntax_errors(text, expected):
    assert error(text).startswith(expected)


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_invalid_utf8(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"limits:\n  frame_max: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:2:14: not valid UTF-8"


def test_validate_programmatic_config():
    cfg = BrokerConfig(
        limits=LimitsConfig(frame_max=10),
        users=(UserConfig("x"),),
        default_vhost="nope",
    )
    assert validate(cfg) == [
        (
            "limits.frame_max",
            'expected an integer between 4096 and 2147483647 or a size such as "128MiB", got 10',
        ),
        ("users[0].name", 'user "x" needs one of password or password_hash'),
        ("default_vhost", 'no vhost named "nope" (vhosts: "/")'),
    ]
