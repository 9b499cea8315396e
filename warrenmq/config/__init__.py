"""Broker configuration: schema (frozen dataclasses with defaults) and the YAML loader.

Owns what a configuration is and how a file becomes one. Must not start, reconfigure
or import the running broker; callers pass the resulting ``BrokerConfig`` on.
"""

from warrenmq.config.loader import (
    ConfigError,
    ConfigProblem,
    load_config,
    load_config_text,
    parse_duration,
    parse_size,
)
from warrenmq.config.schema import (
    BrokerConfig,
    LimitsConfig,
    ListenerConfig,
    LoggingConfig,
    StorageConfig,
    UserConfig,
    VhostConfig,
    validate,
)

__all__ = [
    "BrokerConfig",
    "ConfigError",
    "ConfigProblem",
    "LimitsConfig",
    "ListenerConfig",
    "LoggingConfig",
    "StorageConfig",
    "UserConfig",
    "VhostConfig",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_size",
    "validate",
]
