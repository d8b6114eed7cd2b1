#!/usr/bin/env bash
# Set up a fresh machine and run the main job: the headless pipeline on generated radiographs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/scn-annotator" demo "$@"
