#!/usr/bin/env bash
# Builds MediaMTX (github.com/bluenviron/mediamtx) for make bench's side-by-side peers from a
# source tree given as the argument (a git checkout or an unpacked snapshot: the Go module proxy
# refuses the module, so `go install` cannot fetch it), into .cache/mediamtx/, and prints the
# binary's path: BENCH_MEDIAMTX=$(bash bench/build-mediamtx.sh ~/src/mediamtx) make bench
#
# Its dependencies come from the module proxy, checked against its go.sum. Two files that
# upstream's `go generate` downloads are made locally instead: internal/core/VERSION (from the
# tree's git describe, or "bench") and internal/servers/hls/hls.min.js (a placeholder: the bench
# uses only the WebRTC server, and the HLS page of this build has no player).
set -euo pipefail
src=${1:?usage: build-mediamtx.sh MEDIAMTX_SOURCE_DIR}
cd "$(dirname "$0")/.."
out="$PWD/.cache/mediamtx/mediamtx"
[ -f "$src/go.mod" ] && grep -q '^module github.com/bluenviron/mediamtx$' "$src/go.mod" ||
  { echo "build-mediamtx.sh: $src is not a MediaMTX source tree" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/." "$tmp/src"
version=$(git -C "$src" describe --tags --always 2>/dev/null || echo bench)
echo "$version" >"$tmp/src/internal/core/VERSION"
echo '// placeholder: the HLS player is not part of the bench build' >"$tmp/src/internal/servers/hls/hls.min.js"
mkdir -p "$(dirname "$out")"
(cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" .)
mv "$out.tmp" "$out"
echo "build-mediamtx.sh: MediaMTX $version" >&2
echo "$out"
