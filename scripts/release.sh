#!/usr/bin/env bash
# Builds Hearth for installs outside the SD-card image (`make release`):
# static linux/amd64 and linux/arm64 executables (cgo for SQLite, linked
# against Debian's static glibc; no C library needed on the target), the
# systemd unit, and SHA256SUMS, into image/out/release/ (RELEASE_OUT=dir).
#
# Needs a Debian amd64 build machine with gcc and gcc-aarch64-linux-gnu
# (scripts/install-image-deps.sh). HEARTH_VERSION=... sets the version string
# (default: git describe).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
OUT=${RELEASE_OUT:-$ROOT/image/out/release}
VERSION=${HEARTH_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)}
TAGS=netgo,osusergo,sqlite_omit_load_extension
LDFLAGS="-linkmode external -extldflags -static -s -w -X main.version=$VERSION"

log() { printf 'release: %s\n' "$*" >&2; }

if [[ "$("$GO" env GOHOSTARCH)" != amd64 ]]; then
	log "build on an amd64 machine (the amd64 binary uses the native gcc)"
	exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
for arch in amd64 arm64; do
	cc=gcc
	[[ "$arch" == arm64 ]] && cc=aarch64-linux-gnu-gcc
	bin="$OUT/hearth-linux-$arch"
	log "building $bin (CC=$cc)"
	(cd "$ROOT" && CGO_ENABLED=1 GOOS=linux GOARCH=$arch CC=$cc \
		"$GO" build -trimpath -tags "$TAGS" -ldflags "$LDFLAGS" -o "$bin" ./appliance/cmd/hearth)
	desc=$(file -b "$bin")
	if [[ "$desc" != *"statically linked"* ]]; then
		log "$bin is not statically linked: $desc"
		exit 1
	fi
done
cp "$ROOT/image/systemd/hearth.service" "$OUT/"
(cd "$OUT" && sha256sum hearth-linux-amd64 hearth-linux-arm64 hearth.service >SHA256SUMS)

echo "Hearth $VERSION release files in ${OUT#"$ROOT"/}/:"
for f in "$OUT"/*; do
	printf '  %-22s %9d bytes  %s\n' "$(basename "$f")" "$(stat -c %s "$f")" "$(file -b "$f" | sed 's/, BuildID.*//')"
done
