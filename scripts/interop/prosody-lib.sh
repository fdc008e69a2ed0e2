# shellcheck shell=bash
# Shared by prosody-check.sh and prosody-mobile-check.sh: runs Debian's
# Prosody 0.12 (the reference peer) in the foreground on 127.0.0.1 only, on
# free ports, from a temporary directory, as the prosody user, and stops it by
# its PID when the calling script exits. Needs root.
#
# After prosody_start: $tmp is the directory (cert.pem, prosody.log), $c2s the
# STARTTLS port, $tls the direct TLS port. Users are registered with the
# password "<name>pw". Set prosody_keep=1 to keep $tmp; add PIDs to
# prosody_extra_pids for the cleanup to kill.

PY=/usr/bin/python3
prosody_keep=0
prosody_pid=""
prosody_extra_pids=()
tmp=""

# prosody_require TOOL... checks root and the tools (plus prosody's own).
prosody_require() {
	local tool
	for tool in prosody prosodyctl openssl setpriv "$PY" "$@"; do
		[[ -z "$tool" ]] && continue
		command -v "$tool" >/dev/null || {
			echo "missing $tool: run scripts/install-deps.sh" >&2
			exit 1
		}
	done
	if [[ $(id -u) -ne 0 ]]; then
		echo "run as root (prosody is started as the prosody user)" >&2
		exit 1
	fi
}

prosody_cleanup() {
	local rc=$? p
	for p in "${prosody_extra_pids[@]}" "$prosody_pid"; do
		[[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
	done
	if [[ -n "$prosody_pid" ]]; then
		for _ in $(seq 50); do
			kill -0 "$prosody_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$prosody_pid" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
	if [[ $rc -ne 0 && -n "$tmp" && -f "$tmp/prosody.log" ]]; then
		echo "--- prosody log (last 80 lines) ---" >&2
		tail -n 80 "$tmp/prosody.log" >&2
	fi
	if [[ -n "$tmp" ]]; then
		if [[ $prosody_keep -eq 1 ]]; then
			echo "kept $tmp" >&2
		else
			rm -rf "$tmp"
		fi
	fi
	exit "$rc"
}

# prosody_start MODULES EXTRA_CONFIG USER... writes a config enabling MODULES
# (Lua list items, e.g. '"roster"; "mam";') plus EXTRA_CONFIG lines,
# registers the users and starts Prosody, waiting until it accepts TCP.
prosody_start() {
	local modules=$1 extra=$2 u
	shift 2
	tmp=$(mktemp -d /tmp/hearth-prosody.XXXXXX)
	trap prosody_cleanup EXIT INT TERM
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
modules_enabled = { $modules }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
$extra
ssl = { certificate = "$tmp/cert.pem"; key = "$tmp/key.pem" }
VirtualHost "localhost"
EOF
	mkdir -p "$tmp/data" "$tmp/certs"
	chmod 755 "$tmp"
	chown -R prosody:prosody "$tmp"
	for u in "$@"; do
		setpriv --reuid=prosody --regid=prosody --init-groups -- \
			prosodyctl --config "$tmp/prosody.cfg.lua" register "$u" localhost "${u}pw" \
			>>"$tmp/prosodyctl.out" 2>&1 || {
			cat "$tmp/prosodyctl.out" >&2
			exit 1
		}
	done
	# $! must be prosody's own PID: setpriv execs it.
	setpriv --reuid=prosody --regid=prosody --init-groups -- \
		prosody -F --config "$tmp/prosody.cfg.lua" >"$tmp/prosody.out" 2>&1 &
	prosody_pid=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$c2s") 2>/dev/null; then
			echo "prosody $prosody_pid on 127.0.0.1:$c2s (STARTTLS) and :$tls (direct TLS)"
			return 0
		fi
		kill -0 "$prosody_pid" 2>/dev/null || {
			echo "prosody exited:" >&2
			cat "$tmp/prosody.out" >&2
			exit 1
		}
		sleep 0.1
	done
	echo "prosody is not accepting connections on $c2s" >&2
	exit 1
}
