#!/usr/bin/env bash
# make run: the hub and one demo agent on the embedded defaults, in the foreground.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
id=${DEMO_ID:-demo-camera}
state=${DEMO_STATE:-$(mktemp -d -t camagent-demo.XXXXXX)}

"$bin/camhub" --state-dir "$state/hub" &
hub=$!
trap 'kill -INT $hub $agent 2>/dev/null; wait $hub $agent 2>/dev/null; exit 0' INT TERM
trap 'kill -INT $hub $agent 2>/dev/null' EXIT
agent=""
# Wait for the hub (web and broker) before starting the agent.
for _ in $(seq 1 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then break; fi
  sleep 0.1
done
"$bin/camagent" --id "$id" --state-dir "$state/agent" --ice-loopback-only &
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
wait $hub $agent
