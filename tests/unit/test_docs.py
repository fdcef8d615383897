"""The documentation site builds in strict mode: a broken link, a missing anchor, a page left
out of the navigation or a missing included file (BENCHMARKS.md) fails, as `make docs` would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_docs_site_builds_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in ("index.html", "events.html", "architecture.html", "operations/import.html"):
        assert page in pages, sorted(pages)
    # Offline: no page loads a script, a stylesheet or a font from elsewhere.
    for page in site.rglob("*.html"):
        external = re.findall(
            r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text()
        )
        assert not external, (page.name, external)
    # The benchmarks page holds the report itself, not a link to it.
    assert "Aggregator throughput" in (site / "benchmarks.html").read_text()


def test_the_readme_is_a_first_stop_whose_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 120, "the README should stay one or two screenfuls"
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", readme):
        assert (REPO / target).exists(), target
