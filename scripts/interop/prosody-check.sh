#!/usr/bin/env bash
# Runs the interop scripts against Debian's Prosody 0.12 (the reference peer),
# to tell a harness bug from a Hearth bug. Prosody runs in the foreground on
# 127.0.0.1 only, on free ports, from a temporary directory, and is stopped by
# its PID when this script exits. Needs root (Prosody runs as user prosody).
#
# Usage: scripts/interop/prosody-check.sh [--keep]   (--keep: leave the temp dir)
set -euo pipefail

cd "$(dirname "$0")/../.."
# shellcheck source=scripts/interop/prosody-lib.sh
. scripts/interop/prosody-lib.sh
[[ "${1:-}" == "--keep" ]] && prosody_keep=1

prosody_require go-sendxmpp
prosody_start '"roster"; "saslauth"; "tls"; "disco"; "ping"; "offline";' "" alice bob

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
	prosody_extra_pids=("$recv_pid")
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
	prosody_extra_pids=()
	cat "$tmp/recv.out"
	[[ $rc -eq 0 ]] || exit 1
done

echo "prosody-check: all passed"
