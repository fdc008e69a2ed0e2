#!/usr/bin/env bash
# Boot test of Hearth's gokrazy image in QEMU (software emulation of a 64-bit
# ARM machine). image/imagetest (TestImageQEMU, `make image-test`) drives it:
#
#   scripts/image-test.sh boot     build image/out/hearth-qemu.img (the Pi
#                                  instance with image/qemu/overrides.json:
#                                  kernel.arm64, serial console), boot it, wait
#                                  until Hearth's HTTPS and c2s ports answer
#   scripts/image-test.sh update   `gok update` the running VM over the network,
#                                  wait until the new build runs and Hearth answers
#   scripts/image-test.sh stop     stop the VM started by `boot`
#
# Run by hand: `scripts/image-test.sh boot`, then talk to the forwarded ports
# it prints, then `scripts/image-test.sh stop`.
#
# Test accounts: there is no shell on gokrazy, and registration is closed. With
# IMAGE_TEST_USERS="alice:pw bob:pw", `boot` creates the accounts with the real
# `hearth user add` (built for this machine) in a fresh data directory, and the
# image build copies that directory into /perm (mkfs.ext4 -d): the device starts
# with them, as if an operator had created them. Nothing test-only is in the
# image itself.
#
# Every forwarded port listens on 127.0.0.1 only:
#   QEMU_HTTPS_PORT (default 18443) -> 443     QEMU_HTTP_PORT (18081) -> 80
#   QEMU_C2S_PORT   (15222)         -> 5222    QEMU_C2S_TLS_PORT (15223) -> 5223
#   GOKRAZY_HTTP_PORT (18080)       -> the same port: gokrazy's web interface and
#                                      update API (gok connects to the port the
#                                      device listens on, so both are the same)
# State and logs go to image/out/qemu/ (serial.log: the VM's console).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
OUT=${IMAGE_OUT:-$ROOT/image/out}
STATE="$OUT/qemu"
export IMAGE_OUT="$OUT" INSTANCE=hearth-qemu
export GOKRAZY_HTTP_PORT=${GOKRAZY_HTTP_PORT:-18080}
export UPDATE_HOST=127.0.0.1
QEMU_HTTPS_PORT=${QEMU_HTTPS_PORT:-18443}
QEMU_HTTP_PORT=${QEMU_HTTP_PORT:-18081}
QEMU_C2S_PORT=${QEMU_C2S_PORT:-15222}
QEMU_C2S_TLS_PORT=${QEMU_C2S_TLS_PORT:-15223}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300} # seconds, per wait

log() { printf 'image-test: %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# efi_firmware: QEMU_EFI.fd from the pinned gokrazy tools module, else Debian's.
efi_firmware() {
	local dir
	dir=$(cd "$ROOT/image/tools" && "$GO" list -m -f '{{.Dir}}' github.com/gokrazy/tools 2>/dev/null) || true
	if [[ -z "$dir" ]]; then
		(cd "$ROOT/image/tools" && "$GO" mod download github.com/gokrazy/tools) >&2
		dir=$(cd "$ROOT/image/tools" && "$GO" list -m -f '{{.Dir}}' github.com/gokrazy/tools)
	fi
	local fd
	for fd in "$dir"/third_party/edk2-*/QEMU_EFI.fd /usr/share/qemu-efi-aarch64/QEMU_EFI.fd; do
		[[ -f "$fd" ]] && {
			echo "$fd"
			return
		}
	done
	log "no QEMU_EFI.fd: install qemu-efi-aarch64"
	exit 1
}

# wait_https DEADLINE_SECONDS: until Hearth's HTTPS port gives any HTTP answer.
wait_https() {
	local end=$((SECONDS + $1)) code
	while ((SECONDS < end)); do
		code=$(curl -sk -m 3 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$QEMU_HTTPS_PORT/" 2>/dev/null || true)
		if [[ -n "$code" && "$code" != 000 ]]; then
			return 0
		fi
		if [[ -f "$STATE/qemu.pid" ]] && ! kill -0 "$(cat "$STATE/qemu.pid")" 2>/dev/null; then
			log "qemu exited; console:"
			tail -40 "$STATE/serial.log" >&2 || true
			return 1
		fi
		sleep 0.5
	done
	log "Hearth did not answer on 127.0.0.1:$QEMU_HTTPS_PORT within $1 s; console:"
	tail -40 "$STATE/serial.log" >&2 || true
	return 1
}

# wait_c2s: until the c2s port answers a stream header with its own.
wait_c2s() {
	local end=$((SECONDS + BOOT_TIMEOUT)) reply hdr
	hdr="<?xml version='1.0'?><stream:stream to='${HEARTH_DOMAIN:-hearth.local}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
	while ((SECONDS < end)); do
		# shellcheck disable=SC2016 # expanded by the inner bash
		reply=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "%s" "$1" >&3 && head -c 100 <&3' "$QEMU_C2S_PORT" "$hdr" 2>/dev/null || true)
		[[ "$reply" == *"stream:stream"* ]] && return 0
		sleep 0.5
	done
	log "no XMPP stream header from 127.0.0.1:$QEMU_C2S_PORT"
	return 1
}

make_perm() {
	local perm="$STATE/perm" host_bin="$STATE/hearth-host" u
	rm -rf "$perm"
	mkdir -p "$perm"
	[[ -n "${IMAGE_TEST_USERS:-}" ]] || return 0
	(cd "${HEARTH_SRC:-$ROOT}" && "$GO" build -o "$host_bin" ./appliance/cmd/hearth)
	for u in $IMAGE_TEST_USERS; do
		printf '%s\n' "${u#*:}" | "$host_bin" user add "${u%%:*}@${HEARTH_DOMAIN:-hearth.local}" --data "$perm/hearth" >&2
	done
}

boot() {
	"$ROOT/scripts/install-image-deps.sh" --qemu
	stop_vm
	mkdir -p "$STATE"
	make_perm
	local t0
	t0=$(now)
	PERM_DIR="$STATE/perm" "$ROOT/scripts/image.sh" build
	echo "image build: $(since "$t0") s"
	local efi
	efi=$(efi_firmware)
	rm -f "$STATE/serial.log"
	local fwd="hostfwd=tcp:127.0.0.1:$QEMU_HTTPS_PORT-:443,hostfwd=tcp:127.0.0.1:$QEMU_HTTP_PORT-:80"
	fwd+=",hostfwd=tcp:127.0.0.1:$QEMU_C2S_PORT-:5222,hostfwd=tcp:127.0.0.1:$QEMU_C2S_TLS_PORT-:5223"
	fwd+=",hostfwd=tcp:127.0.0.1:$GOKRAZY_HTTP_PORT-:$GOKRAZY_HTTP_PORT"
	t0=$(now)
	# romfile= : no iPXE option ROM (Debian's ipxe-qemu is not needed to boot from disk).
	qemu-system-aarch64 -machine virt,highmem=off -cpu cortex-a72 -smp 2 -m 1024 \
		-bios "$efi" -drive "file=$OUT/hearth-qemu.img,format=raw" \
		-device e1000,netdev=n0,romfile= -netdev "user,id=n0,$fwd" \
		-display none -serial "file:$STATE/serial.log" -monitor none \
		-pidfile "$STATE/qemu.pid" -daemonize
	log "qemu pid $(cat "$STATE/qemu.pid"); console in $STATE/serial.log"
	wait_https "$BOOT_TIMEOUT"
	echo "boot to HTTPS answering: $(since "$t0") s"
	wait_c2s
	echo "boot to XMPP stream answering: $(since "$t0") s"
	echo "ports: https=127.0.0.1:$QEMU_HTTPS_PORT http=127.0.0.1:$QEMU_HTTP_PORT c2s=127.0.0.1:$QEMU_C2S_PORT c2s-tls=127.0.0.1:$QEMU_C2S_TLS_PORT gokrazy=127.0.0.1:$GOKRAZY_HTTP_PORT"
}

update() {
	local t0
	t0=$(now)
	# gok update uploads, reboots the VM and waits until the new build answers.
	if ! "$ROOT/scripts/image.sh" update >"$STATE/update.log" 2>&1; then
		grep -v '^go: downloading' "$STATE/update.log" | tail -30 >&2
		exit 1
	fi
	echo "gok update (build, upload, reboot, device answering): $(since "$t0") s; log in ${STATE#"$ROOT"/}/update.log"
	wait_https "$BOOT_TIMEOUT"
	wait_c2s
	echo "update to Hearth answering again: $(since "$t0") s"
}

stop_vm() {
	local pidfile="$STATE/qemu.pid" pid
	[[ -f "$pidfile" ]] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == qemu-system-aar* ]]; then
		kill -TERM "$pid"
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		log "stopped qemu (pid $pid)"
	fi
	rm -f "$pidfile"
}

case "${1:-}" in
boot) boot ;;
update) update ;;
stop) stop_vm ;;
*)
	echo "usage: scripts/image-test.sh boot|update|stop" >&2
	exit 2
	;;
esac
