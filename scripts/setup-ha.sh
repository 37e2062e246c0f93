#!/usr/bin/env bash
# Install Home Assistant Core into .venv-ha, for the discovery tests
# (tests/test_homeassistant.py), which start a real `hass` against the bridge.
#
#   bash scripts/setup-ha.sh      # scripts/setup-env.sh runs it; idempotent, ~0.1 s when done
#
# Its own virtualenv: Home Assistant 2024.3 pins paho-mqtt 1.6.1, the bridge
# uses paho-mqtt 2. Every package is pinned in scripts/ha-requirements.txt
# (a `pip freeze` of a working install), so the tests run against exactly the
# same Home Assistant everywhere; `hass` runs with --skip-pip, so it never
# installs anything at run time. A first install takes about a minute and
# ~670 MB (measured: 54 s with a warm pip cache, ~80 s without). Started by the
# tests, it is up with MQTT discovery in ~5 s and takes ~145 MB of memory.
#
# To move to another release: install `homeassistant==X` with josepy 1.14.0
# and the requirements of the integrations it sets up at start into a fresh
# venv (`hass --skip-pip` logs each import that fails), check the tests pass,
# then replace ha-requirements.txt with its `pip freeze`.

set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-ha"
requirements="$root/scripts/ha-requirements.txt"

stamp="$venv/.octolux-ha-stamp"
want="$(cat "$requirements" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/hass" ]; then
    exit 0
fi

echo "setup-ha: installing Home Assistant Core into $venv (about a minute)"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# --no-deps: the file is the complete, resolved set; nothing else may come in.
"$venv/bin/python" -m pip install --quiet --no-deps -r "$requirements"
"$venv/bin/python" -m pip check >/dev/null || {
    echo "setup-ha: ERROR: the pinned set is inconsistent:" >&2
    "$venv/bin/python" -m pip check >&2
    exit 1
}
"$venv/bin/hass" --version >/dev/null
echo "$want" >"$stamp"
echo "setup-ha: done ($("$venv/bin/hass" --version))"
