"""segqc command line: thin Typer commands over the library.

Exit codes: 0 success, 1 internal error, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from segqc import __version__
from segqc.config import TabularModelConfig, TrainingConfig, merged_config, read_mapping_file
from segqc.data.images import DEFAULT_MAX_VOXELS, MAX_VOXELS_ENV, set_max_voxels
from segqc.errors import ConfigError, InputError, SegQCError, memory_fault, write_fault
from segqc.outputs import OutputKind, check_output_dir, check_output_file, check_output_member
from segqc.signals import TERMINATED_EXIT_CODE, Terminated, terminate_as_interrupt
from segqc.threads import THREADS_ENV, limit_threads

if TYPE_CHECKING:
    from segqc.train import StepInfo

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _error_line(message: str, kind: str = "error") -> None:
    """The one line a user sees for bad input (white space folded, no markup read from the message)."""
    console.print(f"[bold red]{kind}:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (unknown option, bad value, missing argument) as one line and exit code 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as err:  # Typer's (vendored Click's) ClickException family
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare command group: show its help
                err.show()
            else:
                context = getattr(err, "ctx", None)
                where = f"{context.command_path}: " if context is not None else ""
                hint = f" (see '{context.command_path} --help')" if context is not None else ""
                _error_line(f"{where}{err.format_message()}{hint}")
            sys.exit(getattr(err, "exit_code", 2))
        except typer.Abort:
            console.print("[bold red]aborted[/]")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich",
                  help="segqc: find failed segmentations and anomalous table rows without ground truth.")
tabular_app = typer.Typer(help="Anomaly scores for rows of a CSV / Parquet table (GNSM).", no_args_is_help=True)
app.add_typer(tabular_app, name="tabular")


def _setup_logging(verbose: bool) -> None:
    """Warnings by default; with --verbose, progress details and (for internal errors) the traceback."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_time=False, show_path=False)], force=True)
    logging.getLogger("segqc").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def handle_errors(command: F) -> F:
    """Turn segqc errors (and full disks, quotas, read-only disks, lack of memory) into one line and exit 2; bugs 1.

    SIGTERM stops a command as Ctrl-C does (temporary files removed; exit 143).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with terminate_as_interrupt():
                return command(*args, **kwargs)
        except SegQCError as err:
            _error_line(str(err))
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt as err:
            console.print(f"[bold red]{'terminated' if isinstance(err, Terminated) else 'interrupted'}[/]; nothing "
                          "was written (a resumable checkpoint may exist)")
            raise typer.Exit(TERMINATED_EXIT_CODE if isinstance(err, Terminated) else 130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - the CLI must never print a traceback by default
            fault = write_fault(err, getattr(err, "filename", None) or "an output file") or memory_fault(err)
            if fault is not None:
                _error_line(str(fault))
                raise typer.Exit(fault.exit_code) from None
            logging.getLogger("segqc").debug("internal error", exc_info=True)
            _error_line(f"{type(err).__name__}: {err} (run with --verbose for the traceback)", "internal error")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(description: str, unit: str) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar; yields ``update(done, total, status)``.

    The bar appears at the first update, so input errors found before the work
    starts print alone; it is shown on terminals only, so logs of unattended
    runs hold just the result lines (and an error, one line).
    """
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TextColumn(f"{{task.fields[rate]}} {unit}/s"),
               TimeElapsedColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=console, disable=not console.is_terminal)  # no bars in cron logs
    task = progress.add_task(description, total=None, status="", rate="-", start=False)

    def update(done: int, total: int, status: str = "") -> None:
        if not progress.live.is_started:
            progress.start()
            progress.start_task(task)
        elapsed = progress.tasks[task].elapsed or 0.0
        rate = f"{done / elapsed:.1f}" if elapsed > 0 else "-"
        progress.update(task, total=total, completed=done, status=status, rate=rate)
        if done >= total:  # leave the finished bar on screen; rich shows one live display at a time
            progress.stop()

    try:
        yield update
    except BaseException:
        progress.live.transient = True  # on failure the error line stands alone
        raise
    finally:
        if progress.live.is_started:
            progress.stop()


@contextmanager
def training_progress(description: str = "training") -> Iterator[Callable[[StepInfo], None]]:
    """A progress bar fed by the trainer's ``on_step`` callback."""
    with progress_bar(description, "steps") as update:
        yield lambda info: update(info.step, info.total, f"loss {info.loss:.4g}")


def split_names(values: list[str] | None) -> list[str]:
    """``--opt a,b --opt c`` -> ``["a", "b", "c"]``."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def parse_labels(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``, with a clear error for anything else."""
    try:
        values = [int(v) for v in split_names([text])]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected comma-separated integer label values, e.g. 0,1,2") from None
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ConfigError(f"--labels {text!r}: {', '.join(map(str, repeated))} given more than once; expected "
                          "each label value once")
    if len(values) < 2:
        raise ConfigError(f"--labels {text!r}: expected at least two label values (background and a structure)")
    return values


def _print_failure_detection(summary: dict[str, Any]) -> None:
    """One line with the run's failure-detection figures (only when ground truth was given)."""
    detection = summary.get("failure_detection")
    if detection:
        figures = {"AUROC": "auroc", "average precision": "average_precision", "AURC": "aurc"}
        values = ", ".join(f"{name} {_number(detection[key])}" for name, key in figures.items())
        console.print(f"failure detection (Dice < {detection['dice_threshold']}): {values}", highlight=False)


def _print_predicted_dice(summary: dict[str, Any]) -> None:
    """How predicted Dice matched the ground truth, and how often verdicts were wrong (ground truth given)."""
    agreement, verdicts = summary.get("predicted_dice"), summary.get("verdict_quality")
    if agreement:
        console.print(f"predicted Dice vs true Dice: MAE {_number(agreement['mae'])}, Spearman "
                      f"{_number(agreement['spearman'])}, interval coverage {_number(agreement['coverage'])}",
                      highlight=False)
    if verdicts:
        console.print(f"verdicts vs true Dice: false alarms {_number(verdicts['false_alarms'])} of "
                      f"{verdicts['good']} good (Dice >= 0.9), misses {_number(verdicts['misses'])} of "
                      f"{verdicts['failed']} failed", highlight=False)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"segqc {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress details and tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """segqc learns what correct data look like and flags what does not."""
    _setup_logging(verbose)


# Defaults shown in --help come from the config dataclasses, so they cannot drift.
MODEL_DEFAULTS = TabularModelConfig()
TRAINING_DEFAULTS = TrainingConfig()

DeviceOption = Annotated[str | None, typer.Option(help=f"auto, cpu or cuda. (default: {TRAINING_DEFAULTS.device})")]
SeedOption = Annotated[int | None, typer.Option(help="Seed of every random choice (CPU runs are reproducible). "
                                                     f"(default: {TRAINING_DEFAULTS.seed})")]
ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads to compute with (PyTorch and BLAS); on a machine "
                                                        "shared with other jobs, cores / jobs. (default: "
                                                        f"${THREADS_ENV} when set, else all cores)")]
MaxVoxelsOption = Annotated[int | None, typer.Option(help="Refuse image / mask files holding more values than this "
                                                          "(checked before decoding). (default: "
                                                          f"${MAX_VOXELS_ENV} when set, else "
                                                          f"{DEFAULT_MAX_VOXELS[2]:,} for 2D and "
                                                          f"{DEFAULT_MAX_VOXELS[3]:,} for 3D files)")]


def computing(threads: int | None, max_voxels: int | None = None) -> None:
    """Settings every computing command applies first: the thread cap and the file-size limit."""
    limit_threads(threads)
    if max_voxels is not None and max_voxels < 1:
        raise ConfigError(f"--max-voxels {max_voxels}: expected at least 1")
    set_max_voxels(max_voxels)


@contextmanager
def checkpoints_for(out: Path, is_writer: bool = True) -> Iterator[Path]:
    """The checkpoint folder beside a model ``out``: removed after success, and after bad input if this run made it.

    An interrupted run (Ctrl-C, a crash) keeps its checkpoint for ``--resume``.
    """
    from segqc.train import checkpoint_folder, discard_checkpoints

    folder = checkpoint_folder(out)
    existed = folder.exists()
    try:
        yield folder
    except SegQCError:
        if is_writer and not existed:
            discard_checkpoints(folder)
        raise
    if is_writer:
        discard_checkpoints(folder)


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
    from segqc.demo import run_demo

    computing(threads)
    with training_progress() as on_step, progress_bar("scoring", "cases") as on_case:
        run = run_demo(out, fast, seed, device or "auto", on_stage=lambda text: console.print(f"[bold]>[/] {text}"),
                       on_step=on_step, on_case=on_case)
    counts = run.summary["verdicts"]
    console.print(f"[bold]verdicts:[/] {counts['pass']} pass, {counts['review']} review, {counts['fail']} fail, "
                  f"{counts['error']} error", highlight=False)
    table = Table(title="how the anomaly score tracks ground-truth metrics")
    for column in ("metric", "Pearson", "Spearman", "Pearson top-K", "Spearman top-K"):
        table.add_column(column)
    for metric, values in run.summary.get("correlations", {}).items():
        table.add_row(metric, *[_number(values.get(k)) for k in ("pearson", "spearman", "pearson_top_k",
                                                                  "spearman_top_k")])
    console.print(table)
    _print_failure_detection(run.summary)
    _print_predicted_dice(run.summary)
    console.print(f"[green]report:[/] {run.report / 'report.html'}", highlight=False)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@app.command("train")
@handle_errors
def train(
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of images: NIfTI, PNG, TIFF, JPEG or .npy; "
                                                                 "nnU-Net channel files case_0000.nii.gz ... work.")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of correct masks, paired with the images by case id "
                                                        "(same file name, or case.nii.gz for case_0000.nii.gz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model bundle directory to write.")],
    config: Annotated[str | None, typer.Option(help="A preset (small: CPU, 64x64 2D / 32^3 3D, minutes on 2 cores; "
                                                    "gpu: 2D 128x128 on a GPU; paper: the GNSM paper's network) or a "
                                                    "YAML file with 'data', 'model' and 'training' sections; options "
                                                    "given here override it. (default: chosen from the data and the "
                                                    "device, and printed)")] = None,
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
    from segqc.data.images import data_spatial_dims
    from segqc.detectors.image import ImageQC
    from segqc.presets import resolve_config
    from segqc.train import distributed_context, distributed_session, resolve_device

    computing(threads, max_voxels)
    check_output_dir(out, OutputKind.MODEL, [images, masks, Path(config) if config else None], mode="image")
    on_gpu = resolve_device(device or "auto").type == "cuda"
    path, chosen = resolve_config(config, lambda: 2 if slice_axis is not None else data_spatial_dims(images, masks),
                                  on_gpu)
    detector = ImageQC.from_config(path, parse_labels(labels) if labels else None, data={"slice_axis": slice_axis},
                                   training={"steps": steps, "batch_size": batch_size, "seed": seed, "device": device,
                                             "contaminated": contaminated or None})
    with distributed_session(resolve_device(detector.training.device)), \
            checkpoints_for(out, is_writer=distributed_context()[0] == 0) as checkpoints:
        rank, _ = distributed_context()
        with progress_bar("preparing", "cases") as on_case, training_progress(f"training ({chosen})") as on_step:
            detector.fit_folders(images, masks, on_case=on_case, on_step=on_step, checkpoint_dir=checkpoints,
                                 resume=resume, group_pattern=group_pattern)
        if rank == 0:
            detector.save(out)
    if rank == 0:
        summary = detector.training_
        verdicts = (f"verdicts from predicted Dice vs {detector._model_config.dice_threshold:g}"
                    if detector.quality_ is not None else
                    f"review > {detector.calibration_.review:.4g}, fail > {detector.calibration_.fail:.4g}")
        console.print(f"[green]model written to[/] {out}  (trained with {chosen}, {summary['steps']} steps in "
                      f"{summary['seconds']:.0f} s, best step {summary['best_step']}; {summary['train_rows']} "
                      f"training / {summary['val_rows']} held-out cases from {summary['train_sources']} / "
                      f"{summary['val_sources']} sources; labels {detector.labels_}; {verdicts})", highlight=False)


SegmenterOption = Annotated[str | None, typer.Option(
    "--segmenter", help="deeplabv3_mobilenet_v3_large | deeplabv3_resnet50 | deeplabv3_resnet101 | torchscript:PATH | "
                        "monai:NAME (e.g. monai:UNet) | python:module:callable | an installed plugin name.")]
WeightsOption = Annotated[Path | None, typer.Option(help="Segmenter weights: a state_dict file (read with "
                                                         "weights_only=True; nothing is downloaded).")]
SegmenterOptionsOption = Annotated[Path | None, typer.Option(
    "--segmenter-options", help="JSON/YAML with the segmenter's settings: MONAI network 'args', 'class_names', "
                                "'roi_size' for sliding-window inference...")]
ClassMapOption = Annotated[Path | None, typer.Option(help="JSON/YAML mapping segmenter classes (index or name) to "
                                                          "label values, e.g. {map: {background: 0, person: 1}, "
                                                          "default: 0}.")]


def run_segmenter(spec: str, images: Path, out: Path, weights: Path | None, options: Path | None,
                  class_map: Path | None, batch_size: int, device: str | None,
                  model_labels: list[int] | None = None) -> Any:
    """Load a segmenter and write its masks for every image (shared by 'segment' and 'score')."""
    from segqc.segmenters import load_class_map, load_segmenter, segment_folder
    from segqc.train import resolve_device

    torch_device = resolve_device(device or "auto")
    segmenter = load_segmenter(spec, weights, options, torch_device)
    mapping = load_class_map(class_map, segmenter.class_names) if class_map else None
    if mapping is None and model_labels is not None and len(segmenter.class_names) > len(model_labels):
        raise ConfigError(f"--segmenter {spec} has {len(segmenter.class_names)} classes but the QC model knows "
                          f"labels {model_labels}; give --class-map FILE mapping segmenter classes to those labels")
    with progress_bar("segmenting", "images") as update:
        run = segment_folder(segmenter, images, out, batch_size, torch_device, mapping,
                             on_case=lambda _case, done, total: update(done, total))
    for case_id, message in run.failures:
        console.print(f"[yellow]skipped[/] {case_id}: {message}", highlight=False, soft_wrap=True)
    if not run.written:
        raise InputError(f"{images}: the segmenter produced no mask ({len(run.failures)} image(s) failed)")
    return run


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
    computing(threads, max_voxels)
    check_output_dir(out, OutputKind.MASKS, [images, weights, segmenter_options, class_map])
    run = run_segmenter(segmenter, images, out, weights, segmenter_options, class_map, batch_size, device)
    console.print(f"[green]{len(run.written)} masks written[/] to {out}"
                  + (f"; {len(run.failures)} image(s) skipped" if run.failures else ""), highlight=False)


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
    import torch.distributed as dist

    from segqc.detectors.image import ImageQC
    from segqc.scoring import ScoreOptions, check_report_output, resolved_options, score_folder
    from segqc.train import distributed_context, distributed_session, resolve_device

    computing(threads, max_voxels)
    if incremental and history is None:
        raise ConfigError("--incremental needs --history FILE, where earlier results are kept")
    if top_k < 1:
        raise ConfigError(f"--top-k {top_k}: expected at least 1")
    if dice_threshold is not None and not 0 < dice_threshold <= 1:
        raise ConfigError(f"--dice-threshold {dice_threshold}: expected a Dice in (0, 1]")
    if fail_on is not None and fail_on < 0:
        raise ConfigError(f"--fail-on {fail_on}: expected a number of cases >= 0")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: expected at least 1")
    if (predictions is None) == (segmenter is None):
        raise ConfigError("give either a PREDICTIONS folder or --segmenter SPEC (not both)")
    qc = ImageQC.load(model, device=device)
    options = resolved_options(qc, ScoreOptions(ground_truth, top_k, dice_threshold, verdicts, fail_on, history,
                                                incremental))
    check_report_output(qc, predictions, images, out, options)
    with distributed_session(resolve_device(qc._training_config.device)) as sharded:
        rank, _ = distributed_context()
        if segmenter is not None:
            predictions = out.with_name(f"{out.name}.predictions")
            check_output_dir(predictions, OutputKind.MASKS, [images, model, weights, segmenter_options, class_map],
                             option="--out (segmenter masks)")
            if rank == 0:
                run_segmenter(segmenter, images, predictions, weights, segmenter_options, class_map, batch_size,
                              device, qc.labels_)
            if sharded:
                dist.barrier()
        with progress_bar("reading", "cases") as on_case:
            run = score_folder(qc, predictions, images, out, options, on_case)
    if rank != 0:
        return
    summary = run.summary
    counts = summary["verdicts"]
    console.print(f"[green]{summary['run']['cases']} cases[/] ({summary['run']['skipped_unchanged']} unchanged, "
                  f"reused): {counts['pass']} pass, {counts['review']} review, {counts['fail']} fail, "
                  f"{counts['error']} error -> {out / 'report.html'}", highlight=False)
    _print_failure_detection(summary)
    _print_predicted_dice(summary)
    if run.exit_code:
        console.print(f"[bold red]{counts['fail']} cases failed QC[/] (more than --fail-on {fail_on})")
    raise typer.Exit(run.exit_code)


@app.command("report")
@handle_errors
def report(
    directory: Annotated[Path, typer.Argument(help="Report directory written by 'segqc score'.")],
    history: Annotated[Path | None, typer.Option(help="SQLite history for the trend chart.")] = None,
) -> None:
    """Re-render report.html from a report directory's scores.csv and summary.json."""
    from segqc.history import RunHistory
    from segqc.report import render_report
    from segqc.report.html import REPORT_FILE, read_summary

    check_output_member(directory, REPORT_FILE, OutputKind.REPORT, "DIRECTORY")  # only report.html is replaced
    runs = None
    if history is not None:
        if not history.is_file():
            raise InputError(f"{history}: history database not found")
        runs = RunHistory(history).runs(read_summary(directory / "summary.json")["model"]["id"])
    path = render_report(directory, runs)
    console.print(f"[green]report written to[/] {path}", highlight=False)


@tabular_app.command("fit")
@handle_errors
def tabular_fit(
    data: Annotated[Path, typer.Argument(help="Training table: CSV (.csv, .tsv) or Parquet (.parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model bundle directory to write.")],
    config: Annotated[Path | None, typer.Option(help="YAML file with 'model' and 'training' sections; "
                                                     "command-line options override it.")] = None,
    method: Annotated[str | None, typer.Option(help="msma: score norms at several noise scales; kdsm: one "
                                                    "scale, kurtosis-scaled for continuous columns. Both compare "
                                                    "each column's norms with the training rows'. "
                                                    f"(default: {MODEL_DEFAULTS.method})")] = None,
    steps: Annotated[int | None, typer.Option(help=f"Training steps. (default: {TRAINING_DEFAULTS.steps})")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Rows per training step. (default: {TRAINING_DEFAULTS.batch_size})")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate (AdamW, cosine decay). (default: {TRAINING_DEFAULTS.lr:g})")] = None,
    width: Annotated[int | None, typer.Option(help=f"Hidden width of the score network. (default: {MODEL_DEFAULTS.width})")] = None,
    depth: Annotated[int | None, typer.Option(help=f"Residual blocks of the score network. (default: {MODEL_DEFAULTS.depth})")] = None,
    levels: Annotated[int | None, typer.Option(help=f"Noise levels, geometric scales {MODEL_DEFAULTS.sigma_max:g} -> {MODEL_DEFAULTS.sigma_min:g} (msma). "
                                                    f"(default: {MODEL_DEFAULTS.levels})")] = None,
    loss: Annotated[str | None, typer.Option(help=f"Categorical loss with gumbel noise: kl or mse. (default: {MODEL_DEFAULTS.loss})")] = None,
    categorical: Annotated[list[str] | None, typer.Option(help="Columns to treat as categorical "
                                                               "(repeat or comma-separate).")] = None,
    continuous: Annotated[list[str] | None, typer.Option(help="Columns to treat as continuous.")] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="Columns to leave out.")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column of row ids (left out of the model, "
                                                       "copied to the scores).")] = None,
    contaminated: Annotated[bool, typer.Option(help="Training data contain anomalies: EMA-teacher "
                                                    f"filtering keeps the {TRAINING_DEFAULTS.filter_keep:.0%} "
                                                    "most typical rows of each batch.")] = False,
    val_fraction: Annotated[float | None, typer.Option(help="Rows held out for checkpoint selection and "
                                                            f"threshold calibration. (default: {TRAINING_DEFAULTS.val_fraction})")] = None,
    review_quantile: Annotated[float | None, typer.Option(help="Held-out quantile above which a row is "
                                                               f"'review'. (default: {MODEL_DEFAULTS.review_quantile})")] = None,
    fail_quantile: Annotated[float | None, typer.Option(help="Held-out quantile above which a row is "
                                                             f"'fail'. (default: {MODEL_DEFAULTS.fail_quantile})")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from OUT's checkpoint.")] = False,
    seed: SeedOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Learn what normal rows look like from a table and write a model bundle.

    Column types are inferred (text, booleans and integers with few values are
    categorical; other numbers continuous) unless given with --categorical,
    --continuous or --ignore. Example:

        segqc tabular fit data.csv --out model/ --id-column patient_id
    """
    from segqc.detectors.tabular import TabularQC

    computing(threads)
    check_output_dir(out, OutputKind.MODEL, [data, config], mode="tabular")
    sections = read_mapping_file(config, ("model", "training"), "config file") if config else {}
    model_cfg = merged_config(TabularModelConfig, sections, "model", {
        "method": method, "width": width, "depth": depth, "levels": levels, "loss": loss,
        "review_quantile": review_quantile, "fail_quantile": fail_quantile})
    train_cfg = merged_config(TrainingConfig, sections, "training", {
        "steps": steps, "batch_size": batch_size, "lr": lr, "val_fraction": val_fraction, "seed": seed,
        "device": device, "contaminated": contaminated or None})
    detector = TabularQC(model_cfg, train_cfg, split_names(categorical), split_names(continuous),
                         split_names(ignore), id_column)
    with checkpoints_for(out) as checkpoints:
        with progress_bar("reading", "items") as on_read, training_progress() as on_step:
            detector.fit(data, on_step=on_step, checkpoint_dir=checkpoints, resume=resume, on_read=on_read)
        detector.save(out)
    schema = detector.schema_
    console.print(f"[green]model written to[/] {out}  ({len(schema.categorical)} categorical, "
                  f"{len(schema.continuous)} continuous columns; best step {detector.training_['best_step']}; "
                  f"review > {detector.calibration_.review:.4g}, fail > {detector.calibration_.fail:.4g})",
                  highlight=False)


@tabular_app.command("score")
@handle_errors
def tabular_score(
    data: Annotated[Path, typer.Argument(help="Table to score, with the columns the model was fitted on.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model bundle written by 'segqc tabular fit'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV of scores to write: id (or row), score, "
                                                          "rank, verdict, unseen_categories, top_column, top_share, norm_1..L.")],
    device: DeviceOption = None,
    top: Annotated[int, typer.Option(help="Most anomalous rows to show on the terminal.")] = 5,
    threads: ThreadsOption = None,
) -> None:
    """Score every row of a table: higher = more anomalous.

    Writes one row per input row, in input order. Verdicts use the thresholds
    calibrated at fit time (pass / review / fail). Example:

        segqc tabular score new.csv --model model/ --out scores.csv
    """
    from segqc.csvfiles import write_csv
    from segqc.detectors.tabular import TabularQC
    from segqc.outputs import owned_file

    computing(threads)
    if top < 0:
        raise ConfigError(f"--top {top}: expected a number of rows >= 0")
    check_output_file(out, [data, model])
    detector = TabularQC.load(model, device=device)
    with progress_bar("reading", "items") as on_read:
        result = detector.score_table(data, on_read=on_read)
    with owned_file(out) as target:
        write_csv(result, target)
    counts = result["verdict"].value_counts()
    console.print(f"[green]{len(result)} rows scored[/] -> {out}: " + ", ".join(
        f"{counts.get(v, 0)} {v}" for v in ("pass", "review", "fail")), highlight=False)
    if top > 0:
        table = Table(title=f"top {min(top, len(result))} most anomalous rows")
        shown = [*result.columns[:5], "top_column"]
        for column in shown:
            table.add_column(str(column))
        for _, row in result.nsmallest(top, "rank").iterrows():
            table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row[shown]])
        console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="segqc")
