"""The manual builds with mkdocs --strict, every fenced block is rendered as code, and the internal
design notes stay out."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.docs.docblocks import ROOT, blocks_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_design_notes_are_not_published(site):
    assert not list(site.rglob("design*")), (
        "docs/design.md is internal (exclude_docs in mkdocs.yml)"
    )
    assert "design" not in (site / "sitemap.xml").read_text()


def test_every_fenced_block_is_rendered_as_code(site):
    # A marker such as <!-- norun --> must not turn a fence into a paragraph.
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name == "design.md":
            continue
        html_path = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        html = html_path.read_text(encoding="utf-8")
        rendered = len(re.findall(r"<pre><code", html))
        assert rendered == len(blocks_of(page)), (
            f"{page.name}: {rendered} code blocks rendered of {len(blocks_of(page))}"
        )
        assert "```" not in html, f"{page.name}: a fence was not recognised"
