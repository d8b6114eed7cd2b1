"""Where the packages are: the one thing pyproject.toml cannot say by itself.

The repository keeps ``db/`` and ``plugins/`` at the top level (the layout asked for);
installed, they are ``scn_annotator.db`` and ``scn_annotator.plugins``, so nothing
called bare ``db`` or ``plugins`` lands in site-packages. Every subpackage under the
three roots is found, not listed by hand (``db/migrations/versions`` has no
``__init__.py``, hence the namespace search).
"""

from setuptools import find_namespace_packages, setup

ROOTS = {"scn_annotator": "scn_annotator", "scn_annotator.db": "db", "scn_annotator.plugins": "plugins"}


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])]
    return sorted(set(found))


setup(packages=packages(), package_dir=ROOTS)
