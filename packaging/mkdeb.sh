#!/usr/bin/env bash
# mkdeb.sh DEBARCH BINDIR VERSION OUTDIR: builds camagent_<version>_<debarch>.deb from the
# static binaries in BINDIR (camagent, camhub), the units and sample configurations in
# systemd/ and the maintainer scripts in packaging/debian/, with dpkg-deb --root-owner-group.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$1 bindir=$2 version=$3 out=$4

# A Debian version starts with a digit: a release tag v1.2.3(-4-gabc) → 1.2.3(+4+gabc);
# anything else (a bare commit, "dev") → 0~git<it>, which sorts before every release.
if [[ $version =~ ^v?[0-9]+\.[0-9]+ ]]; then
	debver=${version#v}
else
	debver="0~git${version}"
fi
debver=$(printf '%s' "$debver" | tr -c 'A-Za-z0-9.+~\n' '+')

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/camagent" \
	"$stage/usr/share/doc/camagent"
install -m 0755 "$bindir/camagent" "$bindir/camhub" "$stage/usr/bin/"
install -m 0644 systemd/camagent.service systemd/camhub.service "$stage/lib/systemd/system/"
install -m 0644 systemd/camagent.yaml systemd/camhub.yaml "$stage/etc/camagent/"
for d in README.md docs/install.md docs/configuration.md docs/mqtt.md; do
	[ -f "$d" ] && install -m 0644 "$d" "$stage/usr/share/doc/camagent/"
done
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
printf '/etc/camagent/camagent.yaml\n/etc/camagent/camhub.yaml\n' >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: camagent
Version: $debver
Architecture: $arch
Maintainer: camagent developers <camagent@users.noreply.github.com>
Installed-Size: $size
Depends: passwd
Recommends: systemd
Section: video
Priority: optional
Homepage: https://github.com/camagent/camagent
Description: two-way video endpoint for Raspberry Pi class devices
 camagent turns a Linux board with a camera, a microphone and a speaker into
 a WebRTC endpoint controlled over MQTT: told to, it joins a channel,
 publishes its camera and microphone and plays what the viewers say.
 .
 This package holds the device agent (camagent) and the self-hosted hub
 (camhub: web pages, browser SDK, tokens, forwarding, embedded MQTT broker),
 both static binaries, with hardened systemd units (enabled by nobody: edit
 /etc/camagent/*.yaml, then systemctl enable --now camagent).
CONTROL
mkdir -p "$out"
deb="$out/camagent_${debver}_${arch}.deb"
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
echo "$deb"
