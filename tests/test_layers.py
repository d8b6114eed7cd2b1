"""The layers import in one direction only: what each package may not import is listed here.

Read from the source with ``ast`` (every import, also those inside functions), so a
lazy import cannot slip past the way it would past a check of ``sys.modules``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the layer a source folder is, and the package it is installed as
FOLDERS = {
    "scn_annotator/engine": "scn_annotator.engine",
    "scn_annotator/io": "scn_annotator.io",
    "scn_annotator/active": "scn_annotator.active",
    "scn_annotator/app": "scn_annotator.app",
    "scn_annotator/cli": "scn_annotator.cli",
    "db": "scn_annotator.db",
    "plugins": "scn_annotator.plugins",
}
FORBIDDEN = {
    # the engine and io are what a headless GPU worker runs: no store, no app above them
    "engine": {"db", "app", "active", "cli", "plugins"},
    "io": {"db", "app", "active", "cli", "plugins"},
    "active": {"app", "cli", "plugins"},
    "db": {"app", "active", "cli", "plugins"},
    "app": {"cli", "plugins"},
    # the widgets go through the app layer and the store, never into the engine
    "plugins": {"engine", "cli"},
    "cli": set(),
}


def _imported(tree: ast.Module, package: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "scn_annotator":  # from scn_annotator import engine, ...
                found += [(node.lineno, f"scn_annotator.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def layer_violations(root: Path) -> list[str]:
    """Every import, under ``root``, that goes against FORBIDDEN: 'file:line imports module'."""
    out = []
    for folder, dotted in FOLDERS.items():
        layer = dotted.split(".")[-1]
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            module = ".".join([dotted, *parts])
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for line, target in _imported(ast.parse(path.read_text(), str(path)), package):
                pieces = target.split(".")
                if pieces[0] == "scn_annotator" and len(pieces) > 1 and pieces[1] in FORBIDDEN[layer]:
                    out.append(f"{path.relative_to(root)}:{line} imports {target}")
    return out


def test_every_layer_imports_only_downwards():
    assert layer_violations(ROOT) == []


def test_an_engine_module_importing_the_store_is_caught(tmp_path):
    for folder in FOLDERS:
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "scn_annotator/engine/training.py").write_text("def f():\n    from ..db.store import Project\n")
    (tmp_path / "scn_annotator/io/images.py").write_text("import scn_annotator.app.worker\n")
    (tmp_path / "plugins/_widget.py").write_text("from scn_annotator.engine.inference import Predictor\n")
    (tmp_path / "db/store.py").write_text("from scn_annotator.engine.geometry import inside_image\n")  # allowed
    assert layer_violations(tmp_path) == [
        "scn_annotator/engine/training.py:2 imports scn_annotator.db.store",
        "scn_annotator/io/images.py:1 imports scn_annotator.app.worker",
        "plugins/_widget.py:1 imports scn_annotator.engine.inference",
    ]


def test_every_source_folder_is_a_known_layer():
    folders = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "scn_annotator").glob("*/__init__.py")}
    assert folders <= set(FOLDERS), folders - set(FOLDERS)
