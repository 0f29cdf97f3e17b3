"""The suite runs as one pytest session over every tests folder (core, plugins, examples).

Each folder has its own ``conftest.py``, and which of them Python calls ``conftest`` depends
on the order pytest loads them: a test that imports from ``conftest`` passes alone and
fails in CI.  Shared helpers live in uniquely named modules (``proxy_support``,
``dashboard_testdata``, ``wilson_gguf.testing``...).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = [ROOT / "tests", *ROOT.glob("plugins/*/tests"), *ROOT.glob("docs/examples/*/tests")]


def imports_of_conftest(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "conftest":
            lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(alias.name == "conftest" for alias in node.names):
            lines.append(node.lineno)
    return lines


def test_no_test_imports_from_a_conftest():
    found = [f"{path.relative_to(ROOT)}:{line}"
             for folder in FOLDERS for path in sorted(folder.rglob("*.py"))
             for line in imports_of_conftest(path)]
    assert found == [], "import shared helpers from a uniquely named module, not conftest: " + ", ".join(found)


def test_the_check_sees_both_import_forms(tmp_path):
    sample = tmp_path / "test_x.py"
    sample.write_text("import conftest\nfrom conftest import helper\n\ndef f():\n    from conftest import g\n")
    assert imports_of_conftest(sample) == [1, 2, 5]
