#!/usr/bin/env bash
# Fetches Converse.js (the web client served at /chat) from npm and copies the
# files Hearth serves into appliance/webclient/dist/, which go:embed puts into
# the binary. Run by `make build` (target webclient) before `go build`.
#
# - The version is pinned in appliance/webclient/package.json and
#   package-lock.json; `npm ci` runs only when the lock changed since the last
#   install (or node_modules is missing).
# - dist/ is rebuilt only when the lock changed, this script changed, or
#   converse.min.js is missing; otherwise the script is a no-op.
# - Only what the page loads is copied: converse.min.js/.css, the locale
#   chunks (Converse picks the browser's language), emoji.json, sounds,
#   webfonts, images, and Converse's licence, plus gzipped copies of the
#   text files. No source maps; not libomemo
#   (OMEMO is off in the web client: see appliance/webclient/webclient.go).
#
# Needs node and npm (Debian: nodejs). FORCE=1 rebuilds dist/ unconditionally.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
wc="$root/appliance/webclient"
dist="$wc/dist"
src="$wc/node_modules/converse.js/dist"

log() { printf 'build-webclient: %s\n' "$*" >&2; }

lock_sum=$(cat "$wc/package-lock.json" "$0" | sha256sum | cut -d' ' -f1)
if [[ "${FORCE:-}" != 1 && -f "$dist/converse.min.js" && -f "$dist/.built" &&
	"$(cat "$dist/.built")" == "$lock_sum" ]]; then
	log "dist/ is up to date"
	exit 0
fi

if ! command -v npm >/dev/null; then
	log "npm is missing (Debian package nodejs; scripts/install-deps.sh installs it)"
	exit 1
fi

installed="$wc/node_modules/.hearth-lock-sha256"
want=$(sha256sum <"$wc/package-lock.json" | cut -d' ' -f1)
if [[ ! -f "$installed" || "$(cat "$installed")" != "$want" || ! -d "$src" ]]; then
	log "npm ci (appliance/webclient/package-lock.json)"
	(cd "$wc" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
	echo "$want" >"$installed"
fi
[[ -f "$src/converse.min.js" ]] || {
	log "$src/converse.min.js is missing after npm ci"
	exit 1
}

tmp=$(mktemp -d "$wc/.dist-new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$src/converse.min.js" "$src/converse.min.css" "$src/emoji.json" "$tmp/"
cp "$wc/node_modules/converse.js/LICENSE" "$tmp/LICENSE.converse.txt"
mkdir -p "$tmp/sounds" "$tmp/webfonts" "$tmp/chunkjs/locales/dayjs"
cp "$src"/sounds/*.mp3 "$src"/sounds/*.ogg "$tmp/sounds/"
cp "$src"/webfonts/* "$tmp/webfonts/"
cp -r "$src/images" "$tmp/images"
cp "$src"/chunkjs/locales/*.js "$tmp/chunkjs/locales/"
cp "$src"/chunkjs/locales/dayjs/*.js "$tmp/chunkjs/locales/dayjs/"
# The bundle names its source map; we do not ship maps, so drop the reference
# (browsers' developer tools would otherwise ask for a missing file).
sed -i -e '/^\/\/# sourceMappingURL=/d' "$tmp/converse.min.js" "$tmp"/chunkjs/locales/*.js "$tmp"/chunkjs/locales/dayjs/*.js
sed -i -e 's|/\*# sourceMappingURL=[^*]*\*/||' "$tmp/converse.min.css"
# Precompressed copies, served to browsers that accept gzip (all of them):
# converse.min.js is 1.3 MB, 0.4 MB gzipped. -n keeps the output reproducible.
find "$tmp" -type f \( -name '*.js' -o -name '*.css' -o -name '*.json' -o -name '*.svg' \) -exec gzip -9 -n -k {} +

# Replace dist/'s contents, keeping the committed placeholder.
find "$dist" -mindepth 1 -maxdepth 1 ! -name .keep -exec rm -rf {} +
cp -r "$tmp"/. "$dist/"
echo "$lock_sum" >"$dist/.built"
log "dist/ built ($(du -sh "$dist" | cut -f1)) from converse.js $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$wc/node_modules/converse.js/package.json" | head -1)"
