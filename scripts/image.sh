#!/usr/bin/env bash
# Builds Hearth's gokrazy SD-card image, or updates a running device over the
# network. Called by `make image`, `make update` and scripts/image-test.sh.
#
#   scripts/image.sh build    image/out/hearth-rpi.img and .img.xz (Raspberry Pi 3/4/5, Zero 2 W)
#   scripts/image.sh update   `gok update` to UPDATE_HOST (default: the hostname, hearth)
#
# The committed instance is image/hearth/ (config.json without secrets, pinned
# builddir/ go.mod files). Each run copies it to $IMAGE_OUT/$INSTANCE/ and
# fills in what belongs to one device, kept in $IMAGE_OUT/$INSTANCE.secrets/
# (mode 0700, reused by later builds and updates):
#   gokrazy-password  the gokrazy web interface / update password (user "gokrazy");
#                     GOKRAZY_PASSWORD=... sets it, else 20 random characters
#   setup-code        the code the setup wizard will ask for; SETUP_CODE=... sets
#                     it, else random; given to hearth as HEARTH_SETUP_CODE
#   machine-id        /etc/machine-id (randomd; the DHCP client identity)
#
# Environment:
#   INSTANCE      hearth (default) or hearth-qemu (image/qemu/overrides.json
#                 merged on top: kernel.arm64, serial console, update target)
#   IMAGE_OUT     output directory (default image/out)
#   IMAGE_BYTES   image size (default 2 GiB; /perm gets what the system leaves:
#                 about 920 MiB of 2 GiB)
#   HEARTH_SRC    Hearth source tree to build (default: this checkout)
#   HEARTH_DOMAIN domain hearth serves until the setup wizard exists (hearth.local)
#   PERM_DIR      directory whose contents are copied into /perm at build time
#                 (the boot test pre-creates accounts this way); default empty
#   UPDATE_HOST   host name or address for `update` (default: hearth)
#   GOKRAZY_HTTP_PORT  the gokrazy web interface's port (default 8080)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
OUT=${IMAGE_OUT:-$ROOT/image/out}
INSTANCE=${INSTANCE:-hearth}
HEARTH_SRC=$(cd "${HEARTH_SRC:-$ROOT}" && pwd)
IMAGE_BYTES=${IMAGE_BYTES:-2147483648}
HEARTH_DOMAIN=${HEARTH_DOMAIN:-hearth.local}
PERM_DIR=${PERM_DIR:-}
HEARTH_PKG=github.com/hearthxmpp/hearth/appliance/cmd/hearth

case "$INSTANCE" in
hearth) IMG="$OUT/hearth-rpi.img" ;;
hearth-qemu) IMG="$OUT/hearth-qemu.img" ;;
*)
	echo "image.sh: unknown INSTANCE $INSTANCE (hearth or hearth-qemu)" >&2
	exit 2
	;;
esac
SECRETS="$OUT/$INSTANCE.secrets"
INST="$OUT/$INSTANCE"

log() { printf 'image: %s\n' "$*" >&2; }

gok() { "$GO" tool -modfile="$ROOT/image/tools/go.mod" gok --parent_dir "$OUT" -i "$INSTANCE" "$@"; }

# random N ALPHABET: N characters from ALPHABET, uniformly (tr -dc rejects the
# rest). head closing the pipe ends tr with SIGPIPE: not an error here.
random() { (LC_ALL=C tr -dc "$2" </dev/urandom 2>/dev/null || true) | head -c "$1"; }

# setup_code: like K7MQ-2XPD-9RHT (no 0/O, 1/I: read aloud or typed from paper).
setup_code() { printf '%s-%s-%s' "$(random 4 A-HJ-NP-Z2-9)" "$(random 4 A-HJ-NP-Z2-9)" "$(random 4 A-HJ-NP-Z2-9)"; }

# secret NAME ENVVAR GENERATOR...: the kept value, else $ENVVAR, else generated.
# An explicit $ENVVAR replaces the kept value.
secret() {
	local env=$2 file="$SECRETS/$1"
	shift 2
	mkdir -p "$SECRETS"
	chmod 700 "$SECRETS"
	if [[ -n "${!env:-}" ]]; then
		printf '%s' "${!env}" >"$file"
	elif [[ ! -s "$file" ]]; then
		"$@" >"$file"
	fi
	chmod 600 "$file"
	cat "$file"
}

# instance UPDATE_HOST: writes $INST (config.json and builddir/) for this device.
instance() {
	local update_host=$1 password setup machineid version overrides='{}'
	password=$(secret gokrazy-password GOKRAZY_PASSWORD random 20 'A-Za-z0-9')
	setup=$(secret setup-code SETUP_CODE setup_code)
	machineid=$(secret machine-id NO_SUCH_VARIABLE random 32 '0-9a-f')
	version=${HEARTH_VERSION:-$(git -C "$HEARTH_SRC" describe --always --dirty 2>/dev/null || echo dev)}
	[[ "$INSTANCE" == hearth-qemu ]] && overrides=$(cat "$ROOT/image/qemu/overrides.json")
	rm -rf "$INST"
	mkdir -p "$OUT"
	cp -r "$ROOT/image/hearth" "$INST"
	# The committed replace is relative to image/hearth/; point it at the source.
	(cd "$INST/builddir/github.com/hearthxmpp/hearth" && "$GO" mod edit -replace "github.com/hearthxmpp/hearth=$HEARTH_SRC")
	jq --arg pw "$password" --arg setup "$setup" --arg mid "$machineid" --arg ver "$version" \
		--arg domain "$HEARTH_DOMAIN" --arg host "$update_host" --arg port "${GOKRAZY_HTTP_PORT:-}" \
		--arg pkg "$HEARTH_PKG" --argjson over "$overrides" '
		(. * $over)
		| .Update.HTTPPassword = $pw
		| (if $host != "" then .Update.Hostname = $host else . end)
		| (if $port != "" then .Update.HTTPPort = $port else . end)
		| .PackageConfig["github.com/gokrazy/gokrazy/cmd/randomd"].ExtraFileContents["/etc/machine-id"] = ($mid + "\n")
		| .PackageConfig[$pkg].Environment = ["HEARTH_SETUP_CODE=" + $setup]
		| .PackageConfig[$pkg].GoBuildFlags |= map(if startswith("-ldflags=") then . + " -X main.version=" + $ver else . end)
		| .PackageConfig[$pkg].CommandLineFlags |= (
			(index("--domain") + 1) as $i | .[$i] = $domain)
	' "$ROOT/image/hearth/config.json" >"$INST/config.json"
	chmod 600 "$INST/config.json"
}

# check_static: builds hearth exactly as gok will (same builddir, flags, tags,
# environment) and fails unless the result is a static arm64 executable:
# gokrazy has no C library.
check_static() {
	local cfg="$INST/config.json" bin="$OUT/hearth-linux-arm64-gokrazy" tags flags envs
	tags=$(jq -r --arg p "$HEARTH_PKG" '["gokrazy","netgo","osusergo"] + (.PackageConfig[$p].GoBuildTags // []) | join(",")' "$cfg")
	mapfile -t flags < <(jq -r --arg p "$HEARTH_PKG" '.PackageConfig[$p].GoBuildFlags[]' "$cfg")
	mapfile -t envs < <(jq -r --arg p "$HEARTH_PKG" '.PackageConfig[$p].GoBuildEnvironment[]' "$cfg")
	(cd "$INST/builddir/github.com/hearthxmpp/hearth" &&
		env GOOS=linux GOARCH=arm64 "${envs[@]}" "$GO" build -mod=mod -o "$bin" -tags="$tags" "${flags[@]}" "$HEARTH_PKG")
	local desc
	desc=$(file -b "$bin")
	log "hearth: $desc"
	if [[ "$desc" != *"ARM aarch64"* || "$desc" != *"statically linked"* ]]; then
		log "hearth is not a static arm64 executable"
		exit 1
	fi
}

build() {
	instance "${UPDATE_HOST:-}"
	check_static
	local buildlog="$OUT/$INSTANCE-build.log" started=$SECONDS
	log "building $IMG ($IMAGE_BYTES bytes) with gok; log in $buildlog"
	rm -f "$IMG" "$IMG.xz"
	if ! gok overwrite --full "$IMG" --target_storage_bytes="$IMAGE_BYTES" >"$buildlog" 2>&1; then
		grep -v '^go: downloading' "$buildlog" | tail -30 >&2
		exit 1
	fi
	# gok leaves /perm unformatted and prints the command that formats it:
	#   /sbin/mkfs.ext4 -F -E offset=1157627904 image 966639
	local line offset blocks
	line=$(grep -o 'mkfs.ext4 -F -E offset=[0-9]* .* [0-9]*$' "$buildlog" | tail -1)
	offset=$(sed -E 's/.*offset=([0-9]+) .*/\1/' <<<"$line")
	blocks=$(awk '{print $NF}' <<<"$line")
	if [[ -z "$offset" || -z "$blocks" ]]; then
		log "gok printed no mkfs.ext4 command for /perm; see $buildlog"
		exit 1
	fi
	local populate=()
	[[ -n "$PERM_DIR" ]] && populate=(-d "$PERM_DIR")
	log "formatting /perm (ext4, $((blocks / 1024)) MiB at byte $offset)${PERM_DIR:+ from $PERM_DIR}"
	mkfs.ext4 -q -F -L perm -E "offset=$offset" "${populate[@]}" "$IMG" "${blocks}k"
	if [[ "$INSTANCE" == hearth ]]; then
		log "compressing"
		xz -T0 -6 -k -f "$IMG"
	fi
	log "built in $((SECONDS - started)) s"
	echo
	echo "Hearth SD-card image ($INSTANCE, Hearth $(jq -r --arg p "$HEARTH_PKG" '.PackageConfig[$p].GoBuildFlags[] | select(startswith("-ldflags=")) | capture("main.version=(?<v>[^ ]+)").v' "$INST/config.json")):"
	for f in "$IMG" "$IMG.xz"; do
		[[ -f "$f" ]] || continue
		printf '  %-40s %6s MiB (%d bytes)\n' "${f#"$ROOT"/}" "$(($(stat -c %s "$f") / 1048576))" "$(stat -c %s "$f")"
	done
	echo "  setup code (for the setup wizard): $(cat "$SECRETS/setup-code")"
	echo "  gokrazy web interface: http://hearth:${GOKRAZY_HTTP_PORT:-8080}/ user gokrazy, password in ${SECRETS#"$ROOT"/}/gokrazy-password"
	echo "  keep ${SECRETS#"$ROOT"/}/: \`make update\` needs the same password"
}

update() {
	if [[ ! -s "$SECRETS/gokrazy-password" && -z "${GOKRAZY_PASSWORD:-}" ]]; then
		log "no gokrazy password in $SECRETS/gokrazy-password and GOKRAZY_PASSWORD is unset:"
		log "updates need the password of the image the device runs"
		exit 1
	fi
	instance "${UPDATE_HOST:-hearth}"
	check_static
	log "updating $(jq -r '.Update.Hostname' "$INST/config.json"):$(jq -r '.Update.HTTPPort' "$INST/config.json") with gok update"
	gok update
}

case "${1:-}" in
build) build ;;
update) update ;;
*)
	echo "usage: scripts/image.sh build|update" >&2
	exit 2
	;;
esac
