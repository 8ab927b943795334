#!/bin/busybox sh
# /init of the VM test: load vivid and snd-aloop, list the devices, run camhub, camagent
# and the probe on loopback, print what happened on the console, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
ip link set lo up
echo "VMTEST BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /modules.list); do
  insmod "/$m" || echo "VMTEST insmod $m failed"
done
echo "VMTEST MODULES uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "VMTEST DEVICES BEGIN"
camagent devices 2>&1
echo "VMTEST DEVICES END"
echo "VMTEST LIST BEGIN"
probe devices 2>&1
echo "VMTEST LIST END"
camhub --demo --state-dir /tmp/hub --log-level warn > /tmp/hub.log 2>&1 &
camagent --config /etc/camagent.yaml --log-level debug > /tmp/agent.log 2>&1 &
probe --id vm --timeout 300s --unplug --privacy > /tmp/probe.out 2> /tmp/probe.err
echo "VMTEST PROBE DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
cat /tmp/probe.out
echo "VMTEST LOG probe"; tail -n 20 /tmp/probe.err
echo "VMTEST LOG agent"; grep 'msg="camera failed; reopening"' /tmp/agent.log | head -n 3
grep -v "level=DEBUG msg=\"write video" /tmp/agent.log | tail -n 60
echo "VMTEST LOG hub"; tail -n 20 /tmp/hub.log
echo "VMTEST END"
poweroff -f
