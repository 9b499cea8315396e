"""ServerSettings: the plain values the server layer needs, copied out of the config.

The composition root builds one of these; connections read it and never the config file
or a global (design: config values are passed down as plain values).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSettings:
    frame_max: int = 131072
    channel_max: int = 2047
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    max_connections: int = 0
    handshake_timeout: float = 10.0
    max_handshakes: int = 1000  # connections not yet open, at most; 0 = unlimited
    ssl_cert_login_from: str = "common_name"  # EXTERNAL: or "distinguished_name"
    failed_login_threshold: int = 5  # failures from one address before the delay
    failed_login_window: float = 60.0
    failed_login_delay: float = 2.0
    close_timeout: float = 1.0
    write_high_water: int = 1024 * 1024
    write_low_water: int = 256 * 1024
    default_vhost: str = "/"  # used when connection.open names no vhost
    memory_high_watermark: int = 0  # bytes of ready message bodies; 0 = no alarm
    alarm_check_interval: float = 0.1
    tick_interval: float = 0.02  # resolution of TTL expiry, retry delays and x-expires
    dead_letter_log_interval: float = 1.0  # seconds between message_dead_lettered lines
