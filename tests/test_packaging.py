"""The installed layout: namespaced subpackages, the manifest shipped, napari finding the plugin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_copy(target: Path) -> Path:
    """The checkout's files (tracked, or new and not ignored), copied: builds leave nothing in the checkout
    and never pick up a stale ``build/`` folder."""
    import shutil

    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file() or source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)
    return target


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _source_copy(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(out), str(source)], check=True, capture_output=True)
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
        "import sys, scn_annotator.cli, scn_annotator.engine.training, scn_annotator.engine.inference,"
        " scn_annotator.app.file_operations;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {gui!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_npe2_validates_the_manifest():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "scn-annotator"], capture_output=True, text=True)
    assert result.returncode == 0 and "valid" in result.stdout, result.stdout + result.stderr


def test_sdist_holds_every_package_and_the_migrations(source, tmp_path):
    import tarfile

    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=source, check=True, capture_output=True
    )
    (sdist,) = tmp_path.glob("scn_annotator-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = subprocess.run(
        ["git", "ls-files", "db", "plugins", "scn_annotator", "napari.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked and set(tracked) <= names


#: Writes a project at schema 0002 (what an earlier release left on disk).
OLD_SCHEMA = """
import json, sys
from pathlib import Path
from sqlalchemy import text
from scn_annotator.db import migrate
from scn_annotator.db.session import Database

folder = Path(sys.argv[1])
db = Database(folder / "project.sqlite")
migrate.upgrade(db, "0002")
with db.engine.execution_options(scn_write=True).begin() as conn:
    conn.execute(text("INSERT INTO settings (key, value) VALUES ('data_dir', :d)"), {"d": json.dumps(str(folder))})
    conn.execute(text("INSERT INTO landmarks (id, \\"index\\", name, color, description)"
                      " VALUES (1, 0, 'a', '#f00', '')"))
print(migrate.current_revision(db))
"""


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment outside the checkout with the wheel installed.

    Its dependencies come from the test environment's site-packages through a path
    file (no download, and nothing of the checkout: editable installs are only seen
    through their own .pth files, which a path entry does not run).
    """
    import site
    import sysconfig

    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "deps.pth").write_text("\n".join(deps) + "\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def test_the_wheel_installed_elsewhere_runs_end_to_end(installed, sample_dir, tmp_path):
    cli = installed / "bin" / "scn-annotator"
    python = installed / "bin" / "python"

    def run(*argv):
        result = subprocess.run([str(a) for a in argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    where = run(python, "-c", "import scn_annotator.cli, scn_annotator.db.migrate as m; print(m.MIGRATIONS)")
    assert Path(where.strip()).is_relative_to(installed) and not Path(where.strip()).is_relative_to(ROOT)
    project = tmp_path / "p"
    run(cli, "init", project, "--landmarks", "15")
    labels = tmp_path / "l.csv"
    rows = (sample_dir / "labels.csv").read_text().splitlines()
    labels.write_text("\n".join([",".join(["image", *(f"L{i}_{a}" for i in range(15) for a in "xy")]), *rows[1:9]]))
    assert "24 added" in run(cli, "import", project, "--images", sample_dir / "images")
    run(cli, "import", project, "--labels", labels, "--mark-done")
    out = run(cli, "train", "--project", project, "--input-size", "64x48", "--filters", "8", "--steps", "5")
    assert "model version 1 is now the current model" in out
    assert "predicted 16 images" in run(cli, "predict", "--project", project)
    run(cli, "export", project, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().count("\n") == 9
    old = tmp_path / "old"  # a project at an older schema, upgraded by the installed migrations
    old.mkdir()
    (old / "project.json").write_text("{}")
    script = tmp_path / "old_schema.py"
    script.write_text(OLD_SCHEMA)
    assert run(python, script, old).strip() == "0002"
    assert "images" in run(cli, "status", old)
    code = (
        "import sys; from scn_annotator.db import migrate; from scn_annotator.db.session import Database;"
        "print(migrate.current_revision(Database(sys.argv[1])), migrate.head_revision())"
    )
    revision, head = run(python, "-c", code, old / "project.sqlite").split()
    assert revision == head != "0002"
    manifest = run(
        python,
        "-c",
        "from npe2 import PluginManifest; import importlib.metadata as md;"
        "print(PluginManifest.from_distribution('scn-annotator').name, md.distribution('scn-annotator')"
        ".locate_file('scn_annotator/plugins/napari.yaml'))",
    )
    name, path = manifest.split()
    assert name == "scn-annotator" and Path(path).is_relative_to(installed) and Path(path).is_file()
