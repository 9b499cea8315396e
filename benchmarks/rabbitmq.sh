#!/usr/bin/env bash
# Private RabbitMQ node for side-by-side benchmarks (never the system service).
#
#   benchmarks/rabbitmq.sh start PORT   # start node warrenbench<PORT>@localhost on 127.0.0.1:PORT
#   benchmarks/rabbitmq.sh start PORT MGMT_PORT  # the same with the management plugin on
#                                       # 127.0.0.1:MGMT_PORT (the rabbitmqadmin comparison)
#   benchmarks/rabbitmq.sh pid PORT     # print the beam.smp PID (for --broker-pid)
#   benchmarks/rabbitmq.sh stop PORT    # stop that node by name, and its epmd if we started it
#   benchmarks/rabbitmq.sh version PORT # print the running node's RabbitMQ and Erlang versions
#
# Everything (mnesia, logs, cookie, pid file) lives under /tmp/warrenbench-rabbitmq-PORT.
# Binds AMQP, Erlang distribution (and management) to 127.0.0.1 only; the management plugin
# is off unless MGMT_PORT is given.
# This script must not touch the Debian rabbitmq-server service or any other node.
set -euo pipefail

cmd="${1:-}"
port="${2:-5673}"
mgmt_port="${3:-}"
[[ "$port" =~ ^[0-9]+$ ]] || { echo "PORT must be a number" >&2; exit 2; }
[[ -z "$mgmt_port" || "$mgmt_port" =~ ^[0-9]+$ ]] || { echo "MGMT_PORT must be a number" >&2; exit 2; }

base="/tmp/warrenbench-rabbitmq-${port}"
node="warrenbench${port}@localhost"
bin=/usr/lib/rabbitmq/bin

export HOME="$base"                      # private .erlang.cookie, shared with rabbitmqctl
export RABBITMQ_NODENAME="$node"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="$port"
export RABBITMQ_DIST_PORT="$((port + 20000))"
export RABBITMQ_MNESIA_BASE="$base/mnesia"
export RABBITMQ_LOG_BASE="$base/log"
export RABBITMQ_PID_FILE="$base/rabbitmq.pid"
export RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
export RABBITMQ_CONFIG_FILE="$base/rabbitmq"      # -> $base/rabbitmq.conf
export RABBITMQ_CONF_ENV_FILE="$base/rabbitmq-env.conf"
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_ADDRESS=127.0.0.1

ctl() { timeout 60 "$bin/rabbitmqctl" -n "$node" "$@"; }

case "$cmd" in
start)
    mkdir -p "$base/mnesia" "$base/log"
    # rabbitmqctl starts an epmd on demand: start it first ourselves (loopback only, and
    # only if none runs) and remember its PID so that `stop` can end exactly that one.
    if ! /usr/bin/epmd -names >/dev/null 2>&1; then
        /usr/bin/epmd -daemon
        sleep 0.3
        pgrep -x -n epmd > "$base/epmd.pid" || true
    fi
    if ctl status >/dev/null 2>&1; then
        echo "node $node already running (pid $(cat "$RABBITMQ_PID_FILE" 2>/dev/null || echo '?'))"
        exit 0
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "127.0.0.1:$port is already in use by something else" >&2; exit 1
    fi
    echo "[]." > "$RABBITMQ_ENABLED_PLUGINS_FILE"
    : > "$RABBITMQ_CONF_ENV_FILE"
    cat > "$base/rabbitmq.conf" <<EOF
loopback_users.guest = true
EOF
    if [[ -n "$mgmt_port" ]]; then
        echo "[rabbitmq_management]." > "$RABBITMQ_ENABLED_PLUGINS_FILE"
        printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "$mgmt_port" \
            >> "$base/rabbitmq.conf"
    fi
    "$bin/rabbitmq-server" -detached
    ok=0
    for _ in $(seq 1 60); do
        if ctl await_startup --timeout 5 >/dev/null 2>&1; then ok=1; break; fi
        sleep 1
    done
    if [[ $ok != 1 ]]; then echo "node $node did not start; see $base/log" >&2; exit 1; fi
    echo "started $node on 127.0.0.1:$port pid $(cat "$RABBITMQ_PID_FILE")"
    ;;
pid)
    cat "$RABBITMQ_PID_FILE"
    ;;
version)
    ctl eval 'io:format("RabbitMQ ~s on Erlang/OTP ~s (erts ~s)~n",
        [element(2, application:get_key(rabbit, vsn)),
         erlang:system_info(otp_release), erlang:system_info(version)]).' | head -1
    ;;
stop)
    ctl stop || echo "node $node was not running" >&2
    if [[ -f "$base/epmd.pid" ]]; then
        epid="$(cat "$base/epmd.pid")"
        names="$(/usr/bin/epmd -names 2>/dev/null | grep -c '^name ' || true)"
        if [[ -n "$epid" && "$names" == 0 ]] && [[ "$(cat "/proc/$epid/comm" 2>/dev/null)" == epmd ]]; then
            kill "$epid" && echo "stopped epmd pid $epid (started by this script)"
        fi
        rm -f "$base/epmd.pid"
    fi
    ;;
*)
    echo "usage: $0 start|stop|pid|version PORT" >&2; exit 2
    ;;
esac
