"""Broker configuration: schema (frozen dataclasses with defaults) and the YAML loader,
plus RabbitMQ's definitions JSON in both directions (``rabbit``, ``rabbit_import``).

Owns what a configuration is and how a file becomes one. Must not start, reconfigure
or import the running broker; callers pass the resulting ``BrokerConfig`` on.
"""

from warrenmq.config.loader import (
    ConfigError,
    ConfigProblem,
    load_config,
    load_config_text,
    parse_duration,
    parse_duration_ms,
    parse_size,
)
from warrenmq.config.schema import (
    AuthConfig,
    BindingConfig,
    BrokerConfig,
    ExchangeConfig,
    LimitsConfig,
    ListenerConfig,
    LoggingConfig,
    ManagementConfig,
    PermissionConfig,
    PolicyConfig,
    QueueConfig,
    SslConfig,
    StorageConfig,
    TopicPermissionConfig,
    UserConfig,
    VhostConfig,
    validate,
)
from warrenmq.config.spec import ConfigSource, FreeMap

__all__ = [
    "AuthConfig",
    "BindingConfig",
    "BrokerConfig",
    "ConfigError",
    "ConfigProblem",
    "ConfigSource",
    "ExchangeConfig",
    "FreeMap",
    "LimitsConfig",
    "ListenerConfig",
    "LoggingConfig",
    "ManagementConfig",
    "PermissionConfig",
    "PolicyConfig",
    "QueueConfig",
    "SslConfig",
    "StorageConfig",
    "TopicPermissionConfig",
    "UserConfig",
    "VhostConfig",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_duration_ms",
    "parse_size",
    "validate",
]
