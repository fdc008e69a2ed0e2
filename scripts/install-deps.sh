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

log() { printf 'install-deps: %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null; then
		SUDO=(sudo)
	else
		log "not root and no sudo: cannot install Debian packages"
	fi
fi
as_root() {
	if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
		log "skipped (needs root): $*"
		return 1
	fi
	"${SUDO[@]}" "$@"
}

# --- Debian packages --------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[[ "$status" == installed ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
	log "installing: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	log "Debian packages already installed"
fi

# --- the stock Prosody service must not run ------------------------------------
# Our tests start Prosody themselves with --config on 127.0.0.1; a packaged one
# started by the postinst would hold 0.0.0.0:5222 (Hearth's default port).
stock_prosody_pids() {
	local d cmd
	for d in /proc/[0-9]*; do
		cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
		case "$cmd" in
		*/usr/bin/prosody* | prosody\ * | lua*\ prosody*) ;;
		*) continue ;;
		esac
		case "$cmd" in
		*prosodyctl*) continue ;;                              # not the server
		*\ --config\ /etc/prosody/* | *\ -D\ * | *\ --daemonize\ *) ;; # stock config or daemon
		*\ --config\ *) continue ;;                                        # our test instances
		esac
		echo "${d#/proc/}"
	done
}

if [[ "$(dpkg-query -W -f='${db:Status-Status}' prosody 2>/dev/null || true)" == installed ]]; then
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
		as_root systemctl disable --now prosody >/dev/null 2>&1 || true
	else
		if [[ -x /etc/init.d/prosody ]] && command -v service >/dev/null && [[ -n "$(stock_prosody_pids)" ]]; then
			as_root timeout 20 service prosody stop >/dev/null 2>&1 || true
		fi
		if compgen -G '/etc/rc[2-5].d/S*prosody' >/dev/null; then
			as_root update-rc.d prosody disable >/dev/null 2>&1 || true
		fi
	fi
	pids=$(stock_prosody_pids)
	if [[ -n "$pids" ]]; then
		log "stopping stock prosody (pid $(echo "$pids" | tr '\n' ' '))"
		# shellcheck disable=SC2086 # one PID per word
		as_root kill -TERM $pids 2>/dev/null || true
		for _ in $(seq 50); do
			[[ -z "$(stock_prosody_pids)" ]] && break
			sleep 0.1
		done
		pids=$(stock_prosody_pids)
		# shellcheck disable=SC2086
		[[ -z "$pids" ]] || as_root kill -KILL $pids 2>/dev/null || true
	fi
	if [[ -n "$(stock_prosody_pids)" ]]; then
		log "a stock prosody is still running: $(stock_prosody_pids | tr '\n' ' ')"
		exit 1
	fi
fi

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
