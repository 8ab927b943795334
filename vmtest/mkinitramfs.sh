#!/usr/bin/env bash
# Builds the VM test's kernel and initramfs: Debian's kernel (downloaded once into
# CACHE), the vivid and snd-aloop modules with their dependencies, busybox, alsa-utils'
# aplay/arecord with their libraries and configuration, and static camagent, camhub and
# probe binaries. Prints the kernel and initramfs paths.
#
# usage: vmtest/mkinitramfs.sh CACHE_DIR OUT_DIR
set -euo pipefail
cache=$(realpath -m "$1")
out=$(realpath -m "$2")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
mkdir -p "$cache" "$out"

# 1. The kernel: linux-image-amd64 names the current image package; download it once.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "mkinitramfs: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
deb=$(ls "$cache"/"${kpkg}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  (cd "$cache" && apt-get download "$kpkg" >/dev/null 2>&1)
  deb=$(ls "$cache"/"${kpkg}"_*.deb | head -n1)
fi
kroot="$cache/${kpkg}.root"
if [ ! -d "$kroot/lib/modules" ]; then
  rm -rf "$kroot.tmp" && mkdir -p "$kroot.tmp"
  dpkg -x "$deb" "$kroot.tmp"
  mv "$kroot.tmp" "$kroot"
fi
kver=$(ls "$kroot/lib/modules" | head -n1)
[ -f "$kroot/lib/modules/$kver/modules.dep" ] || depmod -b "$kroot" "$kver"

# 2. The initramfs tree.
root="$out/root"
rm -rf "$root"
mkdir -p "$root"/{bin,usr/bin,lib,lib64,etc,proc,sys,dev,tmp,usr/share}
cp /bin/busybox "$root/bin/busybox"
if ldd "$root/bin/busybox" >/dev/null 2>&1; then echo "mkinitramfs: /bin/busybox must be busybox-static (apt-get install busybox-static)" >&2; exit 1; fi

: > "$root/modules.list"
for m in vivid snd-aloop; do
  modprobe -d "$kroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}' | while read -r ko; do
    rel=${ko#"$kroot"/}
    mkdir -p "$root/$(dirname "$rel")"
    cp "$ko" "$root/$rel"
    grep -qx "$rel" "$root/modules.list" || echo "$rel" >> "$root/modules.list"
  done
done
cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver"

# aplay/arecord with their shared libraries, the loader and alsa-lib's configuration.
for exe in /usr/bin/aplay /usr/bin/arecord; do
  [ -x "$exe" ] || { echo "mkinitramfs: $exe missing (apt-get install alsa-utils)" >&2; exit 1; }
  cp "$exe" "$root/usr/bin/"
  for lib in $(ldd "$exe" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
mkdir -p "$root/usr/share/alsa"
cp /usr/share/alsa/alsa.conf "$root/usr/share/alsa/"
for d in cards pcm; do
  [ -d "/usr/share/alsa/$d" ] && cp -r "/usr/share/alsa/$d" "$root/usr/share/alsa/"
done

# Static binaries of this tree.
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$root/usr/bin/camagent" ./cmd/camagent \
  && CGO_ENABLED=0 go build -trimpath -o "$root/usr/bin/camhub" ./cmd/camhub \
  && CGO_ENABLED=0 go build -trimpath -o "$root/usr/bin/probe" ./vmtest/probe)
cp "$here/init.sh" "$root/init"
chmod +x "$root/init"
cp "$here/camagent.yaml" "$root/etc/camagent.yaml"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 > "$out/initramfs.gz")
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "$out/vmlinuz"
echo "$out/initramfs.gz"
