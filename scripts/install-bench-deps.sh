#!/usr/bin/env bash
# Installs what `make bench` (scripts/bench/run.sh) needs besides the build
# dependencies; idempotent and fast on reruns.
#
# - Debian packages (apt-get update + install only when one is missing):
#   ejabberd 23.01 and prosody 0.12 (the servers Hearth is compared with),
#   openssl (their certificates), python3 (free ports, the result table),
#   procps (pgrep), util-linux (setpriv).
# - Stops and disables the distribution's own ejabberd and prosody services
#   if installing the packages started them: the bench starts its own
#   instances on free loopback ports and must not share the machine with a
#   stray server on 5222/5269/5280. Instances started by our scripts (with
#   their own --config / --config-dir) are left alone.
#
# Runs apt as root, or through sudo when not root.
set -euo pipefail

PACKAGES=(ejabberd prosody openssl python3 procps util-linux)

APT_LIB_NAME=install-bench-deps
# shellcheck source=scripts/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"

apt_install_missing "${PACKAGES[@]}"
stop_stock_service prosody
stop_stock_service ejabberd
