"""Every relative link and image in the README and the docs points at something that exists.

Links inside code blocks and inline code are not links.  A ``#fragment`` must name a
heading of the target page (GitHub's anchor rules).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    if (ROOT / "bench" / "README.md").is_file():
        files.append(ROOT / "bench" / "README.md")
    return [f for f in files if "node_modules" not in f.parts]


def prose(text: str) -> str:
    """``text`` without fenced code blocks, indented code blocks or inline code."""
    kept, fenced = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fenced:
            if match and match.group(1) == fenced:
                fenced = None
            kept.append("")
            continue
        if match:
            fenced = match.group(1)
            kept.append("")
            continue
        if line.startswith(("    ", "\t")):
            kept.append("")
            continue
        kept.append(INLINE_CODE.sub("", line))
    return "\n".join(kept)


def links(text: str) -> list[str]:
    body = prose(text)
    return [m.group(1) for pattern in (LINK, REFERENCE, HTML_SRC) for m in pattern.finditer(body)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -N for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        title = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", match.group(1))
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not resolved.exists():
            problems.append(f"{target}: {resolved} does not exist")
            continue
        if fragment and resolved.suffix == ".md" and unquote(fragment).lower() not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_of_the_page_resolves(page):
    assert broken_links(page) == []


def test_the_readme_links_every_docs_page_and_shows_the_dashboard():
    readme = links((ROOT / "README.md").read_text(encoding="utf-8"))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= set(readme), sorted(pages - set(readme))
    assert "docs/img/training-tab.png" in readme


def test_the_checker_finds_a_missing_page_a_missing_image_and_a_missing_heading(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n\n## Install (for part 2)\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok too](there.md#install-for-part-2) [web](https://example.com/x)\n"
        "[gone](missing.md) ![picture](img/missing.png) [bad anchor](there.md#nowhere)\n"
        "`[in code](nope.md)`\n\n```\n[in a fence](nope.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert len(problems) == 3, problems
    assert [p.split(":", 1)[0] for p in problems] == ["missing.md", "img/missing.png", "there.md#nowhere"]
