"""report.html in a real headless Chromium: the scripts run, the table pages, the images decode, panels enlarge."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
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


def _dom(tmp_path: Path, name: str, page: str) -> tuple[_DomSummary, str]:
    result = _chromium(tmp_path / f"profile-{name}", "--dump-dom", page)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _DomSummary()
    dom.feed(result.stdout)
    return dom, result.stdout


def _text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found is not None, element_id
    return found.group(1)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path / "data")
    summary = json.loads((report / "summary.json").read_text())
    earlier = json.loads(json.dumps(summary))
    earlier["run"]["started"] = "2024-12-25T10:00:00+00:00"
    page = render_report(report, history_runs=[earlier]).resolve().as_uri()

    dom, html = _dom(tmp_path, "dom", page)
    assert dom.rows == 12, html[-2000:]
    assert dom.table.get("data-sortable") == "ready" and dom.table.get("data-pages") == "1"
    assert _text_of(html, "page-status") == "Page 1 of 1" and _text_of(html, "case-count") == "1–12 of 12 cases"
    total = int(dom.body.get("data-images-total") or 0)
    assert total > 0
    assert dom.body.get("data-images-loaded") == str(total)
    # the failure-detection card leads with predicted Dice and shows summary.json's figures
    headline = re.search(r'<tr data-ranking="predicted_dice" class="headline">(.*?)</tr>', html, re.S)
    assert headline is not None
    auroc = summary["failure_detection"]["predicted_dice"]["auroc"]
    assert f'data-figure="auroc">{auroc:.3f}<' in headline.group(1)
    gallery = html[html.index('<section id="gallery">'):html.index('<section id="all-cases">')]
    assert gallery.count('class="legend"') >= 1 and "segqc's reconstruction" in gallery
    assert gallery.count('<span class="badge empty">empty prediction</span>') >= 1
    assert 'class="badge empty"' in html[html.index("<tbody>"):]  # the table marks the empty prediction too

    shot = tmp_path / "shot.png"
    result = _chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000", page)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert len(image.convert("L").getcolors()) > 50  # not a blank page


def test_enlarged_view_shows_the_panels_at_their_own_resolution(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path / "data")
    path = render_report(report)
    page = path.resolve().as_uri()
    card = re.search(r'<article class="case" id="case-(\d+)">\s*<div class="case-head">(?:(?!</article>).)*'
                     r'<span class="id">case_000<', path.read_text(encoding="utf-8"), re.S)
    assert card is not None  # the card of a real gallery panel (four 288-pixel panels)
    page = f"{page}#zoom-{card.group(1)}"
    dom, _ = _dom(tmp_path, "zoom", page)
    natural, shown = (dom.body.get("data-zoom") or " shown ").split(" shown ")
    assert natural == shown and natural.startswith("1182x"), dom.body
    normal, zoomed = tmp_path / "normal.png", tmp_path / "zoomed.png"
    for target, address in ((normal, page.split("#")[0]), (zoomed, page)):
        result = _chromium(tmp_path / f"profile-{target.stem}", f"--screenshot={target}", "--window-size=1280,900",
                           address)
        assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(normal) as before, Image.open(zoomed) as after:
        # the enlarged view covers the page with a dark backdrop
        assert np.asarray(after.convert("L")).mean() < 0.6 * np.asarray(before.convert("L")).mean()


def test_case_table_is_paginated(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path / "data", cases=250, errors=5)
    dom, html = _dom(tmp_path, "pages", render_report(report).resolve().as_uri())
    assert dom.rows == 100 and dom.table.get("data-pages") == "3"
    assert _text_of(html, "page-status") == "Page 1 of 3"
    assert _text_of(html, "case-count") == "1–100 of 250 cases"
