#!/usr/bin/env bash
# Set up a fresh machine and run the lint and the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
