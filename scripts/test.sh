#!/usr/bin/env bash
# The whole test suite: lint, then pytest. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -k plugins -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> setting up .venv, mosquitto, PostgreSQL, Chromium and Home Assistant (scripts/setup-env.sh --tests)"
bash scripts/setup-env.sh --tests

echo "==> ruff check ."
.venv/bin/ruff check .

echo "==> pytest $*"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "==> FAILED: pytest collected no tests" >&2
elif [ "$status" -ne 0 ]; then
    echo "==> FAILED: pytest exited with status $status" >&2
else
    echo "==> all checks passed"
fi
exit "$status"
