"""The store owns the schema: no SQL against Wilson's tables outside ``wilson_core/store/``.

Every string in the source of wilson-core and the plugins (tests left out) is
read with :mod:`ast`; a string that names one of Wilson's tables after an SQL
keyword (``FROM runs``, ``JOIN annotations``, ``INSERT INTO pairs``, ...) is a
statement about the schema, and must live in the store.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "wilson_core" / "store"

TABLES = (
    "interactions", "runs", "blobs", "tool_results", "annotations", "pairs", "capture_counters",
    "current_annotations", "effective_labels", "interactions_fts", "search_index_state",
    "llm_interactions", "llm_tool_results", "interaction_annotations", "_sqlite_migrations",
    "wilson_migrations",
)
SQL_ABOUT_TABLES = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|VIEW|EXISTS)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`]?(?:"
    + "|".join(TABLES)
    + r")\b(?![-_.])",
    re.IGNORECASE,
)
#: a statement starts with one of these (in upper case, as every statement of this code base does).
SQL_KEYWORD = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH|JOIN|FROM)\b")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _strings(source: str) -> list[tuple[int, str]]:
    """Every string literal (f-strings with their fixed parts joined), docstrings left out."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else " x " for v in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            found.append((node.lineno, node.value))
    return found


def sql_statements(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of the strings of ``source`` that are SQL about Wilson's tables."""
    return [
        (line, text)
        for line, text in _strings(source)
        if SQL_ABOUT_TABLES.search(text) and SQL_KEYWORD.search(text)
    ]


def source_files() -> list[Path]:
    files = [p for p in (ROOT / "wilson_core").rglob("*.py") if STORE not in p.parents]
    for plugin in (ROOT / "plugins").iterdir():
        files += [p for p in plugin.rglob("*.py") if "tests" not in p.relative_to(plugin).parts]
    return sorted(files)


def test_no_sql_about_wilsons_tables_outside_the_store():
    offenders = []
    for path in source_files():
        for line, text in sql_statements(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {' '.join(text.split())[:100]}")
    assert not offenders, "SQL about Wilson's tables outside wilson_core/store/:\n" + "\n".join(offenders)


def test_the_scan_finds_sql_in_every_form_it_is_written():
    source = '''
"""A module docstring may say: the rows come FROM interactions."""
A = "SELECT id FROM interactions WHERE run_id = ?"
B = f"SELECT {cols} FROM runs r LEFT JOIN annotations l ON l.id = r.id"
C = ("INSERT OR IGNORE INTO pairs (id) "
     "VALUES (?)")
D = "i.id IN (SELECT interaction_id FROM effective_labels e WHERE e.tier <= 1)"
E = "UPDATE runs SET deleted_at = ?"
F = "CREATE TABLE IF NOT EXISTS blobs (hash TEXT)"
OK1 = "the runs of this app"
OK2 = "interactions from the file are imported"
OK3 = "SELECT an item from the menu"
'''
    found = {line for line, _ in sql_statements(source)}
    assert found == {3, 4, 5, 7, 8, 9}
    assert all(STORE not in p.parents for p in source_files())
    assert any(p.name == "queries.py" for p in source_files())  # the dashboard is scanned
    assert any(p.parts[-3:] == ("wilson_core", "store", "labels.py") for p in STORE.rglob("labels.py"))
