"""The installed layout: namespaced subpackages, the manifest shipped, napari finding the plugin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (found,) = out.glob("scn_annotator-*.whl")
    return found


def test_wheel_is_namespaced_and_ships_the_manifest(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"scn_annotator"}  # no bare db/ or plugins/ in site-packages
    assert "scn_annotator/db/__init__.py" in names
    assert "scn_annotator/plugins/__init__.py" in names
    manifest = zipfile.ZipFile(wheel).read("scn_annotator/plugins/napari.yaml").decode()
    assert manifest == (ROOT / "napari.yaml").read_text()  # a copy of the root file, not a link
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "scn-annotator = scn_annotator.plugins:napari.yaml" in text
    assert "scn-annotator = scn_annotator.cli:main" in text


def test_installed_package_resolves_outside_the_checkout(tmp_path):
    code = (
        "import importlib.util, scn_annotator.db, scn_annotator.plugins;"
        "print(importlib.util.find_spec('db'), importlib.util.find_spec('plugins'));"
        "from npe2 import PluginManifest;"
        "print(PluginManifest.from_distribution('scn-annotator').name)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None", "scn-annotator"]


def test_core_does_not_import_qt(tmp_path):
    gui = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui")
    code = (
        "import sys, scn_annotator.cli, scn_annotator.training, scn_annotator.inference,"
        " scn_annotator.pipeline;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {gui!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_npe2_validates_the_manifest():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "scn-annotator"], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0 and "valid" in result.stdout, result.stdout + result.stderr
