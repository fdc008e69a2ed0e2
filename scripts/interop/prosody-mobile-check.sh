#!/usr/bin/env bash
# Runs scripts/interop/mobile.py (stream management, carbons, MAM, PEP)
# against Debian's Prosody 0.12 (the reference peer), so that a failure
# against Hearth means a Hearth bug, not a script bug. Prosody runs in the
# foreground on 127.0.0.1 only, on free ports, from a temporary directory, as
# the prosody user, and is stopped by its PID when this script exits. Needs root.
#
# It runs the whole scenario once on fresh accounts, then each part alone on
# the same server (as appliance/interop/mobile_test.go does on Hearth), which
# also checks the script against accounts that already have history.
#
# Usage: scripts/interop/prosody-mobile-check.sh [--keep] [mobile.py args...]
#   --keep: leave the temp dir (prosody.log, prosody.cfg.lua)
#   e.g. --debug, or --parts sm to run one part only
set -euo pipefail

cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
keep=0
if [[ "${1:-}" == "--keep" ]]; then
	keep=1
	shift
fi
extra=("$@")

for tool in prosody prosodyctl openssl setpriv "$PY"; do
	command -v "$tool" >/dev/null || {
		echo "missing $tool: run scripts/install-deps.sh" >&2
		exit 1
	}
done
if [[ $(id -u) -ne 0 ]]; then
	echo "run as root (prosody is started as the prosody user)" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/hearth-prosody-mobile.XXXXXX)
pid=""
cleanup() {
	local rc=$?
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
	if [[ $rc -ne 0 && -f "$tmp/prosody.log" ]]; then
		echo "--- prosody log (last 80 lines) ---" >&2
		tail -n 80 "$tmp/prosody.log" >&2
	fi
	if [[ $keep -eq 1 ]]; then
		echo "kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT INT TERM

# Two free loopback ports.
read -r c2s tls < <("$PY" - <<'EOF'
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
EOF
)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

# mod_smacks is part of Prosody 0.12. MAM: archive everything (no per-user
# opt-in), keep it a week, pages of at most 50 (0.12's default limit).
cat >"$tmp/prosody.cfg.lua" <<EOF
pidfile = "$tmp/prosody.pid"
certificates = "$tmp/certs"
data_path = "$tmp/data"
log = { info = "$tmp/prosody.log" }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $c2s }
c2s_direct_tls_ports = { $tls }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "ping"; "offline";
	"smacks"; "carbons"; "mam"; "pep";
}
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
smacks_hibernation_time = 300
archive_expires_after = "1w"
default_archive_policy = true
max_archive_query_results = 50
ssl = { certificate = "$tmp/cert.pem"; key = "$tmp/key.pem" }
VirtualHost "localhost"
EOF
mkdir -p "$tmp/data" "$tmp/certs"
chmod 755 "$tmp"
chown -R prosody:prosody "$tmp"

as_prosody() { setpriv --reuid=prosody --regid=prosody --init-groups -- "$@"; }

for u in alice bob carol; do
	as_prosody prosodyctl --config "$tmp/prosody.cfg.lua" register "$u" localhost "${u}pw" \
		>>"$tmp/prosodyctl.out" 2>&1 || {
		cat "$tmp/prosodyctl.out" >&2
		exit 1
	}
done

# Not through as_prosody: $! must be prosody's own PID (setpriv execs it).
setpriv --reuid=prosody --regid=prosody --init-groups -- \
	prosody -F --config "$tmp/prosody.cfg.lua" >"$tmp/prosody.out" 2>&1 &
pid=$!

for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$c2s") 2>/dev/null; then
		break
	fi
	kill -0 "$pid" 2>/dev/null || {
		echo "prosody exited:" >&2
		cat "$tmp/prosody.out" >&2
		exit 1
	}
	sleep 0.1
done
echo "prosody $pid on 127.0.0.1:$c2s (STARTTLS) and :$tls (direct TLS)"

# Prosody 0.12 stores SCRAM-SHA-1 keys only.
common=(--host 127.0.0.1 --ca "$tmp/cert.pem" --mechs SCRAM-SHA-1
	--alice alice@localhost --alice-password alicepw
	--bob bob@localhost --bob-password bobpw
	--carol carol@localhost --carol-password carolpw)

if [[ ${#extra[@]} -gt 0 ]]; then
	echo "== mobile.py ${extra[*]} (STARTTLS)"
	"$PY" scripts/interop/mobile.py "${common[@]}" --port "$c2s" "${extra[@]}"
	echo "prosody-mobile-check: passed"
	exit 0
fi

echo "== mobile.py, all parts, fresh accounts (STARTTLS)"
"$PY" scripts/interop/mobile.py "${common[@]}" --port "$c2s"

for part in sm carbons mam pep; do
	echo "== mobile.py --parts $part, accounts with history (direct TLS)"
	"$PY" scripts/interop/mobile.py "${common[@]}" --port "$tls" --direct-tls --parts "$part"
done

echo "prosody-mobile-check: all passed"
