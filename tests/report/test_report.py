"""render_report: a self-contained report.html from a report directory (docs/report-format.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segqc.errors import InputError
from segqc.report import render_report
from segqc.report.plots import scatter_plots, score_histogram, trend_chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def write_report_dir(root: Path, cases: int = 12, errors: int = 2, top_k: int = 3,
                     ground_truth: bool = True) -> Path:
    """A fake report directory per docs/report-format.md.

    ``cases`` rows of which the last ``errors`` failed; gallery panels for the top
    ``top_k`` cases (the one ranked 3rd references a missing file), 2D heat maps
    for the ranked cases (the one ranked 2nd is a volume heat map).

    Returns:
        The report directory.
    """
    report = root / "REPORT"
    report.mkdir(parents=True)
    ok = cases - errors
    rng = np.random.default_rng(0)
    scores = np.sort(rng.uniform(0.1, 5.0, ok))[::-1]
    rows = []
    for index in range(cases):
        case_id = f"case_{index:03d}"
        if index < ok:
            rank = index + 1
            verdict = "fail" if scores[index] >= 3.4 else "review" if scores[index] >= 1.2 else "pass"
            heatmap = f"heatmaps/{case_id}.nii.gz" if rank == 2 else f"heatmaps/{case_id}.png"
            if rank != 2:
                _png(report / heatmap, (24, 24), index)
            gallery = f"gallery/{case_id}.png" if rank <= top_k else ""
            if gallery and rank != 3:
                _png(report / gallery, (96, 24), 100 + index)
            row = {"case_id": case_id, "status": "ok", "message": "", "score": f"{scores[index]:.6f}",
                   "rank": str(rank), "verdict": verdict, "norm_1": "1.0", "norm_2": "2.0",
                   "image": f"/data/img/{case_id}.png", "prediction": f"/data/pred/{case_id}.png",
                   "heatmap": heatmap, "gallery": gallery}
        else:
            row = {"case_id": case_id, "status": "error", "message": f"cannot read <{case_id}>: truncated file",
                   "score": "", "rank": "", "verdict": "error", "norm_1": "", "norm_2": "",
                   "image": f"/data/img/{case_id}.png", "prediction": f"/data/pred/{case_id}.png",
                   "heatmap": "", "gallery": ""}
        if ground_truth:
            dice = 1.0 - 0.15 * float(scores[index]) if index < ok else None
            row |= {"ground_truth": f"/data/gt/{case_id}.png",
                    "dice_mean": "" if dice is None else f"{dice:.4f}",
                    "dice_1": "" if dice is None else f"{dice:.4f}",
                    "msd": "" if dice is None or index == 1 else f"{(1 - dice) * 10:.3f}",
                    "hd95": "" if dice is None or index == 1 else f"{(1 - dice) * 30:.3f}"}
        rows.append(row)
    pd.DataFrame(rows).to_csv(report / "scores.csv", index=False)
    summary = {
        "segqc_version": "0.1.0",
        "model": {"path": "/models/m", "id": "abcdef123456", "labels": [0, 1]},
        "run": {"started": "2025-01-02T03:04:05+00:00", "seconds": 12.3, "cases": cases, "scored": ok,
                "errors": errors, "skipped_unchanged": 0},
        "thresholds": {"review": 1.2, "fail": 3.4},
        "verdicts": {name: sum(row["verdict"] == name for row in rows) for name in ("pass", "review", "fail", "error")},
        "score_quantiles": ({name: float(np.quantile(scores, q)) for name, q in
                             (("min", 0), ("p25", .25), ("median", .5), ("p75", .75), ("p95", .95), ("max", 1))}
                            if ok else {name: None for name in ("min", "p25", "median", "p75", "p95", "max")}),
        "top_k": top_k,
        "ground_truth": ground_truth,
        "exit": {"fail_on": None, "failed_cases": 3, "code": 0},
    }
    if ground_truth:
        summary["correlations"] = {
            "dice_mean": {"pearson": -0.81, "spearman": -0.79, "pearson_top_k": None, "spearman_top_k": -0.5,
                          "n": ok, "n_top_k": top_k},
            "msd": {"pearson": 0.7, "spearman": 0.6, "pearson_top_k": 0.5, "spearman_top_k": 0.4, "n": ok - 1,
                    "n_top_k": top_k},
        }
        summary["failure_detection"] = {"dice_threshold": 0.8, "failures": 4, "auroc": 0.95,
                                        "average_precision": None, "aurc": 0.05}
    (report / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return report


def _data_uris(html: str) -> list[str]:
    return re.findall(r'src="(data:image/[a-z]+;base64,[A-Za-z0-9+/=]+)"', html)


def _case_rows(html: str) -> list[str]:
    table = re.search(r'<table id="cases">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table is not None
    return re.findall(r"<tr\b", table.group(1))


def test_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    path = render_report(report)
    assert path == report / "report.html"
    html = path.read_text(encoding="utf-8")
    assert 'src="http' not in html and "src='http" not in html
    assert '<link rel="stylesheet" href=' not in html
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"url\((?!data:)", html)
    for index in range(12):
        assert f"case_{index:03d}" in html
    assert len(_case_rows(html)) == 12
    # Plots: histogram + dice/msd/hd95 scatter. Gallery: ranks 1, 2 (rank 3's panel is missing).
    # Heat maps in the gallery: ranks 1 and 3 (rank 2 is a volume: named, not shown).
    assert len(re.findall(r'<img class="gallery-image" src="data:image/png;base64,', html)) == 2
    assert len(re.findall(r'<img class="heatmap-image" src="data:image/png;base64,', html)) == 2
    assert len(_data_uris(html)) == len(re.findall(r"<img\b", html)) == 4 + 2 + 2
    assert "heatmaps/case_001.nii.gz" in html
    assert "No gallery panel available" in html
    assert "Trend over runs" not in html
    assert not list(report.glob(".report.html.*"))


def test_report_lists_errors_escaped_and_none_as_na(tmp_path: Path) -> None:
    html = render_report(write_report_dir(tmp_path)).read_text(encoding="utf-8")
    errors = html[html.index('<section id="errors">'):html.index('<section id="summary">')]
    assert "case_010" in errors and "case_011" in errors
    assert "cannot read &lt;case_010&gt;: truncated file" in errors
    assert "<case_010>" not in html
    assert "n/a" in html[html.index('<section id="summary">'):html.index('<section id="all-cases">')]
    assert "abcdef123456" in html and "badge fail" in html
    assert "AUROC" in html and "0.95" in html and "-0.810" in html


def test_report_with_history_has_trend(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    earlier = json.loads((report / "summary.json").read_text())
    earlier["run"]["started"] = "2024-12-25T10:00:00+00:00"
    html = render_report(report, history_runs=[earlier]).read_text(encoding="utf-8")
    assert "Trend over runs" in html
    assert len(_data_uris(html)) == 4 + 2 + 2 + 1


def test_report_without_ground_truth(tmp_path: Path) -> None:
    html = render_report(write_report_dir(tmp_path, ground_truth=False)).read_text(encoding="utf-8")
    assert "Score vs. ground-truth metrics" not in html
    assert "Failure detection" not in html and "Mean Dice" not in html
    assert len(_case_rows(html)) == 12
    assert len(_data_uris(html)) == 1 + 2 + 2


def test_report_with_zero_ok_cases(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path, cases=3, errors=3)
    html = render_report(report).read_text(encoding="utf-8")
    assert len(_case_rows(html)) == 3
    assert _data_uris(html) == []
    assert 'id="gallery"' not in html
    assert "case_000" in html[html.index('<section id="errors">'):]


def test_report_skips_corrupt_images(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    (report / "gallery" / "case_000.png").write_bytes(PNG_SIGNATURE + b"not really a png")
    (report / "heatmaps" / "case_000.png").unlink()
    html = render_report(report).read_text(encoding="utf-8")
    assert len(re.findall(r'<img class="gallery-image"', html)) == 1
    assert len(re.findall(r'<img class="heatmap-image"', html)) == 1


@pytest.mark.parametrize("broken", ["missing-scores", "missing-summary", "empty-scores", "no-columns",
                                    "bad-json", "json-list"])
def test_report_bad_inputs_raise_input_error(tmp_path: Path, broken: str) -> None:
    report = write_report_dir(tmp_path)
    scores, summary = report / "scores.csv", report / "summary.json"
    match = "scores.csv"
    if broken == "missing-scores":
        scores.unlink()
    elif broken == "empty-scores":
        scores.write_text("")
    elif broken == "no-columns":
        scores.write_text("a,b\n1,2\n")
    else:
        match = "summary.json"
        if broken == "missing-summary":
            summary.unlink()
        elif broken == "bad-json":
            summary.write_text("{not json")
        else:
            summary.write_text("[1, 2]")
    with pytest.raises(InputError, match=match):
        render_report(report)
    assert not (report / "report.html").exists()


def test_plots_return_png_bytes(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    table = pd.read_csv(report / "scores.csv", dtype=str, keep_default_na=False)
    plots = scatter_plots(table, 3, {"dice_mean": {"pearson": -0.8, "spearman": None}})
    assert sorted(plots) == ["dice_mean", "hd95", "msd"]
    assert all(data.startswith(PNG_SIGNATURE) for data in plots.values())
    assert score_histogram(table, {"review": 1.2, "fail": None}).startswith(PNG_SIGNATURE)
    assert score_histogram(table.iloc[0:0], {}).startswith(PNG_SIGNATURE)
    summary = json.loads((report / "summary.json").read_text())
    assert trend_chart([summary]) is None
    assert trend_chart([summary, {"run": {"started": "not a date"}}]) is None
    later = json.loads(json.dumps(summary))
    later["run"]["started"] = "2025-02-01T00:00:00"
    assert trend_chart([later, summary]).startswith(PNG_SIGNATURE)
