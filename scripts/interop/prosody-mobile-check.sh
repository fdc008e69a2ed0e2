#!/usr/bin/env bash
# Runs scripts/interop/mobile.py (stream management, carbons, MAM, PEP)
# against Debian's Prosody 0.12 (the reference peer), so that a failure
# against Hearth means a Hearth bug, not a script bug. Prosody runs in the
# foreground on 127.0.0.1 only, on free ports, from a temporary directory, as
# the prosody user, and is stopped by its PID when this script exits. Needs root.
#
# It runs the whole scenario once on fresh accounts, then each part alone on
# the same server (as appliance/interop/mobile_test.go does on Hearth), which
# also checks the script against accounts that already have history.
#
# Usage: scripts/interop/prosody-mobile-check.sh [--keep] [mobile.py args...]
#   --keep: leave the temp dir (prosody.log, prosody.cfg.lua)
#   e.g. --debug, or --parts sm to run one part only
set -euo pipefail

cd "$(dirname "$0")/../.."
# shellcheck source=scripts/interop/prosody-lib.sh
. scripts/interop/prosody-lib.sh
if [[ "${1:-}" == "--keep" ]]; then
	prosody_keep=1
	shift
fi
extra=("$@")

prosody_require "" # no extra tools
# mod_smacks is part of Prosody 0.12. MAM: archive everything (no per-user
# opt-in), keep it a week, pages of at most 50 (0.12's default limit).
prosody_start '"roster"; "saslauth"; "tls"; "disco"; "ping"; "offline"; "smacks"; "carbons"; "mam"; "pep";' \
	'smacks_hibernation_time = 300
archive_expires_after = "1w"
default_archive_policy = true
max_archive_query_results = 50' alice bob carol

# Prosody 0.12 stores SCRAM-SHA-1 keys only.
common=(--host 127.0.0.1 --ca "$tmp/cert.pem" --mechs SCRAM-SHA-1
	--alice alice@localhost --alice-password alicepw
	--bob bob@localhost --bob-password bobpw
	--carol carol@localhost --carol-password carolpw)

if [[ ${#extra[@]} -gt 0 ]]; then
	echo "== mobile.py ${extra[*]} (STARTTLS)"
	"$PY" scripts/interop/mobile.py "${common[@]}" --port "$c2s" "${extra[@]}"
	echo "prosody-mobile-check: passed"
	exit 0
fi

echo "== mobile.py, all parts, fresh accounts (STARTTLS)"
"$PY" scripts/interop/mobile.py "${common[@]}" --port "$c2s"

for part in sm carbons mam pep; do
	echo "== mobile.py --parts $part, accounts with history (direct TLS)"
	"$PY" scripts/interop/mobile.py "${common[@]}" --port "$tls" --direct-tls --parts "$part"
done

echo "prosody-mobile-check: all passed"
