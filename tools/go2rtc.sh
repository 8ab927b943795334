#!/usr/bin/env bash
# Builds go2rtc (github.com/AlexxIT/go2rtc), the WebRTC engine Home Assistant runs for its cameras,
# from the Go module proxy, once, into .cache/go2rtc/, and prints the binary's path. Used as a real
# outside WHEP client by e2e's TestGo2rtc and as a side-by-side peer by make bench.
#
# The module's zip is checked against the checksum below (and by go itself against sum.golang.org);
# go2rtc's own go.sum pins its dependencies. No internet beyond the module proxy is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v1.9.9
sum="h1:iDjHFGler9RWonwsHDyJ5oBrbiz1+vlb8ImnaS5shs8="
out="$PWD/.cache/go2rtc/go2rtc-$version"

if [ ! -x "$out" ]; then
  echo "go2rtc.sh: building go2rtc $version from the module proxy" >&2
  tmp=$(mktemp -d)
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
  json=$(cd "$tmp" && go mod download -json "github.com/AlexxIT/go2rtc@$version")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  got=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$json")
  if [ "$got" != "$sum" ]; then
    echo "go2rtc.sh: github.com/AlexxIT/go2rtc@$version has checksum '$got', want '$sum'" >&2
    exit 1
  fi
  cp -r "$dir" "$tmp/src"
  chmod -R u+w "$tmp/src"
  # pkg/v4l2/device ships the C program that generated its ioctl constants beside its Go files;
  # go build refuses a package that has C files but no cgo, so the program is left out.
  rm -f "$tmp/src/pkg/v4l2/device/videodev2_arch.c"
  mkdir -p "$(dirname "$out")"
  (cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" .)
  mv "$out.tmp" "$out"
fi
echo "$out"
