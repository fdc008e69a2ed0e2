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

APT_LIB_NAME=install-image-deps
# shellcheck source=scripts/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"

apt_install_missing "${PACKAGES[@]}"
