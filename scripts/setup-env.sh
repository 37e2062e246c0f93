#!/usr/bin/env bash
# Prepare what the demo and the tests need: mosquitto and .venv with octolux
# installed (plus test extras); with --tests also the real components the
# end-to-end tests run: PostgreSQL, Chromium and Home Assistant Core in .venv-ha
# (scripts/setup-ha.sh). Idempotent; a second run takes about a second.
#
#   bash scripts/setup-env.sh          # what the demo needs (scripts/demo.sh)
#   bash scripts/setup-env.sh --tests  # everything the test suite needs (scripts/test.sh)
#   . scripts/setup-env.sh             # set up, then put .venv/bin first on PATH in this shell
#
# Install mode: `pip install -e . --config-settings editable_mode=compat`.
# With our flat layout (required by the design card):
#   - plain `pip install -e .` gives setuptools' import-hook finder; twistd scans only
#     real sys.path entries for twisted/plugins/, so both plugins are MISSING from
#     `twistd --help`;
#   - editable_mode=strict lists the plugins, but imports go through a link tree under
#     build/, so a NEW module (octolux/foo.py) is invisible until reinstalled;
#   - a plain `pip install .` copies the code, so every edit needs a reinstall.
#   - compat writes a .pth that puts the repo root on sys.path: the plugins are found
#     and edits to existing and new modules take effect at once.
# setuptools warns that compat is "transitional". If a future setuptools drops it,
# the equivalent is a hand-written .pth file holding the repo root.

# apt-get install "$@" (with sudo unless root), waiting for other apt runs; exits on failure.
_octolux_apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    if ! { $sudo apt-get -o DPkg::Lock::Timeout=600 update -q &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 \
            install -y -q "$@"; }; then
        echo "setup-env: ERROR: could not install $*; install it by hand" \
            "(apt-get install $*) and re-run." >&2
        exit 1
    fi
}

_octolux_setup_env() (
    set -euo pipefail
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.venv"
    for_tests=no
    case "${1:-}" in
        --tests) for_tests=yes ;;
        "") ;;
        *) echo "setup-env: unknown option: $1 (the one option is --tests)" >&2; exit 2 ;;
    esac

    # mosquitto: the demo and the end-to-end tests run a real broker; the
    # mqtts test makes its certificates with openssl.
    if ! command -v mosquitto >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1 ||
        ! command -v openssl >/dev/null 2>&1; then
        echo "setup-env: mosquitto or openssl not found; installing them with apt-get" >&2
        _octolux_apt_install mosquitto mosquitto-clients openssl
        # Debian may start the system broker on :1883; we never rely on it.
    fi

    if [ "$for_tests" = yes ]; then
        if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
            echo "setup-env: PostgreSQL not found; installing it with apt-get" >&2
            _octolux_apt_install postgresql
        fi

        # Chromium: the page tests drive Debian's headless Chromium (Playwright
        # never downloads a browser of its own here).
        if ! command -v chromium >/dev/null 2>&1; then
            echo "setup-env: chromium not found; installing it with apt-get" >&2
            _octolux_apt_install chromium
        fi

        # Home Assistant Core in its own .venv-ha, for the discovery tests; cached
        # by its own stamp (a no-op once installed at the pinned versions).
        bash "$root/scripts/setup-ha.sh"
    fi

    if [ ! -x "$venv/bin/python" ]; then
        echo "setup-env: creating $venv"
        python3 -m venv "$venv"
    fi

    # Reinstall only when the packaging (or this script) changed.
    stamp="$venv/.octolux-install-stamp"
    want="$(cat "$root/setup.cfg" "$root/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi

    echo "setup-env: installing octolux[test] into $venv (editable, compat mode;" \
        "setuptools' warning that compat is transitional is expected, see this script)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet \
        -e "$root[test]" --config-settings editable_mode=compat
    # Write twisted/plugins/dropin.cache now rather than on the first twistd run.
    (cd "$root" && "$venv/bin/python" -c \
        "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))")
    echo "$want" >"$stamp"
    echo "setup-env: done"
)

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: don't leak `set -e` into the caller's shell; return instead of exit.
    if _octolux_setup_env "$@"; then
        _octolux_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
        export VIRTUAL_ENV="$_octolux_root/.venv"
        export PATH="$VIRTUAL_ENV/bin:$PATH"
        unset _octolux_root
    else
        return 1
    fi
else
    _octolux_setup_env "$@"
fi
