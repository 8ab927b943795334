#!/usr/bin/env bash
# make run: the hub and one demo agent on the embedded defaults, in the foreground.
# Ctrl-C stops both: the agent first (it leaves its call and says goodbye over MQTT), then the hub.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
id=${DEMO_ID:-demo-camera}
state=${DEMO_STATE:-$(mktemp -d -t camagent-demo.XXXXXX)}
hub=""
agent=""

stop() {
  trap - INT TERM EXIT
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  [ -n "$hub" ] && kill -TERM "$hub" 2>/dev/null && wait "$hub" 2>/dev/null
  exit 0
}
trap stop INT TERM EXIT

# setsid: the children do not get the terminal's Ctrl-C themselves; stop() orders the shutdown.
setsid "$bin/camhub" --demo --state-dir "$state/hub" &
hub=$!
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then break; fi
  if ! kill -0 "$hub" 2>/dev/null; then echo "camhub did not start (is port 8080 or 1883 in use?)" >&2; hub=""; exit 1; fi
  sleep 0.1
done
setsid "$bin/camagent" --id "$id" --state-dir "$state/agent" --ice-loopback-only &
agent=$!
sleep 0.5
cat <<MSG

  camagent demo is running.
    Open   http://127.0.0.1:8080/            (the device "$id": View, hold Talk)
           http://127.0.0.1:8080/quickstart  (a two-party call page)
    Join by hand over MQTT (apt-get install mosquitto-clients):
      mosquitto_pub -h 127.0.0.1 -t camagent/$id/cmd -m '{"id":"1","action":"join","channel":"porch"}'
      mosquitto_sub -h 127.0.0.1 -t 'camagent/$id/#' -v
    The device's speaker is written to $state/agent/speaker.wav
    Ctrl-C stops both.

MSG
wait -n "$hub" "$agent" || true
echo "a process ended; stopping the other" >&2
