#!/usr/bin/env bash
# Placeholder: will run the bridge against the bundled simulator and a local mosquitto.
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
echo "demo not implemented yet" >&2
exit 1
