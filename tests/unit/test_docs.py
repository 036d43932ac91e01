"""The README stays a newcomer's five minutes, and every relative link in it and in docs/ resolves.

A link resolves when its file exists (relative to the page that holds it) and, for an anchor
(`#...`) into a markdown file, when that file has a heading whose GitHub anchor it is. GitHub's
rule: the heading's text without its markup, lowercased, punctuation dropped (letters, digits,
`_`, `-` and spaces are kept), each space turned into a hyphen; a repeated anchor gets `-1`, `-2`,
and so on.
"""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 300

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) or [text](target "title"); images too. Targets without spaces.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")


def prose_lines(text):
    """(line number, line) for the lines outside fenced code blocks."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "").replace("\\", "")
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    seen = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path):
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, m.group(1)


def is_external(target):
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) is not None


def test_slug_follows_githubs_rules():
    assert slug("Latency at 1,000 records/s, and the saturated scorer in the same run") == (
        "latency-at-1000-recordss-and-the-saturated-scorer-in-the-same-run"
    )
    assert slug("Delivery guarantee: at-least-once") == "delivery-guarantee-at-least-once"
    assert slug("The monitor's state and its dead letters") == (
        "the-monitors-state-and-its-dead-letters"
    )
    assert slug("Why `carat-shift` tilts down") == "why-carat-shift-tilts-down"
    assert slug("Load: make soak") == "load-make-soak"


def test_the_pages_are_there():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {
        "README.md",
        "docs/schema.md",
        "docs/statistics.md",
        "docs/operations.md",
        "docs/scale-out.md",
        "docs/benchmarks.md",
        "docs/limits.md",
    } <= names


def test_readme_is_short_and_names_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines, at most {MAX_README_LINES}: move the detail to docs/"
    )
    assert "`make test` runs the tests" in text
    assert "`make demo` runs the product" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for number, target in links(page):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = page if not file_part else (page.parent / unquote(file_part)).resolve()
        if not dest.exists():
            broken.append(f"line {number}: {target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            broken.append(f"line {number}: {target}: {dest.name} has no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)
