#!/usr/bin/env bash
# Installs what the tests need, when it is missing: Debian packages (Chromium, Firefox ESR, Mosquitto,
# FFmpeg, alsa-utils, PulseAudio, qemu-user-static, and for make test-vm qemu-system-x86, cpio,
# busybox-static, kmod; systemd for systemd-analyze; iproute2, iptables for make test-nat;
# coturn, the external TURN server the hub's credentials are checked against; redis-server for several
# hubs; nats-server for a NATS cluster as the broker), the browser tests' npm packages and go2rtc
# (tools/go2rtc.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# command → Debian package that provides it
declare -A pkgs=(
  [/usr/bin/chromium]=chromium
  [/usr/bin/firefox-esr]=firefox-esr
  [/usr/sbin/mosquitto]=mosquitto
  [/usr/bin/mosquitto_pub]=mosquitto-clients
  [/usr/bin/ffmpeg]=ffmpeg
  [/usr/bin/aplay]=alsa-utils
  # a sound server with a null sink: Firefox's audio clock in the browser tests (e2e/pulse_test.go)
  [/usr/bin/pulseaudio]=pulseaudio
  [/usr/bin/qemu-arm-static]=qemu-user-static
  [/usr/bin/systemd-analyze]=systemd
  [/usr/bin/turnserver]=coturn
  # several hubs sharing a channel directory (hub/cluster, hub, e2e/cluster_test.go)
  [/usr/bin/redis-server]=redis-server
  # a 3-node NATS cluster as the broker (MQTT listener, JetStream): hub/natsconf, e2e/cluster_test.go, make scale
  [/usr/sbin/nats-server]=nats-server
  # make test-vm: the VM, its initramfs tools, and a static busybox for the VM's /init
  [/usr/bin/qemu-system-x86_64]=qemu-system-x86
  [/usr/bin/cpio]=cpio
  [/usr/bin/busybox]=busybox-static
  [/usr/sbin/depmod]=kmod
  # make test-nat: network namespaces, veth pairs and NAT
  [/usr/sbin/ip]=iproute2
  [/usr/sbin/iptables]=iptables
)
missing=()
for path in "${!pkgs[@]}"; do
  [ -x "$path" ] || missing+=("${pkgs[$path]}")
done
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "test-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core drives Chromium, puppeteer-core Firefox (WebDriver BiDi); neither downloads a browser.
if [ ! -d e2e/browser/node_modules/playwright-core ] || [ ! -d e2e/browser/node_modules/puppeteer-core ]; then
  echo "test-deps: npm ci (e2e/browser)"
  (cd e2e/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# go2rtc, built from the Go module proxy: the real outside WHEP client of e2e's TestGo2rtc.
bash tools/go2rtc.sh >/dev/null
