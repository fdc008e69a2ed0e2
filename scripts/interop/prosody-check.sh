#!/usr/bin/env bash
# Runs the interop scripts against Debian's Prosody 0.12 (the reference peer),
# to tell a harness bug from a Hearth bug. Prosody runs in the foreground on
# 127.0.0.1 only, on free ports, from a temporary directory, and is stopped by
# its PID when this script exits. Needs root (Prosody runs as user prosody).
#
# Usage: scripts/interop/prosody-check.sh [--keep]   (--keep: leave the temp dir)
set -euo pipefail

cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
keep=0
[[ "${1:-}" == "--keep" ]] && keep=1

for tool in prosody prosodyctl openssl setpriv go-sendxmpp "$PY"; do
	command -v "$tool" >/dev/null || {
		echo "missing $tool: run scripts/install-deps.sh" >&2
		exit 1
	}
done
if [[ $(id -u) -ne 0 ]]; then
	echo "run as root (prosody is started as the prosody user)" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/hearth-prosody.XXXXXX)
pid=""
recv_pid=""
cleanup() {
	local rc=$?
	if [[ -n "$recv_pid" ]] && kill -0 "$recv_pid" 2>/dev/null; then
		kill "$recv_pid" 2>/dev/null || true
	fi
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
		echo "--- prosody log ---" >&2
		tail -n 50 "$tmp/prosody.log" >&2
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
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "offline" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
ssl = { certificate = "$tmp/cert.pem"; key = "$tmp/key.pem" }
VirtualHost "localhost"
EOF
mkdir -p "$tmp/data" "$tmp/certs"
chmod 755 "$tmp"
chown -R prosody:prosody "$tmp"

as_prosody() { setpriv --reuid=prosody --regid=prosody --init-groups -- "$@"; }

for u in alice bob; do
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
common=(--host 127.0.0.1 --ca "$tmp/cert.pem" --mechs SCRAM-SHA-1)

echo "== two_users.py (STARTTLS)"
"$PY" scripts/interop/two_users.py "${common[@]}" --port "$c2s" \
	--alice alice@localhost --alice-password alicepw --bob bob@localhost --bob-password bobpw

echo "== login.py (direct TLS)"
"$PY" scripts/interop/login.py "${common[@]}" --port "$tls" --direct-tls \
	--jid alice@localhost --password alicepw

for mode in starttls direct; do
	echo "== go-sendxmpp ($mode) -> receive_one.py"
	port=$c2s
	tflag=()
	if [[ $mode == direct ]]; then
		port=$tls
		tflag=(-t)
	fi
	body="sendxmpp $mode $RANDOM"
	"$PY" scripts/interop/receive_one.py "${common[@]}" --port "$c2s" \
		--jid bob@localhost --password bobpw --from alice@localhost --expect "$body" \
		>"$tmp/recv.out" 2>&1 &
	recv_pid=$!
	for _ in $(seq 150); do
		grep -q '^READY' "$tmp/recv.out" && break
		kill -0 "$recv_pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^READY' "$tmp/recv.out" || {
		cat "$tmp/recv.out" >&2
		exit 1
	}
	# go-sendxmpp reads the message from stdin; HOME keeps a user's config out.
	printf '%s\n' "$body" | HOME="$tmp" timeout 30 go-sendxmpp ${SENDXMPP_DEBUG:+-d} "${tflag[@]}" -n \
		-j "127.0.0.1:$port" -u alice@localhost -p alicepw bob@localhost
	rc=0
	wait "$recv_pid" || rc=$?
	recv_pid=""
	cat "$tmp/recv.out"
	[[ $rc -eq 0 ]] || exit 1
done

echo "prosody-check: all passed"
