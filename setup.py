"""Where the packages are: the one thing pyproject.toml cannot say by itself.

The repository keeps ``db/`` and ``plugins/`` at the top level (the layout asked for);
installed, they are ``scn_annotator.db`` and ``scn_annotator.plugins``, so nothing
called bare ``db`` or ``plugins`` lands in site-packages. Every subpackage under the
three roots is found, not listed by hand (``db/migrations/versions`` has no
``__init__.py``, hence the namespace search).

The npe2 manifest has one source, ``napari.yaml`` at the root; the plugin package
gets a plain copy of it on every build, editable or not (a symbolic link there broke
Windows checkouts), and git ignores the copy.
"""

import shutil
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).resolve().parent

ROOTS = {"scn_annotator": "scn_annotator", "scn_annotator.db": "db", "scn_annotator.plugins": "plugins"}


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])]
    return sorted(set(found))


def copy_manifest() -> None:
    source, copy = HERE / "napari.yaml", HERE / "plugins" / "napari.yaml"
    if source.is_file() and (not copy.is_file() or copy.read_bytes() != source.read_bytes()):
        shutil.copyfile(source, copy)


copy_manifest()
setup(packages=packages(), package_dir=ROOTS)
