"""report.html in a real headless Chromium: the scripts run, the table is complete, the images decode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from test_report import write_report_dir

from segqc.report import render_report

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (apt-get install -y chromium); required when CI is set",
                allow_module_level=True)


class _DomSummary(HTMLParser):
    """Attributes of <body> and the number of rows in ``table#cases > tbody``."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.table: dict[str, str | None] = {}
        self.rows = 0
        self._in_cases = False
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body":
            self.body = attributes
        elif tag == "table" and attributes.get("id") == "cases":
            self.table = attributes
            self._in_cases = True
        elif tag == "tbody" and self._in_cases:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_cases = False


def _chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "CI is set but chromium is not installed (apt-get install -y chromium)"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=3000", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path / "data")
    earlier = json.loads((report / "summary.json").read_text())
    earlier["run"]["started"] = "2024-12-25T10:00:00+00:00"
    page = render_report(report, history_runs=[earlier]).resolve().as_uri()

    result = _chromium(tmp_path / "profile-dom", "--dump-dom", page)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _DomSummary()
    dom.feed(result.stdout)
    assert dom.rows == 12, result.stdout[-2000:]
    assert dom.table.get("data-sortable") == "ready"
    total = int(dom.body.get("data-images-total") or 0)
    assert total > 0
    assert dom.body.get("data-images-loaded") == str(total)

    shot = tmp_path / "shot.png"
    result = _chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000", page)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert len(image.convert("L").getcolors()) > 50  # not a blank page
