#!/usr/bin/env bash
# Installs what `make image`, `make release` and `make image-test` need on a
# fresh Debian machine; idempotent and fast on reruns.
#
# - Debian packages (apt-get update + install only when one is missing):
#   gcc-aarch64-linux-gnu, libc6-dev-arm64-cross (cgo cross compiler and static
#   libc for go-sqlite3 on arm64), gcc, libc6-dev (static amd64 release build),
#   xz-utils (compressed image), e2fsprogs (formats /perm inside the image),
#   jq (writes the generated instance configs), file (checks the binaries are
#   static), openssl (random setup code and gokrazy password), curl (boot
#   test probes).
# - With --qemu, also qemu-system-arm (qemu-system-aarch64 for the boot test).
#   The EFI firmware comes from the pinned gokrazy tools module
#   (third_party/edk2-*/QEMU_EFI.fd); qemu-efi-aarch64 is installed as a
#   fallback only when that file is missing.
#
# The gok CLI is not installed here: it is a Go tool pinned in image/tools/go.mod
# and run with `go tool -modfile=image/tools/go.mod gok` (downloaded by go itself).
#
# Runs apt as root, or through sudo when not root.
set -euo pipefail

PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc libc6-dev xz-utils e2fsprogs jq file openssl curl)
if [[ "${1:-}" == --qemu ]]; then
	PACKAGES+=(qemu-system-arm)
fi

log() { printf 'install-image-deps: %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then
	SUDO=(sudo)
fi

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[[ "$status" == installed ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
	log "Debian packages already installed"
	exit 0
fi
if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
	log "not root and no sudo: install these Debian packages first: ${missing[*]}"
	exit 1
fi
log "installing: ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
