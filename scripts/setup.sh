#!/usr/bin/env bash
# Create (or reuse) .venv with scn-annotator installed editable, plus the GUI and test tools.
# A second run is instant: it only reinstalls when pyproject.toml or this script changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SCN_VENV:-$root/.venv}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    python=python3.11
    command -v "$python" >/dev/null 2>&1 || python=python3
fi
stamp="$venv/.scn-setup-$(cat "$root/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

echo "setting up $venv (first run: a few minutes)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
pip install --upgrade pip
# torch first and pinned: on these machines 2.13.0 is a CPU build from a local file, while a
# range admitting newer releases would download a multi-GB CUDA build. The package itself
# only asks for a range, which the pinned install then satisfies.
pip install "${SCN_TORCH:-torch==2.13.0}"
# -qq for this one: setuptools prints an "Editable installation" notice for every flat layout (a folder
# named like the package beside setup.py), which is how this repository is laid out on purpose
pip -q install -e "$root[gui,qt,postgres,dev]"
rm -f "$venv"/.scn-setup-*
touch "$stamp"
