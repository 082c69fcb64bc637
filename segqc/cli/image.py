"""Commands on images and masks: demo, train, segment, score, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segqc.cli.app import app
from segqc.cli.options import (
    ClassMapOption,
    DeviceOption,
    MaxVoxelsOption,
    SeedOption,
    SegmenterOption,
    SegmenterOptionsOption,
    ThreadsOption,
    WeightsOption,
    computing,
    parse_labels,
)
from segqc.cli.terminal import console, handle_errors, print_quality_lines, progress_bar, training_progress


@app.command("demo")
@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the generated data, model and report.")]
    = Path("segqc-demo"),
    fast: Annotated[bool, typer.Option(help="A smaller run that finishes in under a minute.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 0,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
) -> None:
    """See segqc work on built-in data: generate phantoms, train, score, report.

    Writes synthetic CT-like (image, mask) pairs and predictions with labelled
    failures (over/under-segmentation, missing structures, shifts, class swaps,
    empty masks...), trains the small 2D model, scores the predictions against
    ground truth and writes OUT/report/report.html.
    """
    from segqc.jobs.demo import run_demo

    computing(threads)
    with training_progress() as on_step, progress_bar("scoring", "cases") as on_case:
        run = run_demo(out, fast, seed, device or "auto", on_stage=lambda text: console.print(f"[bold]>[/] {text}"),
                       on_step=on_step, on_case=on_case)
    counts = run.summary["verdicts"]
    console.print(f"[bold]verdicts:[/] {counts['pass']} pass, {counts['review']} review, {counts['fail']} fail, "
                  f"{counts['error']} error", highlight=False)
    print_quality_lines(run.summary)
    console.print(f"[green]report:[/] {run.report / 'report.html'}", highlight=False)


@app.command("train")
@handle_errors
def train(
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of images: NIfTI, PNG, TIFF, JPEG or .npy; "
                                                                 "nnU-Net channel files case_0000.nii.gz ... work.")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of correct masks, paired with the images by case id "
                                                        "(same file name, or case.nii.gz for case_0000.nii.gz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model bundle directory to write.")],
    config: Annotated[str | None, typer.Option(help="A preset (small: CPU, 64x64 2D / 32^3 3D, minutes on 2 cores; "
                                                    "gpu: 2D 128x128 on a GPU; paper: the GNSM paper's network; "
                                                    "patches / patches-gpu: whole volumes in 3D patches) or a "
                                                    "YAML file with 'data', 'model' and 'training' sections; options "
                                                    "given here override it. (default: chosen from the data and the "
                                                    "device, and printed; volumes take 2D slices when their slices "
                                                    "are thick, else 3D patches)")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps. (default: the preset's or config's)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Cases per step and process. (default: the preset's or "
                                                        "config's)")] = None,
    labels: Annotated[str | None, typer.Option(help="Label values of the classes, comma-separated (e.g. 0,1,2); "
                                                    "default: learned from the training masks.")] = None,
    slice_axis: Annotated[int | None, typer.Option(help="Train a 2D model on slices of 3D volumes cut along this "
                                                        "axis (after reorientation to RAS: 0 sagittal, 1 coronal, "
                                                        "2 axial).")] = None,
    contaminated: Annotated[bool, typer.Option(help="Some training masks may be wrong: EMA-teacher filtering.")] = False,
    group_pattern: Annotated[str | None, typer.Option(help="Regular expression naming each case's source in its case "
                                                           "id (first group, or the whole match), so files cut from "
                                                           "one volume / image stay on one side of the held-out "
                                                           "split, e.g. '(patient\\d+)'. Slices cut by --slice-axis "
                                                           "are always grouped.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from OUT's checkpoint.")] = False,
    seed: SeedOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    max_voxels: MaxVoxelsOption = None,
) -> None:
    """Learn what correct (image, mask) pairs look like and write a QC model bundle.

    The bundle holds the network, the label map, the preprocessing, the
    predicted-Dice estimator and the calibrated thresholds, so scoring needs
    nothing else.
    Multi-process training: torchrun --nproc_per_node 2 $(which segqc) train ...
    Example:

        segqc train --images data/images --masks data/labels --out qc-model
        segqc train --images volumes/ --masks labels/ --slice-axis 2 --config small --out qc-model
    """
    from segqc.jobs.train import TrainOptions, train_model

    computing(threads, max_voxels)
    options = TrainOptions(config, steps, batch_size, parse_labels(labels) if labels else None, slice_axis,
                           contaminated, group_pattern, resume, seed, device)
    chosen: list[str] = []
    with progress_bar("preparing", "cases") as on_case, training_progress("training") as on_step:
        run = train_model(images, masks, out, options, on_case, on_step, on_preset=chosen.append)
    if not run.is_writer:
        return
    detector, summary = run.detector, run.detector.training_
    verdicts = (f"verdicts from predicted Dice vs {detector.model.dice_threshold:g}" if detector.quality_ is not None
                else f"review > {detector.calibration_.review:.4g}, fail > {detector.calibration_.fail:.4g}")
    console.print(f"[green]model written to[/] {out}  (trained with {run.preset}, {summary['steps']} steps in "
                  f"{summary['seconds']:.0f} s, best step {summary['best_step']}; {summary['train_rows']} "
                  f"training / {summary['val_rows']} held-out cases from {summary['train_sources']} / "
                  f"{summary['val_sources']} sources; labels {detector.labels_}; {verdicts})", highlight=False)


@app.command("segment")
@handle_errors
def segment(
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of images to segment.")],
    segmenter: Annotated[str, typer.Option(help="Segmenter spec (see 'segqc score --help' for the forms).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the masks: one per image, same case id, same "
                                                          "format and grid (palette PNG for 2D images, NIfTI with the "
                                                          "image affine for volumes).")],
    weights: WeightsOption = None,
    segmenter_options: SegmenterOptionsOption = None,
    class_map: ClassMapOption = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 4,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    max_voxels: MaxVoxelsOption = None,
) -> None:
    """Run a pretrained segmenter over a folder of images and write its masks.

        segqc segment --images imgs/ --segmenter deeplabv3_mobilenet_v3_large --weights dlv3.pth --out preds/
    """
    from segqc.jobs.segment import SegmenterRequest
    from segqc.jobs.segment import segment as segment_job

    computing(threads, max_voxels)
    request = SegmenterRequest(segmenter, weights, segmenter_options, class_map, batch_size)
    with progress_bar("segmenting", "images") as on_case:
        run = segment_job(request, images, out, device, on_case)
    print_skipped(run.failures)
    console.print(f"[green]{len(run.written)} masks written[/] to {out}"
                  + (f"; {len(run.failures)} image(s) skipped" if run.failures else ""), highlight=False)


def print_skipped(failures: list[tuple[str, str]]) -> None:
    """One line per image the segmenter skipped, with why."""
    for case_id, message in failures:
        console.print(f"[yellow]skipped[/] {case_id}: {message}", highlight=False, soft_wrap=True)


@app.command("score")
@handle_errors
def score(
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of the images the masks were predicted on.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model bundle written by 'segqc train'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory to write (scores.csv, summary.json, "
                                                          "report.html, heatmaps/, gallery/).")],
    predictions: Annotated[Path | None, typer.Argument(help="Folder of predicted masks, named like their images "
                                                              "(or use --segmenter).")] = None,
    ground_truth: Annotated[Path | None, typer.Option(help="Folder of ground-truth masks: adds Dice, MSD, HD95 and "
                                                           "how the score tracks them.")] = None,
    top_k: Annotated[int, typer.Option(help="Cases in the gallery and the top-K correlations.")] = 50,
    dice_threshold: Annotated[float | None, typer.Option(help="Dice below which a prediction counts as failed: "
                                                              "verdicts and failure-detection figures. (default: "
                                                              "the model's, 0.8 unless trained otherwise)")] = None,
    verdicts: Annotated[str | None, typer.Option(help="quality: fail when the predicted-Dice interval lies below "
                                                      "--dice-threshold, review when it straddles it, else pass; "
                                                      "score: the held-out score quantiles. (default: the "
                                                      "model's, quality)")] = None,
    verdict_by: Annotated[str | None, typer.Option(help="worst: a case fails when any structure's predicted-Dice "
                                                        "interval lies below --dice-threshold (multi-organ review); "
                                                        "mean: the interval of the mean Dice over structures. "
                                                        "(default: the model's, worst)")] = None,
    interval_coverage: Annotated[float | None, typer.Option(help="Share of true Dice values the predicted-Dice "
                                                                 "intervals should hold, e.g. 0.9. (default: the "
                                                                 "model's, 0.8 unless calibrated otherwise)")] = None,
    fail_on: Annotated[int | None, typer.Option(help="Exit with code 3 when more than this many cases get the "
                                                     "'fail' verdict (for cron / CI).")] = None,
    history: Annotated[Path | None, typer.Option(help="SQLite file that keeps one row per run (trend chart).")] = None,
    incremental: Annotated[bool, typer.Option(help="Skip cases scored before with the same model and unchanged "
                                                   "files (needs --history).")] = False,
    segmenter: SegmenterOption = None,
    weights: WeightsOption = None,
    segmenter_options: SegmenterOptionsOption = None,
    class_map: ClassMapOption = None,
    batch_size: Annotated[int, typer.Option(help="Images per segmenter forward pass.")] = 4,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    max_voxels: MaxVoxelsOption = None,
) -> None:
    """Score predicted masks against the learned distribution and write a report.

    Every case gets a score (higher = more anomalous), a rank, a verdict (pass /
    review / fail from the model's calibrated thresholds) and a heat map. A case
    that cannot be read is listed with its error and the run goes on. Exit codes:
    0 ok, 1 internal error, 2 bad input, 3 more than --fail-on cases failed QC.
    With --segmenter, the images are segmented first (masks in OUT.predictions/).
    Sharded over processes / machines: torchrun --nproc_per_node N $(which segqc) score ...
    (each rank scores every N-th case; rank 0 writes the one report).

        segqc score preds/ --images imgs/ --model qc-model --out report/ --history qc.sqlite --fail-on 5
        segqc score --segmenter monai:UNet --weights unet.pt --segmenter-options unet.yaml --images imgs/ ...
    """
    from segqc.jobs.score import ScoreOptions, score_predictions
    from segqc.jobs.segment import SegmenterRequest

    computing(threads, max_voxels)
    options = ScoreOptions(ground_truth, top_k, dice_threshold, verdicts, fail_on, history, incremental,
                           interval_coverage, verdict_by)
    request = SegmenterRequest(segmenter, weights, segmenter_options, class_map, batch_size) if segmenter else None
    with progress_bar("segmenting", "images") as on_segment, progress_bar("reading", "cases") as on_case:
        run = score_predictions(model, images, out, options, predictions, request, device, on_case, on_segment)
    if run.segmented is not None:
        print_skipped(run.segmented.failures)
    if not run.is_writer:
        return
    summary = run.summary
    counts = summary["verdicts"]
    console.print(f"[green]{summary['run']['cases']} cases[/] ({summary['run']['skipped_unchanged']} unchanged, "
                  f"reused): {counts['pass']} pass, {counts['review']} review, {counts['fail']} fail, "
                  f"{counts['error']} error -> {out / 'report.html'}", highlight=False)
    print_quality_lines(summary)
    if run.exit_code:
        console.print(f"[bold red]{counts['fail']} cases failed QC[/] (more than --fail-on {fail_on})")
    raise typer.Exit(run.exit_code)


@app.command("calibrate")
@handle_errors
def calibrate(
    predictions: Annotated[Path, typer.Argument(help="Folder of your segmenter's masks for the labelled cases, named "
                                                     "like their images.")],
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of the images.")],
    ground_truth: Annotated[Path, typer.Option(help="Folder of the ground-truth masks of the same cases.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model bundle written by 'segqc train' (left as it "
                                                              "is).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New model bundle to write; must not exist.")],
    coverage: Annotated[float | None, typer.Option(help="Share of true Dice values the intervals should hold, e.g. "
                                                        "0.9. (default: the model's, 0.8)")] = None,
    group_pattern: Annotated[str | None, typer.Option(help="Regular expression naming each case's source in its "
                                                           "case id, so files cut from one volume / image stay on one "
                                                           "side of every internal split, e.g. '(patient\\d+)'. "
                                                           "Slices of a volume are always grouped.")] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    max_voxels: MaxVoxelsOption = None,
) -> None:
    """Make the predicted-Dice intervals hold for your segmenter: calibrate them on its labelled cases.

    segqc's own intervals are calibrated on failures it makes itself; a real
    segmenter fails differently, so they may cover less than their nominal
    share. Give 20 to 200 cases of your segmenter with ground truth (e.g. its
    validation set): the new model's intervals then hold at the stated coverage
    for cases like these (split conformal), and a systematic bias of the
    predicted Dice is corrected when that lowers its error. The model given is
    never changed. Example:

        segqc calibrate val/preds --images val/images --ground-truth val/labels --model qc-model --out qc-model-cal
    """
    from segqc.jobs.calibrate import calibrate_model

    computing(threads, max_voxels)
    with progress_bar("assessing", "cases") as on_case:
        run = calibrate_model(model, predictions, images, ground_truth, out, coverage, group_pattern, device, on_case)
    interval = run.detector.quality_.calibration_.describe()
    if run.found.warning:
        console.print(f"[yellow]warning:[/] {run.found.warning}", highlight=False)
    correction = (f"bias corrected (MAE {run.found.mae_before:.3f} -> {run.found.mae_after:.3f} out of fold)"
                  if interval["bias_correction"] else f"no bias correction needed (MAE {run.found.mae_before:.3f})")
    console.print(f"[green]calibrated model written to[/] {out}  (intervals from {interval['text']}; {correction})",
                  highlight=False)


@app.command("report")
@handle_errors
def report(
    directory: Annotated[Path, typer.Argument(help="Report directory written by 'segqc score'.")],
    history: Annotated[Path | None, typer.Option(help="SQLite history for the trend chart.")] = None,
) -> None:
    """Re-render report.html from a report directory's scores.csv and summary.json."""
    from segqc.jobs.report import rerender_report

    path = rerender_report(directory, history)
    console.print(f"[green]report written to[/] {path}", highlight=False)
