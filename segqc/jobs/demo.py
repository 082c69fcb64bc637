"""``segqc demo``: the whole job on built-in phantoms, in minutes on a laptop CPU.

1. write synthetic training pairs and predictions with graded, labelled
   failures (:mod:`segqc.synthetic.phantoms`) as PNG files;
2. train the small 2D model (the ``image2d-small`` network) on the training pairs;
3. score the predictions with ground truth and write the full report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from segqc.atomic import rebuilt_in_place
from segqc.config import ImageModelConfig, TrainingConfig, merged_config
from segqc.data.preprocess import PreprocessConfig
from segqc.detectors.image import ImageQC
from segqc.fitting.trainer import StepInfo
from segqc.jobs.score import ScoreOptions, ScoreRun, score_folder
from segqc.manifests import DEMO_PARTS, OutputKind, remove_owned, write_marker
from segqc.outputs import check_output_dir, owned_directory
from segqc.synthetic import phantoms


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is."""

    spatial_size: tuple[int, int]
    training_cases: int
    prediction_cases: int
    steps: int
    top_k: int


FULL = DemoSize((64, 64), 200, 120, 500, 20)
FAST = DemoSize((32, 32), 48, 30, 100, 8)


def run_demo(out: str | Path, fast: bool = False, seed: int = 0, device: str = "auto",
             on_stage: Callable[[str], None] | None = None, on_step: Callable[[StepInfo], None] | None = None,
             on_case: Callable[[int, int], None] | None = None) -> ScoreRun:
    """Generate data, train, score and report.

    Args:
        out: Directory for ``data/``, ``model/`` and ``report/`` (new, empty, or an earlier demo's).
        fast: A smaller run (under a minute), e.g. for tests.
        seed: Seed of the data and the training.
        device: ``auto``, ``cpu`` or ``cuda``.
        on_stage: Called with a short description when a stage starts.
        on_step: Training progress callback.
        on_case: Scoring progress callback ``(done, total)``.

    Returns:
        The scoring run (table, summary, report path).

    Raises:
        ConfigError: ``seed`` or ``device`` is invalid (named as ``--seed`` / ``--device``), before anything is
            written.
    """
    size = FAST if fast else FULL
    training = merged_config(TrainingConfig, {"training": {"steps": size.steps, "batch_size": 16, "lr": 2e-3,
                                                           "val_every": 100, "checkpoint_every": 0}},
                             "training", {"seed": seed, "device": device})
    out = check_output_dir(out, OutputKind.DEMO)
    with rebuilt_in_place(out, _discard):  # not staged elsewhere: the report names the paths of its files
        return _build_demo(out, size, training, on_stage, on_step, on_case)


def _discard(folder: Path) -> None:
    """Remove a demo segqc wrote (only what its manifests list), or the empty folder it replaced."""
    if any(folder.iterdir()):
        remove_owned(folder, OutputKind.DEMO)
    else:
        folder.rmdir()


def _build_demo(out: Path, size: DemoSize, training_config: TrainingConfig, on_stage: Callable[[str], None] | None,
                on_step: Callable[[StepInfo], None] | None, on_case: Callable[[int, int], None] | None) -> ScoreRun:
    """Write the demo's ``data/``, ``model/`` and ``report/`` into the new folder ``out`` (see :func:`run_demo`)."""
    seed = training_config.seed
    out.mkdir(parents=True)
    write_marker(out, OutputKind.DEMO, DEMO_PARTS)  # data/, model/ and report/ carry their own manifests
    say = on_stage or (lambda _: None)
    say(f"writing {size.training_cases} training pairs and {size.prediction_cases} predictions to {out / 'data'}")
    training = phantoms.make_training_set(size.training_cases, size.spatial_size, seed=seed)
    predictions = phantoms.make_prediction_set(size.prediction_cases, size.spatial_size, seed=seed + 1)
    with owned_directory(out / "data", OutputKind.DATA) as staging:
        phantoms.write_cases(training, staging / "train", fmt="png")
        phantoms.write_cases(predictions, staging / "test", fmt="png")
    say(f"training the small 2D model ({size.steps} steps)")
    qc = ImageQC(ImageModelConfig(), training_config, preprocess=PreprocessConfig(spatial_size=size.spatial_size))
    qc.fit_folders(out / "data" / "train" / "images", out / "data" / "train" / "masks", on_step=on_step)
    qc = ImageQC.load(qc.save(out / "model"))
    say("scoring the predictions against ground truth")
    test = out / "data" / "test"
    return score_folder(qc, test / "predictions", test / "images", out / "report",
                        ScoreOptions(ground_truth=test / "masks", top_k=size.top_k), on_case)
