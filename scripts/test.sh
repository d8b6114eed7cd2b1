#!/usr/bin/env bash
# Set up a fresh machine and run the lint and the whole test suite.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k store -x).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
if url="$(bash "$root/scripts/services.sh")" && [ -n "$url" ]; then
    export SCN_TEST_POSTGRES="${SCN_TEST_POSTGRES:-$url}"
fi
cd "$root"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
    exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest "$@"
