"""No module over 500 lines and no function over 80, unless its module docstring says why.

Long files and functions are where the house stops being readable; the limit is
checked, not hoped for. A reason is a line in the module docstring naming the
function and its length, as a migration's does.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("scn_annotator", "db", "plugins", "tests", "benchmarks", "scripts")
MAX_MODULE, MAX_FUNCTION = 500, 80


def _sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def oversized() -> list[str]:
    found = []
    for path in _sources():
        text = path.read_text()
        tree = ast.parse(text)
        reason = ast.get_docstring(tree) or ""
        lines = text.count("\n")
        if lines > MAX_MODULE and f"{lines} lines" not in reason:
            found.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION and not (f"``{node.name}``" in reason and f"{length} lines" in reason):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_module_or_function_is_over_the_limit_without_a_reason():
    assert oversized() == []
