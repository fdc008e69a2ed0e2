#!/usr/bin/env bash
# Benchmark driver of `make bench` (docs/BENCHMARKS.md): measures Hearth side
# by side with Debian's Prosody 0.12 and ejabberd 23.01 on this machine, one
# server under load at a time, with the load client scripts/load.
#
# Each server runs from its own temporary directory, as a foreground child of
# this script, on free 127.0.0.1 ports only, with a self-signed certificate,
# open in-band registration, no rate limits or traffic shapers, and a MUC
# service groups.<domain>:
#   Hearth    bin/hearth serve --domain bench.hearth (registration opened with
#             `hearth invite registration open`), every other listener off
#   Prosody   prosody -F --config scripts/bench/prosody.cfg.lua.in (filled in),
#             as the prosody user, like scripts/interop/prosody-lib.sh
#   ejabberd  ejabberdctl --config-dir DIR --spool DIR --logs DIR foreground,
#             as the ejabberd user, config scripts/bench/ejabberd.yml.in, its
#             own Erlang node name, cookie and distribution port (no epmd)
# For each server the load modes run in order: register, idle, login,
# message, muc; their JSON lines go to DIR/results.jsonl, then the server is
# stopped. At the end a markdown table (figures and ratios) and the machine
# facts are printed and written to $BENCH_OUT.
#
# Needs root (the servers run as their Debian users) and
# scripts/install-bench-deps.sh. Environment (defaults; BENCH_QUICK=1 picks
# small ones for a smoke run of about 2 minutes):
#   BENCH_QUICK=0            1: small counts and time bounds
#   BENCH_SERVERS="hearth prosody ejabberd"
#   BENCH_IDLE=1000          idle sessions (KiB per idle TLS session)
#   BENCH_LOGIN_USERS=1000   accounts of the login run, BENCH_LOGIN_CONC=50 workers
#   BENCH_PAIRS=50           message: sender/receiver pairs,
#   BENCH_MESSAGES=2000      messages per sender, BENCH_WINDOW=100 in flight
#   BENCH_MUC_USERS=50       muc: occupants, BENCH_MUC_SENDERS=10 senders,
#   BENCH_MUC_MESSAGES=300   messages per sender
#   BENCH_MAX_TIME=90        seconds, hard bound of each load run
#   BENCH_MAM=0              1: Prosody and ejabberd archive 1:1 messages
#                            (XEP-0313, default "always") as Hearth always
#                            does (ejabberd's archive is then in mnesia)
#   BENCH_DIR=               where results.jsonl, bench.md and the logs of
#                            failed servers go (default a new /tmp/hearth-bench.*)
#   BENCH_OUT=$BENCH_DIR/bench.md
#   BENCH_KEEP=0             1: keep the servers' temporary directories
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
here="$repo/scripts/bench"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

quick=${BENCH_QUICK:-0}
if [[ $quick == 1 ]]; then
	d_idle=100 d_login=200 d_pairs=20 d_msgs=300 d_muc=20 d_mucs=5 d_mucm=100 d_max=30
else
	d_idle=1000 d_login=1000 d_pairs=50 d_msgs=2000 d_muc=50 d_mucs=10 d_mucm=300 d_max=90
fi
idle=${BENCH_IDLE:-$d_idle}
login_users=${BENCH_LOGIN_USERS:-$d_login}
login_conc=${BENCH_LOGIN_CONC:-50}
pairs=${BENCH_PAIRS:-$d_pairs}
messages=${BENCH_MESSAGES:-$d_msgs}
window=${BENCH_WINDOW:-100}
muc_users=${BENCH_MUC_USERS:-$d_muc}
muc_senders=${BENCH_MUC_SENDERS:-$d_mucs}
muc_messages=${BENCH_MUC_MESSAGES:-$d_mucm}
max_time=${BENCH_MAX_TIME:-$d_max}
mam=${BENCH_MAM:-0}
keep=${BENCH_KEEP:-0}
read -r -a servers <<<"${BENCH_SERVERS:-hearth prosody ejabberd}"
password=bench-password
# Accounts user00000.. cover every mode.
accounts=$((idle > login_users ? idle : login_users))
((2 * pairs > accounts)) && accounts=$((2 * pairs))
((muc_users > accounts)) && accounts=$muc_users

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

for tool in openssl setpriv pgrep python3 timeout; do
	command -v "$tool" >/dev/null || die "missing $tool: run scripts/install-bench-deps.sh"
done
[[ $(id -u) -eq 0 ]] || die "run as root (Prosody and ejabberd run as their own users)"
for s in "${servers[@]}"; do
	case $s in
	hearth) ;;
	prosody) command -v prosody >/dev/null || die "missing prosody: run scripts/install-bench-deps.sh" ;;
	ejabberd) command -v ejabberdctl >/dev/null || die "missing ejabberd: run scripts/install-bench-deps.sh" ;;
	*) die "unknown server $s in BENCH_SERVERS (want hearth, prosody, ejabberd)" ;;
	esac
done

if [[ -n ${BENCH_DIR:-} ]]; then
	out_dir=$BENCH_DIR
	mkdir -p "$out_dir"
else
	out_dir=$(mktemp -d /tmp/hearth-bench.XXXXXX)
fi
out_dir=$(cd "$out_dir" && pwd)
bench_out=${BENCH_OUT:-$out_dir/bench.md}
results=$out_dir/results.jsonl
: >"$results"
# The servers' directories; removed on exit unless BENCH_KEEP=1.
work=$(mktemp -d /tmp/hearth-bench-work.XXXXXX)
chmod 755 "$work"

# --- process bookkeeping ----------------------------------------------------------
srv_name="" # the server running now
srv_pid=""  # its process (the one started by this script)
srv_dir=""
rss_pids=() # the processes whose RSS is the server's (ejabberd: beam.smp)
load_pid=""

# stop_server ends the running server: TERM to its processes, KILL after 10 s.
stop_server() {
	local p alive all
	[[ -n $srv_pid ]] || return 0
	# The whole process tree (ejabberd: ejabberdctl, beam.smp and its port
	# programs), killed if still there after the server's own shutdown.
	mapfile -t all < <(tree_pids "$srv_pid")
	for p in "${rss_pids[@]}" "$srv_pid"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for _ in $(seq 100); do
		alive=0
		for p in "${rss_pids[@]}" "$srv_pid"; do
			if kill -0 "$p" 2>/dev/null; then alive=1; fi
		done
		[[ $alive == 1 ]] || break
		sleep 0.1
	done
	for p in "${rss_pids[@]}" "$srv_pid" "${all[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	wait "$srv_pid" 2>/dev/null || true
	srv_pid="" rss_pids=()
}

# tree_pids PID prints PID's descendants, one per line.
tree_pids() {
	local c
	for c in $(pgrep -P "$1" || true); do
		echo "$c"
		tree_pids "$c"
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $load_pid ]]; then
		kill -TERM "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
	fi
	stop_server || true
	if ((keep)); then
		log "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# save_logs copies the running server's log files to the results directory
# (kept after the exit cleanup).
save_logs() {
	local f
	[[ -n $srv_dir ]] || return 0
	mkdir -p "$out_dir/logs-$srv_name"
	while IFS= read -r f; do
		cp "$f" "$out_dir/logs-$srv_name/" 2>/dev/null || true
	done < <(find "$srv_dir" -maxdepth 2 -type f \( -name '*.log' -o -name '*.out' \))
}

# free_ports N prints N free TCP ports on 127.0.0.1.
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
EOF
}

# wait_port PORT waits until srv_pid accepts TCP on 127.0.0.1:PORT (60 s);
# fails if it exits or does not.
wait_port() {
	for _ in $(seq 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		kill -0 "$srv_pid" 2>/dev/null || {
			log "$srv_name exited while starting"
			return 1
		}
		sleep 0.1
	done
	log "$srv_name does not accept connections on 127.0.0.1:$1"
	return 1
}

# self_signed DIR DOMAIN writes DIR/key.pem and DIR/cert.pem for DOMAIN and
# groups.DOMAIN.
self_signed() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=$2" -addext "subjectAltName=DNS:$2,DNS:groups.$2" \
		-keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# --- the three servers: each sets domain, port, srv_pid, rss_pids -----------------
hearth_bin="$repo/bin/hearth"

start_hearth() {
	domain=bench.hearth
	srv_dir="$work/hearth"
	mkdir -p "$srv_dir/data"
	read -r port < <(free_ports 1)
	# Of Hearth's limits, two stand in the load client's way, as the
	# others' shapers would: the per-IP connection cap and the read rate per
	# connection (128 KiB/s by default); both are lifted.
	"$hearth_bin" serve --data "$srv_dir/data" --domain "$domain" --listen 127.0.0.1 \
		--c2s-port "$port" --c2s-tls-port 0 --http-port 0 --https-port 0 \
		--turn-port 0 --turns-port 0 --proxy65-port 0 --port-mapping off \
		--max-conns-per-ip 100000 --max-read-rate 1073741824 --log-level warn \
		>>"$srv_dir/hearth.out" 2>>"$srv_dir/hearth.log" &
	srv_pid=$!
	rss_pids=("$srv_pid")
	wait_port "$port" || return 1
	# The domain is recorded by the first start; registration is read from
	# the store on each request, so opening it now takes effect at once.
	"$hearth_bin" invite registration open --data "$srv_dir/data" >>"$srv_dir/hearth.out" 2>&1 || {
		log "hearth invite registration open failed: $(cat "$srv_dir/hearth.out")"
		return 1
	}
}

start_prosody() {
	local modules=""
	domain=bench.prosody
	srv_dir="$work/prosody"
	mkdir -p "$srv_dir/data" "$srv_dir/certs"
	read -r port < <(free_ports 1)
	self_signed "$srv_dir" "$domain" || return 1
	((mam)) && modules='"mam";'
	sed -e "s|@DIR@|$srv_dir|g; s|@C2S@|$port|g; s|@DOMAIN@|$domain|g" \
		-e "s|@MUC@|groups.$domain|g; s|@MODULES@|$modules|g" \
		"$here/prosody.cfg.lua.in" >"$srv_dir/prosody.cfg.lua"
	chown -R prosody:prosody "$srv_dir"
	# $! is prosody's own PID: setpriv execs it.
	setpriv --reuid=prosody --regid=prosody --init-groups -- \
		prosody -F --config "$srv_dir/prosody.cfg.lua" >>"$srv_dir/prosody.out" 2>&1 &
	srv_pid=$!
	rss_pids=("$srv_pid")
	wait_port "$port" || return 1
}

start_ejabberd() {
	local dist beam="" mamcfg="" node="hearthbench$$@localhost"
	domain=bench.ejabberd
	srv_dir="$work/ejabberd"
	mkdir -p "$srv_dir/spool" "$srv_dir/logs" "$srv_dir/home"
	read -r port dist < <(free_ports 2)
	self_signed "$srv_dir" "$domain" || return 1
	cat "$srv_dir/cert.pem" "$srv_dir/key.pem" >"$srv_dir/certkey.pem"
	((mam)) && mamcfg='  mod_mam:\n    default: always\n    db_type: mnesia'
	sed -e "s|@DIR@/cert.pem|$srv_dir/certkey.pem|g; s|@DIR@|$srv_dir|g; s|@C2S@|$port|g" \
		-e "s|@DOMAIN@|$domain|g; s|@MUC@|groups.$domain|g; s|@MAM@|$mamcfg|g" \
		"$here/ejabberd.yml.in" >"$srv_dir/ejabberd.yml"
	cp /etc/ejabberd/inetrc "$srv_dir/inetrc"
	# ejabberdctl reads this instead of /etc/ejabberd/ejabberdctl.cfg: a node
		# name of our own, a fixed distribution port on 127.0.0.1 (so no epmd
	# on 4369), the PID file in our directory.
	cat >"$srv_dir/ejabberdctl.cfg" <<EOF
ERLANG_NODE=$node
ERL_DIST_PORT=$dist
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {127,0,0,1}"
EJABBERD_PID_PATH=$srv_dir/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
EOF
	# The Erlang cookie lives in $HOME.
	od -An -N20 -tx1 /dev/urandom | tr -d ' \n' >"$srv_dir/home/.erlang.cookie"
	chmod 400 "$srv_dir/home/.erlang.cookie"
	chown -R ejabberd:ejabberd "$srv_dir"
	HOME="$srv_dir/home" setpriv --reuid=ejabberd --regid=ejabberd --init-groups -- \
		ejabberdctl --config-dir "$srv_dir" --spool "$srv_dir/spool" --logs "$srv_dir/logs" \
		foreground >>"$srv_dir/ejabberd.out" 2>&1 &
	srv_pid=$!
	rss_pids=()
	# ejabberdctl (bash) runs erl, which execs beam.smp: its child, with
	# the node name on its command line.
	for _ in $(seq 100); do
		beam=$(pgrep -P "$srv_pid" -f -- "-sname $node" || true)
		[[ -n $beam ]] && break
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	[[ -n $beam ]] || {
		log "ejabberd: no beam.smp under ejabberdctl $srv_pid"
		return 1
	}
	rss_pids=("$beam")
	wait_port "$port" || return 1
}

# --- the load runs -------------------------------------------------------------------
load_bin="$work/load"

# run_load MODE ARGS... runs one load mode against the running server and
# appends its JSON line to results.jsonl (or an error line when it printed
# none). Fails when the server died.
run_load() {
	local mode=$1 line rc=0 pidargs=() p
	shift
	for p in "${rss_pids[@]}"; do
		pidargs+=(--server-pid "$p")
	done
	log "$srv_name: $mode $*"
	# --max-time bounds the run; timeout is the backstop if it hangs.
	timeout --kill-after=10 $((max_time + 30)) \
		"$load_bin" --addr "127.0.0.1:$port" --domain "$domain" --label "$srv_name" \
		--mode "$mode" --tls-insecure --password "$password" --max-time "${max_time}s" --json \
		"${pidargs[@]}" "$@" >"$srv_dir/load-$mode.json" 2>"$srv_dir/load-$mode.err" &
	load_pid=$!
	wait "$load_pid" || rc=$?
	load_pid=""
	line=$(grep -m1 '^{' "$srv_dir/load-$mode.json" || true)
	if [[ -z $line ]]; then
		line=$(python3 -c 'import json, sys; print(json.dumps({"server": sys.argv[1], "mode": sys.argv[2], "error": "exit %s: %s" % (sys.argv[3], sys.argv[4][-400:])}))' \
			"$srv_name" "$mode" "$rc" "$(cat "$srv_dir/load-$mode.err")")
	fi
	printf '%s\n' "$line" >>"$results"
	printf '  %s\n' "$line" >&2
	for p in "${rss_pids[@]}"; do
		kill -0 "$p" 2>/dev/null || {
			save_logs
			log "$srv_name died during $mode (logs in $out_dir/logs-$srv_name)"
			return 1
		}
	done
}

bench_server() {
	srv_name=$1
	log "starting $srv_name"
	if ! "start_$srv_name"; then
		save_logs
		printf '{"server":"%s","mode":"start","error":"did not start: logs in %s"}\n' \
			"$srv_name" "$out_dir/logs-$srv_name" >>"$results"
		stop_server
		srv_name="" srv_dir=""
		return 0
	fi
	log "$srv_name: pid ${rss_pids[*]} on 127.0.0.1:$port, domain $domain"
	# Registration leaves caches and garbage behind (Erlang's heap shrinks
	# later): restart the server so that the idle RSS is measured from a
	# fresh process holding the accounts.
	if run_load register --users "$accounts" --concurrency 20; then
		log "$srv_name: restarting after registration"
		stop_server
		if ! "start_$srv_name"; then
			save_logs
			printf '{"server":"%s","mode":"restart","error":"did not restart: logs in %s"}\n' \
				"$srv_name" "$out_dir/logs-$srv_name" >>"$results"
			stop_server
			srv_name="" srv_dir=""
			return 0
		fi
	fi
	{
		run_load idle --users "$idle" --settle 3s &&
			run_load login --users "$login_users" --concurrency "$login_conc" &&
			run_load message --pairs "$pairs" --messages "$messages" --window "$window" &&
			run_load muc --users "$muc_users" --senders "$muc_senders" --messages "$muc_messages" \
				--window "$window" --muc-domain "groups.$domain"
	} || true
	# Peak RSS since the restart after registration (VmHWM), for the
	# record; an error line, not 0, when a process cannot be read (died).
	local p hwm=0 v missing=""
	for p in "${rss_pids[@]}"; do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
		if [[ -z $v ]]; then
			missing+=" $p"
			continue
		fi
		hwm=$((hwm + v))
	done
	if ((${#rss_pids[@]} == 0)) || [[ -n $missing ]]; then
		printf '{"server":"%s","mode":"peak_rss","error":"no VmHWM in /proc/PID/status of pid%s (server exited?)"}\n' \
			"$srv_name" "${missing:- none}" >>"$results"
	else
		printf '{"server":"%s","mode":"peak_rss","n":0,"value":%d,"unit":"KiB","incomplete":false,"details":{}}\n' \
			"$srv_name" "$hwm" >>"$results"
	fi
	if grep -qiE 'crash|panic|error' "$srv_dir"/*.log "$srv_dir"/logs/*.log 2>/dev/null; then
		save_logs
		log "$srv_name logged errors: see $out_dir/logs-$srv_name"
	fi
	stop_server
	srv_name="" srv_dir=""
}

# --- build, run, report -------------------------------------------------------------
log "building bin/hearth and the load client"
(cd "$repo" && "$GO" build -o "$hearth_bin" ./appliance/cmd/hearth && "$GO" build -o "$load_bin" ./scripts/load)

log "accounts $accounts; idle $idle; login $login_users at C=$login_conc; message $pairs pairs x $messages;" \
	"muc $muc_users occupants, $muc_senders senders x $muc_messages; max $max_time s per run; MAM $mam"
t0=$SECONDS
for s in "${servers[@]}"; do
	bench_server "$s"
done
log "load runs took $((SECONDS - t0)) s"

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"; }
hearth_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$repo" status --porcelain 2>/dev/null | head -n1) ]] && hearth_rev+="+changes"
{
	python3 "$here/table.py" "$results" \
		"idle=$idle login=$login_users C=$login_conc pairs=$pairs messages=$messages window=$window muc=$muc_users senders=$muc_senders muc_messages=$muc_messages mam=$mam quick=$quick"
	echo
	echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)," \
		"$(awk '/^MemTotal:/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
	echo "Versions: Hearth $hearth_rev ($("$GO" version | awk '{print $3}')), Prosody $(pkgver prosody)," \
		"ejabberd $(pkgver ejabberd) (Erlang/OTP $(pkgver erlang-base)), load client and server on the same cores"
} | tee "$bench_out"
log "results: $results; table: $bench_out"
