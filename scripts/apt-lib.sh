# shellcheck shell=bash
# Shared by the install-*-deps.sh scripts (source it after setting APT_LIB_NAME):
# running apt as root or through sudo, installing what is missing with one
# `apt-get update`, and stopping the distribution's own Prosody or ejabberd
# service, which would hold the XMPP ports our tests and benchmarks use.

log() { printf '%s: %s\n' "${APT_LIB_NAME:-install}" "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null; then
		SUDO=(sudo)
	else
		log "not root and no sudo: cannot install Debian packages"
	fi
fi

# as_root runs a command as root (directly, or through sudo); without either
# it logs and fails.
as_root() {
	if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
		log "skipped (needs root): $*"
		return 1
	fi
	"${SUDO[@]}" "$@"
}

# installed PKG succeeds when the Debian package PKG is installed.
installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]; }

# apt_install_missing PKG... installs the packages not installed yet: one
# `apt-get update`, then `apt-get install -y --no-install-recommends`.
apt_install_missing() {
	local p missing=()
	for p in "$@"; do
		installed "$p" || missing+=("$p")
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		log "Debian packages already installed"
		return 0
	fi
	log "installing: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# stock_pids SERVICE prints the PIDs of the distribution's own instance of
# SERVICE (prosody or ejabberd): started with the stock configuration, not
# by our scripts (which pass their own --config or --spool).
stock_pids() {
	local d cmd
	for d in /proc/[0-9]*; do
		cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
		case $1 in
		prosody)
			case "$cmd" in
			*/usr/bin/prosody* | prosody\ * | lua*\ prosody*) ;;
			*) continue ;;
			esac
			case "$cmd" in
			*prosodyctl*) continue ;;                              # not the server
			*\ --config\ /etc/prosody/* | *\ -D\ * | *\ --daemonize\ *) ;; # stock config or daemon
			*\ --config\ *) continue ;;                                        # our instances
			esac
			;;
		ejabberd)
			# beam.smp of the node the stock ejabberdctl starts: its mnesia
			# spool is /var/lib/ejabberd (ours use their own --spool).
			case "$cmd" in
			*beam.smp*-mnesia\ dir\ \"/var/lib/ejabberd\"*) ;;
			*beam.smp*-mnesia\ dir\ /var/lib/ejabberd\ *) ;;
			*) continue ;;
			esac
			;;
		esac
		echo "${d#/proc/}"
	done
}

# stop_stock_service SERVICE stops and disables the distribution's SERVICE
# (systemd, or the init script and update-rc.d), then kills what is left
# of it; it fails if a stock instance still runs.
stop_stock_service() {
	local svc=$1 pids
	installed "$svc" || return 0
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
		as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
	else
		if [[ -x /etc/init.d/$svc ]] && command -v service >/dev/null && [[ -n "$(stock_pids "$svc")" ]]; then
			as_root timeout 30 service "$svc" stop >/dev/null 2>&1 || true
		fi
		if compgen -G "/etc/rc[2-5].d/S*$svc" >/dev/null; then
			as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
		# The unit may be enabled for a later boot with systemd.
		if [[ -L /etc/systemd/system/multi-user.target.wants/$svc.service ]]; then
			as_root rm -f "/etc/systemd/system/multi-user.target.wants/$svc.service" || true
		fi
	fi
	pids=$(stock_pids "$svc")
	if [[ -n "$pids" ]]; then
		log "stopping stock $svc (pid $(echo "$pids" | tr '\n' ' '))"
		# shellcheck disable=SC2086 # one PID per word
		as_root kill -TERM $pids 2>/dev/null || true
		for _ in $(seq 100); do
			[[ -z "$(stock_pids "$svc")" ]] && break
			sleep 0.1
		done
		pids=$(stock_pids "$svc")
		# shellcheck disable=SC2086
		[[ -z "$pids" ]] || as_root kill -KILL $pids 2>/dev/null || true
	fi
	if [[ -n "$(stock_pids "$svc")" ]]; then
		log "a stock $svc is still running: $(stock_pids "$svc" | tr '\n' ' ')"
		return 1
	fi
}
