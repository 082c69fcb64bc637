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
from segqc.report import heatmaps, render_report
from segqc.report.plots import quality_scatters, scatter_plots, score_histogram, trend_chart
from segqc.report.summary import summarise_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _gallery_panel(path: Path, seed: int, empty: bool) -> None:
    """A real gallery panel (PNG text chunks included) of a random 24 x 24 case with three classes."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((24, 24), np.int64)
    if not empty:
        mask[4:14, 5:15], mask[8:11, 8:11] = 1, 2
    truth = np.roll(mask, 2, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(heatmaps.gallery_png(rng.random((1, 24, 24)), mask, truth, rng.random((24, 24)) ** 4, 3,
                                          np.roll(mask, 1, axis=1)))


def write_report_dir(root: Path, cases: int = 12, errors: int = 2, top_k: int = 3,
                     ground_truth: bool = True, legacy: bool = False) -> Path:
    """A fake report directory per docs/report-format.md.

    ``cases`` rows of which the last ``errors`` failed; two foreground labels
    with predicted Dice per label (the case ranked 1st has an empty
    prediction); gallery panels for the top ``top_k`` cases (the one ranked 3rd
    references a missing file, so its heat-map overlay stands in), 2D heat maps
    for the ranked cases (the one ranked 2nd is a volume heat map). The ranking
    figures of ``summary.json`` are computed from the table as ``segqc score``
    does. ``legacy``: as segqc 0.1 wrote it (no predicted Dice, panels without
    text chunks, the anomaly score's figures unkeyed).

    Returns:
        The report directory.
    """
    report = root / "REPORT"
    report.mkdir(parents=True)
    ok = cases - errors
    rng = np.random.default_rng(0)
    scores = np.sort(rng.uniform(0.1, 5.0, ok))[::-1] ** 3
    rows = []
    for index in range(cases):
        case_id = f"case_{index:03d}"
        if index < ok:
            rank = index + 1
            verdict = "fail" if scores[index] >= 40 else "review" if scores[index] >= 2 else "pass"
            heatmap = f"heatmaps/{case_id}.nii.gz" if rank == 2 else f"heatmaps/{case_id}.png"
            if rank != 2:
                _png(report / heatmap, (24, 24), index)
            gallery = f"gallery/{case_id}.png" if rank <= top_k else ""
            if gallery and rank != 3:
                if legacy:
                    _png(report / gallery, (96, 24), 100 + index)
                else:
                    _gallery_panel(report / gallery, index, empty=rank == 1)
            row = {"case_id": case_id, "status": "ok", "message": "", "score": f"{scores[index]:.6f}",
                   "rank": str(rank), "verdict": verdict, "norm_1": "1.0", "norm_2": "2.0",
                   "image": f"/data/img/{case_id}.png", "prediction": f"/data/pred/{case_id}.png",
                   "heatmap": heatmap, "gallery": gallery}
            if not legacy:
                predicted = float(np.clip(0.95 - 0.09 * index + rng.normal(0, 0.05), 0, 1))
                row |= {"predicted_dice": f"{predicted:.4f}", "predicted_dice_low": f"{max(predicted - 0.1, 0):.4f}",
                        "predicted_dice_high": f"{min(predicted + 0.1, 1):.4f}",
                        "predicted_dice_1": f"{predicted:.4f}", "predicted_dice_2": f"{predicted ** 2:.4f}",
                        "reconstruction_dice": f"{1 - 0.05 * index:.4f}", "empty_prediction": str(int(rank == 1))}
        else:
            row = {"case_id": case_id, "status": "error", "message": f"cannot read <{case_id}>: truncated file",
                   "score": "", "rank": "", "verdict": "error", "norm_1": "", "norm_2": "",
                   "image": f"/data/img/{case_id}.png", "prediction": f"/data/pred/{case_id}.png",
                   "heatmap": "", "gallery": ""}
        if ground_truth:
            dice = 1.0 - 0.08 * index if index < ok else None
            row |= {"ground_truth": f"/data/gt/{case_id}.png",
                    "dice_mean": "" if dice is None else f"{dice:.4f}",
                    "dice_1": "" if dice is None else f"{dice:.4f}",
                    "dice_2": "" if dice is None else f"{dice ** 2:.4f}",
                    "msd": "" if dice is None or index == 1 else f"{(1 - dice) * 10:.3f}",
                    "hd95": "" if dice is None or index == 1 else f"{(1 - dice) * 30 + index ** 3:.3f}"}
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(report / "scores.csv", index=False)
    summary = {
        "segqc_version": "0.1.0",
        "model": {"path": "/models/m", "id": "abcdef123456", "labels": [0, 1, 2]},
        "run": {"started": "2025-01-02T03:04:05+00:00", "seconds": 12.3, "cases": cases, "scored": ok,
                "errors": errors, "skipped_unchanged": 0},
        "thresholds": {"review": 2.0, "fail": 40.0},
        "verdicts": {name: sum(row["verdict"] == name for row in rows) for name in ("pass", "review", "fail", "error")},
        "score_quantiles": ({name: float(np.quantile(scores, q)) for name, q in
                             (("min", 0), ("p25", .25), ("median", .5), ("p75", .75), ("p95", .95), ("max", 1))}
                            if ok else {name: None for name in ("min", "p25", "median", "p75", "p95", "max")}),
        "top_k": top_k,
        "ground_truth": ground_truth,
        "exit": {"fail_on": None, "failed_cases": 3, "code": 0},
    }
    if ground_truth and legacy:
        summary["correlations"] = {
            "dice_mean": {"pearson": -0.81, "spearman": -0.79, "pearson_top_k": None, "spearman_top_k": -0.5,
                          "n": ok, "n_top_k": top_k},
            "msd": {"pearson": 0.7, "spearman": 0.6, "pearson_top_k": 0.5, "spearman_top_k": 0.4, "n": ok - 1,
                    "n_top_k": top_k},
        }
        summary["failure_detection"] = {"dice_threshold": 0.8, "failures": 4, "auroc": 0.95,
                                        "average_precision": None, "aurc": 0.05}
    elif ground_truth and ok:
        numeric = table.apply(pd.to_numeric, errors="coerce").assign(status=table["status"], verdict=table["verdict"])
        summary |= json.loads(json.dumps(summarise_metrics(numeric, top_k, 0.8)))
        summary["predicted_dice_quantiles"] = {"min": 0.1, "p25": 0.3, "median": 0.5, "p75": 0.7, "max": 0.9}
    (report / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return report


def _data_uris(html: str) -> list[str]:
    return re.findall(r'src="(data:image/[a-z]+;base64,[A-Za-z0-9+/=]+)"', html)


def table_data(html: str) -> dict:
    """The case table's JSON as the page script reads it."""
    found = re.search(r'<script type="application/json" id="case-data">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


def test_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    path = render_report(report)
    assert path == report / "report.html"
    html = path.read_text(encoding="utf-8")
    assert 'src="http' not in html and "src='http" not in html
    assert '<link rel="stylesheet" href=' not in html
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"url\((?!data:)", html)
    data = table_data(html)
    assert sorted(row["cells"][0][0] for row in data["rows"]) == [f"case_{index:03d}" for index in range(12)]
    # Plots: histogram, predicted Dice vs Dice / HD95 / MSD, score vs Dice / HD95 / MSD. Gallery: panels of
    # ranks 1 and 2; rank 3's panel is missing and its heat-map overlay stands in.
    assert len(re.findall(r'<img class="gallery-image" src="data:image/png;base64,', html)) == 2
    assert len(re.findall(r'<img class="heatmap-image" src="data:image/png;base64,', html)) == 1
    assert len(_data_uris(html)) == len(re.findall(r"<img\b", html)) == 1 + 3 + 3 + 2 + 1
    assert "heatmaps/case_001.nii.gz" in html
    assert "Trend over runs" not in html
    assert not list(report.glob(".report.html.*"))


def _figure(row: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">([^<]*)<', row)
    assert found is not None, name
    return found.group(1)


def test_failure_detection_card_shows_every_ranking_as_in_summary_json(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    summary = json.loads((report / "summary.json").read_text())
    html = render_report(report).read_text(encoding="utf-8")
    card = html[html.index('<div class="card wide" id="failure-detection">'):html.index('<div class="cards">')]
    rows = dict(re.findall(r'<tr data-ranking="([a-z_0-9]+)"(.*?)</tr>', card, re.S))
    assert list(rows) == ["predicted_dice", "score", "reconstruction_dice", "predicted_dice_1", "predicted_dice_2"]
    assert summary["headline_ranking"] == "predicted_dice" and "headline" in rows["predicted_dice"]
    for name, row in rows.items():
        detection, correlated = summary["failure_detection"][name], summary["correlations"][name]
        for key in ("auroc", "average_precision", "aurc"):
            assert _figure(row, key) == (f"{detection[key]:.3f}" if detection[key] is not None else "n/a")
        for metric in ("dice_mean", "hd95", "msd"):
            assert _figure(row, f"spearman-{metric}") == f"{correlated[metric]['spearman']:.3f}"
            assert _figure(row, f"pearson-{metric}") == f"{correlated[metric]['pearson']:.3f}"
    lead = html[html.index('<div class="lead" id="headline">'):]
    assert f"AUROC <b>{summary['failure_detection']['predicted_dice']['auroc']:.3f}</b>" in lead[:600]


def test_gallery_cards_have_html_captions_legend_badge_and_enlarged_view(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    table = pd.read_csv(report / "scores.csv", dtype=str, keep_default_na=False).set_index("case_id")
    gallery = _section(render_report(report).read_text(encoding="utf-8"), "gallery")
    for colour in (heatmaps.PREDICTION_COLOUR, heatmaps.RECONSTRUCTION_COLOUR, heatmaps.TRUTH_COLOUR):
        assert f'stroke="{colour}"' in gallery
    cards = re.findall(r'<article class="case" id="case-(\d+)">(.*?)</article>', gallery, re.S)
    ids = [re.search(r'<span class="id">([^<]+)<', card).group(1) for _, card in cards]
    predicted = [float(table.loc[case, "predicted_dice"]) for case in ids]
    assert sorted(ids) == ["case_000", "case_001", "case_002"] and predicted == sorted(predicted)
    for (number, card), case in zip(cards, ids):
        row = table.loc[case]
        assert f"<b>{float(row['predicted_dice']):.2f}</b>" in card
        assert f"[{float(row['predicted_dice_low']):.2f}, {float(row['predicted_dice_high']):.2f}]" in card
        assert f"true Dice {float(row['dice_mean']):.2f}" in card and f"badge {row['verdict']}" in card
        assert ("empty prediction" in card) == (case == "case_000")
        assert f'<a class="open" href="#zoom-{number}"' in card and f'id="zoom-{number}"' in card
        assert f'<a href="#case-{number}">Close' in card
        if case != "case_002":  # a real panel: captions and heat scale from its PNG text chunks
            assert "ground truth + prediction" in card and "anomaly heat map" in card
            assert 'class="scale"' in card


def test_old_summary_and_panels_still_render(tmp_path: Path) -> None:
    html = render_report(write_report_dir(tmp_path, legacy=True)).read_text(encoding="utf-8")
    card = html[html.index('id="failure-detection"'):html.index('<div class="cards">')]
    rows = dict(re.findall(r'<tr data-ranking="([a-z_0-9]+)"(.*?)</tr>', card, re.S))
    assert list(rows) == ["score"] and _figure(rows["score"], "auroc") == "0.950"
    assert _figure(rows["score"], "spearman-dice_mean") == "-0.790" and _figure(rows["score"], "aurc") == "0.050"
    assert len(re.findall(r'<img class="gallery-image"', html)) == 2
    assert "Predicted Dice vs. ground truth" not in html


def test_case_table_is_json_sorted_by_predicted_dice_and_escaped(tmp_path: Path) -> None:
    html = render_report(write_report_dir(tmp_path)).read_text(encoding="utf-8")
    data = table_data(html)
    names = [column["name"] for column in data["columns"]]
    assert names[:3] == ["case_id", "predicted_dice", "verdict"] and names.index("score") > names.index("dice_mean")
    assert data["sort"] == {"column": 1, "ascending": True} and 100 in data["pageSizes"]
    assert [row["empty"] for row in data["rows"]].count(True) == 1
    assert "<case_010>" not in html and "cannot read \\u003ccase_010\\u003e" in html


def test_report_lists_errors_escaped_and_none_as_na(tmp_path: Path) -> None:
    html = render_report(write_report_dir(tmp_path)).read_text(encoding="utf-8")
    errors = html[html.index('<section id="errors">'):html.index('<section id="summary">')]
    assert "case_010" in errors and "case_011" in errors
    assert "cannot read &lt;case_010&gt;: truncated file" in errors
    assert "abcdef123456" in html and "badge fail" in html


def test_report_with_history_has_trend(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path)
    earlier = json.loads((report / "summary.json").read_text())
    earlier["run"]["started"] = "2024-12-25T10:00:00+00:00"
    html = render_report(report, history_runs=[earlier]).read_text(encoding="utf-8")
    assert "Trend over runs" in html
    assert len(_data_uris(html)) == 1 + 3 + 3 + 2 + 1 + 1


def test_report_without_ground_truth(tmp_path: Path) -> None:
    html = render_report(write_report_dir(tmp_path, ground_truth=False)).read_text(encoding="utf-8")
    assert "Anomaly score vs. ground truth" not in html and "Predicted Dice vs. ground truth" not in html
    assert 'id="failure-detection"' not in html and "True Dice" not in html
    assert len(table_data(html)["rows"]) == 12
    assert len(_data_uris(html)) == 1 + 2 + 1


def test_report_with_zero_ok_cases(tmp_path: Path) -> None:
    report = write_report_dir(tmp_path, cases=3, errors=3)
    html = render_report(report).read_text(encoding="utf-8")
    assert len(table_data(html)["rows"]) == 3
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
    assert "No gallery panel available" in html


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
    quality = quality_scatters(table, 0.8)
    assert sorted(quality) == ["dice_mean", "hd95", "msd"]
    assert all(data.startswith(PNG_SIGNATURE) for data in quality.values())
    assert quality_scatters(table.drop(columns="predicted_dice"), 0.8) == {}
    shifted = pd.to_numeric(table["predicted_dice"], errors="coerce") + 0.05
    beside = table.assign(predicted_dice_low=shifted.astype(str))
    assert quality_scatters(beside, 0.8)["dice_mean"].startswith(PNG_SIGNATURE)  # interval beside its estimate
    assert score_histogram(table, {"review": 1.2, "fail": None}).startswith(PNG_SIGNATURE)
    assert score_histogram(table.iloc[0:0], {}).startswith(PNG_SIGNATURE)
    assert score_histogram(table.iloc[0:1], {}).startswith(PNG_SIGNATURE)  # one score: no log-spaced bins
    summary = json.loads((report / "summary.json").read_text())
    assert trend_chart([summary]) is None
    assert trend_chart([summary, {"run": {"started": "not a date"}}]) is None
    later = json.loads(json.dumps(summary))
    later["run"]["started"] = "2025-02-01T00:00:00"
    assert trend_chart([later, summary]).startswith(PNG_SIGNATURE)
