#!/usr/bin/env bash
# System packages the tests need (Xvfb and Mesa for napari, PostgreSQL for the store tests),
# installed through apt-get when missing, and a local PostgreSQL server with a test role.
# Prints the PostgreSQL URL for the tests on stdout. Needs root (or sudo) on a fresh machine.
set -euo pipefail
sudo=""
as_postgres=(runuser -u postgres --)
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
    as_postgres=(sudo -u postgres)
fi
# Qt's xcb platform plugin (PyQt5 wheels) needs these X libraries beside Xvfb and Mesa.
gui=(xvfb xauth libgl1-mesa-dri libgl1 libegl1 libdbus-1-3 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1
     libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0)
missing=()
for pkg in "${gui[@]}" postgresql; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q "${missing[@]}" >&2 \
        || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q "${missing[@]}" >&2; }
fi
if command -v pg_lsclusters >/dev/null 2>&1; then
    read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
    if [ "$status" != "online" ]; then
        $sudo pg_ctlcluster "$version" "$cluster" start >&2
    fi
    "${as_postgres[@]}" psql -q -p "$port" -tc "SELECT 1 FROM pg_roles WHERE rolname = 'scn'" | grep -q 1 \
        || "${as_postgres[@]}" psql -q -p "$port" -c "CREATE ROLE scn LOGIN PASSWORD 'scn' SUPERUSER" >&2
    echo "postgresql://scn:scn@localhost:$port/postgres"
fi
