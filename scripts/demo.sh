#!/usr/bin/env bash
# Set up a fresh machine and run the main job: the napari app on a generated sample project.
#
# The first run generates phantom hand radiographs, annotates 16 of them with their true
# landmarks and trains the first model in a background worker (a few minutes on a CPU),
# then opens napari on the project. Later runs reuse the project and open it at once.
# Without a display, the headless part still runs and the script says how to see the app.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cli="$root/.venv/bin/scn-annotator"
demo="${SCN_DEMO_DIR:-$root/scn-demo}"
if [ ! -f "$demo/project/project.json" ]; then
    "$cli" demo --dir "$demo" "$@"
fi
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    echo
    echo "No display here, so napari cannot open. The project is ready in $demo/project:"
    echo "  on a machine with a screen:   $cli gui $demo/project"
    echo "  over ssh:                     ssh -X, then the same command"
    echo "  on a virtual screen:          xvfb-run -a $cli gui $demo/project  (nothing to see, but it runs)"
    echo "  screenshots of it:            xvfb-run -a $root/.venv/bin/python scripts/screenshots.py"
    exit 0
fi
exec "$cli" gui "$demo/project"
