#!/usr/bin/env bash
# Installs what Hearth's build and tests need; idempotent and fast on reruns.
#
# - Debian packages (apt-get update + install only when one is missing):
#   gcc/libc6-dev (cgo for go-sqlite3), python3-slixmpp (for /usr/bin/python3,
#   not a pyenv python), go-sendxmpp, tmux, profanity, prosody (reference peer
#   only; see scripts/interop/prosody-check.sh), openssl, shellcheck (make lint),
#   coturn (turnutils_uclient against Hearth's TURN; STUN server of the home
#   simulation), chromium and nodejs (browser end-to-end tests), iproute2,
#   nftables and miniupnpd-nftables (the simulated home router,
#   scripts/netns/home.sh), knot and pebble (RFC 2136 DNS and ACME test servers,
#   started by the tests themselves).
# - staticcheck, pinned, via `go install` into $(go env GOBIN) or $(go env GOPATH)/bin.
# - Stops and disables the stock Prosody service that installing the package may
#   start on 0.0.0.0:5222; Prosody instances started with --config by our own
#   scripts are left alone.
#
# Runs apt as root, or through sudo when not root.
set -euo pipefail

PACKAGES=(gcc libc6-dev python3-slixmpp go-sendxmpp tmux profanity prosody openssl shellcheck coturn chromium nodejs
	iproute2 nftables miniupnpd-nftables knot pebble)
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2; knows Go 1.26

APT_LIB_NAME=install-deps
# shellcheck source=scripts/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"

# --- Debian packages --------------------------------------------------------
apt_install_missing "${PACKAGES[@]}"

# --- the stock Prosody service must not run ------------------------------------
# Our tests start Prosody themselves with --config on 127.0.0.1; a packaged one
# started by the postinst would hold 0.0.0.0:5222 (Hearth's default port).
stop_stock_service prosody

# --- staticcheck -----------------------------------------------------------------
GO=$(command -v go || echo /usr/local/go/bin/go)
gobin=$("$GO" env GOBIN)
[[ -n "$gobin" ]] || gobin="$("$GO" env GOPATH)/bin"
want="(${STATICCHECK_VERSION#v})"
have=""
[[ -x "$gobin/staticcheck" ]] && have=$("$gobin/staticcheck" -version 2>/dev/null || true)
if [[ "$have" == *"$want"* ]]; then
	log "staticcheck ${STATICCHECK_VERSION} already installed"
else
	log "installing staticcheck ${STATICCHECK_VERSION} into $gobin"
	(cd / && "$GO" install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}")
fi

# --- npm packages of the browser and WebSocket tests -----------------------------
# Each test harness under scripts/ pins its packages in a package-lock.json;
# node_modules is not committed. Reinstall only when the lock changed.
repo=$(cd "$(dirname "$0")/.." && pwd)
while IFS= read -r lock; do
	dir=$(dirname "$lock")
	if [[ ! -f "$dir/node_modules/.package-lock.json" || "$lock" -nt "$dir/node_modules/.package-lock.json" ]]; then
		log "npm ci in ${dir#"$repo"/}"
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
	fi
done < <(find "$repo/scripts" -name package-lock.json -not -path '*/node_modules/*')
