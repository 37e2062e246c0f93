#!/usr/bin/env bash
# The main job, on this machine, in a minute: a local mosquitto, the bundled
# inverter simulator (broadcasting every 10 s instead of 120 s) and the bridge
# between them, with the live MQTT traffic printed here. Ctrl-C stops it all.
#
#   bash scripts/demo.sh                  # runs until Ctrl-C
#   DEMO_SECONDS=30 bash scripts/demo.sh  # stops by itself after 30 s
#
# Nothing is left running afterwards; logs and the generated config.ini are
# kept in a temporary directory whose name is printed at the start.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup-env.sh
bin="$root/.venv/bin"

work="$(mktemp -d "${TMPDIR:-/tmp}/octolux-demo.XXXXXX")"
pids=()

stop_all() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping (logs kept in $work)"
    # Reverse order: the bridge first, so it can say "offline" to the broker.
    for ((index = ${#pids[@]} - 1; index >= 0; index--)); do
        kill -TERM "${pids[index]}" 2>/dev/null || true
        # twistd shuts down cleanly on SIGTERM; give it a moment, then insist.
        for _ in $(seq 50); do
            kill -0 "${pids[index]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pids[index]}" 2>/dev/null || true
        wait "${pids[index]}" 2>/dev/null || true
    done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() {
    "$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {  # port, what, log
    for _ in $(seq 100); do
        if "$bin/python" -c "import socket, sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "demo: $2 did not start; its log ($3):" >&2
    tail -n 20 "$3" >&2
    exit 1
}

broker_port="$(free_port)"
dongle_port="$(free_port)"
# The OS may hand out the port it just gave (and took back): two ports, not one.
while [ "$dongle_port" = "$broker_port" ]; do dongle_port="$(free_port)"; done
page_port="$(free_port)"
while [ "$page_port" = "$broker_port" ] || [ "$page_port" = "$dongle_port" ]; do
    page_port="$(free_port)"
done
datalog=DEMODL0001
serial=DEMOINV001

# 1. A private broker on a free port, so a system mosquitto is left alone.
cat >"$work/mosquitto.conf" <<EOF
listener $broker_port 127.0.0.1
allow_anonymous true
persistence false
EOF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
wait_for_port "$broker_port" mosquitto "$work/mosquitto.log"

# 2. The simulated datalogger + inverter, at 60x speed so the numbers move.
"$bin/twistd" --nodaemon --pidfile= --logfile="$work/simulator.log" lxp-simulator \
    --port "$dongle_port" --datalog "$datalog" --serial "$serial" \
    --interval 10 --burst-gap 0.5 --speed 60 &
pids+=($!)
wait_for_port "$dongle_port" "the simulator" "$work/simulator.log"

# 3. The bridge, configured as a user would, with an ordinary config.ini.
cat >"$work/config.ini" <<EOF
[lxp]
host = 127.0.0.1
port = $dongle_port
datalog = $datalog
serial = $serial

[mqtt]
uri = mqtt://127.0.0.1:$broker_port

[server]
listen_host = 127.0.0.1
port = $page_port
control = yes

[history]
path = $work/history.sqlite

[homeassistant]
enabled = yes
EOF
"$bin/twistd" --nodaemon --pidfile= --logfile="$work/bridge.log" octolux \
    --config "$work/config.ini" &
pids+=($!)

cat <<EOF
demo: mosquitto on 127.0.0.1:$broker_port, simulator on 127.0.0.1:$dongle_port,
      bridge logging to $work/bridge.log
demo: the inverter broadcasts every 10 s; live MQTT traffic follows. Try, in another shell:
      mosquitto_pub -p $broker_port -t octolux/cmd/discharge_pct -m 50
      mosquitto_pub -p $broker_port -t octolux/cmd/ac_charge -m on
      mosquitto_sub -p $broker_port -t 'homeassistant/#' -v    # Home Assistant discovery
demo: the bridge's page (live values, settings, charts from the history, controls):
      http://127.0.0.1:$page_port/
demo: in 15 s this script sends cmd/ac_charge on by itself, to show a command's round trip.
EOF

# 4. A command of our own after a while: result/ac_charge OK and hold/21 follow.
(sleep 15 && "$bin/python" - "$broker_port" <<'EOF'
import sys
import paho.mqtt.publish as publish
publish.single("octolux/cmd/ac_charge", "on", hostname="127.0.0.1", port=int(sys.argv[1]))
EOF
) >/dev/null 2>&1 &
pids+=($!)

# 5. Show the traffic. mosquitto_sub comes with Debian's mosquitto-clients.
if [ -n "${DEMO_SECONDS:-}" ]; then
    timeout "$DEMO_SECONDS" mosquitto_sub -p "$broker_port" -t 'octolux/#' -v || true
else
    mosquitto_sub -p "$broker_port" -t 'octolux/#' -v
fi
