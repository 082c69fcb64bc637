"""A catalogue of bad inputs across every command: one clear line, exit code 2, nothing lost.

Each catalogue entry starts from a fresh copy of a working folder (training and
test images, a model bundle, a table and its model, a user's own files), makes
one thing wrong, runs the command through Typer's CliRunner and checks that

* the exit code is 2;
* stderr is exactly one line, starting with ``error:`` and naming the file,
  column or option at fault;
* every file that existed before is byte-identical afterwards, and nothing was
  left behind (no checkpoint folder, no staging folder, no half-written output).

The tests after the catalogue cover bad cases that must *not* stop a nightly
run (they become error rows), spreadsheet-safe CSVs, environment faults (full
disk, file-size limit, locked history, SIGTERM) run as real processes, messages,
threads and concurrent history writes.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shlex
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_IMAGE_CONFIG, chained_table
from PIL import Image
from typer.testing import CliRunner

from segqc import history
from segqc.cli import app
from segqc.config import TabularModelConfig, TrainingConfig
from segqc.csvfiles import read_csv
from segqc.data.images import read_mask
from segqc.detectors.tabular import TabularQC
from segqc.manifests import DEMO_PARTS, MARKER, Manifest, OutputKind, sha256_file, write_marker
from segqc.synthetic import phantoms

runner = CliRunner()

TRAIN = "train --images {w}/train/images --masks {w}/train/masks --config {w}/config.yaml --out {w}/qc-model"
SCORE = "score {w}/test/predictions --images {w}/test/images --model {w}/model --out {w}/report"
SEGMENT = ("segment --images {w}/test/images --segmenter python:segmenter_fixtures:threshold_segmenter "
           "--segmenter-options {w}/python.yaml --out {w}/masks-out")
TABULAR_FIT = "tabular fit {w}/tab/train.csv --out {w}/tab-model --steps 20 --device cpu"
TABULAR_SCORE = "tabular score {w}/tab/train.csv --model {w}/tab/model --out {w}/tab-scores.csv"
HUGE = "99999999999999999999"
"""A whole number beyond 64 bits."""


# ---------------------------------------------------------------- the working folder


@pytest.fixture(scope="module")
def template(image_model, tmp_path_factory) -> Path:
    """The working folder every entry starts from (copied per entry)."""
    _, bundle = image_model
    root = tmp_path_factory.mktemp("bad-inputs") / "template"
    phantoms.write_cases(phantoms.make_training_set(12, (32, 32), seed=3), root / "train", fmt="png")
    phantoms.write_cases(phantoms.make_prediction_set(6, (32, 32), seed=4), root / "test", fmt="png")
    shutil.copytree(bundle, root / "model")
    (root / "config.yaml").write_text(TINY_IMAGE_CONFIG)
    (root / "python.yaml").write_text("class_names: [background, organ, lesion]\n")
    (root / "tab").mkdir()
    chained_table(80, seed=2)[0].to_csv(root / "tab" / "train.csv", index=False)
    TabularQC(TabularModelConfig(levels=3, width=16, depth=1, embedding_size=8),
              TrainingConfig(steps=10, batch_size=32, val_every=5, checkpoint_every=0, device="cpu"),
              id_column="id").fit(root / "tab" / "train.csv").save(root / "tab" / "model")
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("a user's own file\n")
    return root


def tree(root: Path) -> dict[str, str]:
    """Relative path -> content hash (link target for symbolic links, ``dir`` for folders)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[key] = "dir"
            elif not path.is_file():  # a pipe: reading it would wait for a writer
                found[key] = "special"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def invoke(argv: str, work: Path, env: dict[str, str] | None = None):
    return runner.invoke(app, shlex.split(argv.format(w=work)), env=env)


# ---------------------------------------------------------------- ways to break things


def write(relative: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def remove(relative: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return setup


def edit_json(relative: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / relative
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data, indent=2))
    return setup


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        for step in steps:
            step(work)
    return setup


def first_case(work: Path, folder: str = "train/masks") -> Path:
    return min((work / folder).iterdir())


def save_array(folder: str, array_of: Callable[[np.ndarray], np.ndarray], suffix: str = ".npy",
               source: str = "train/masks") -> Callable[[Path], None]:
    """Replace the first case of ``folder`` by an array derived from its ``source`` PNG."""
    def setup(work: Path) -> None:
        original = first_case(work, folder)
        pixels = np.asarray(Image.open(first_case(work, source)))
        original.unlink()
        np.save(original.with_suffix(suffix), array_of(pixels))
    return setup


def png_mask(mode_of: Callable[[np.ndarray], Image.Image], folder: str = "train/masks") -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = first_case(work, folder)
        mode_of(np.asarray(Image.open(path))).save(path)
    return setup


def corrupt(folder: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        first_case(work, folder).write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    return setup


def rename_first(folder: str, name: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = first_case(work, folder)
        path.rename(path.with_name(name))
    return setup


def link_loop(folder: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = first_case(work, folder)
        path.unlink()
        os.symlink(path.name, path)
    return setup


def keep_cases(count: int) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        for folder in ("train/images", "train/masks"):
            for path in sorted((work / folder).iterdir())[count:]:
                path.unlink()
    return setup


def nnunet_gap(work: Path) -> None:
    """Training images in nnU-Net naming, one case missing channel 0001 of 0000..0002."""
    for path in sorted((work / "train/images").iterdir()):
        path.rename(path.with_name(f"{path.stem}_0000.png"))
    first = min((work / "train/images").iterdir())
    shutil.copy(first, first.with_name(first.name.removesuffix("_0000.png") + "_0002.png"))


def recorded_checkpoint(relative: str, mode: str = "image") -> Callable[[Path], None]:
    """Record the file ``relative`` (``X.checkpoints/last.pt``) in its folder's marker as segqc's checkpoint of a
    ``mode`` model, as if segqc had written it (to reach the checks made when it is read)."""
    def setup(work: Path) -> None:
        path = work / relative
        Manifest(OutputKind.CHECKPOINTS.value, mode, {path.name: [sha256_file(path)]}).write(path.parent / MARKER)
    return setup


def checkpoint(payload: object, folder: str = "qc-model.checkpoints") -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        (work / folder).mkdir()
        torch.save(payload, work / folder / "last.pt")
        recorded_checkpoint(f"{folder}/last.pt")(work)
    return setup


class Hostile:
    """An object a pickle-based checkpoint could smuggle in; weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def truncated_checkpoint(work: Path) -> None:
    checkpoint({"model": {"w": torch.zeros(100)}})(work)
    path = work / "qc-model.checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:200])
    recorded_checkpoint("qc-model.checkpoints/last.pt")(work)


def huge_png(path: Path, width: int, height: int) -> None:
    """A tiny file announcing a ``width x height`` 1-bit image (decoding it would need gigabytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\x00" * ((width + 7) // 8 + 1) * height, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def bad_table(text: str) -> Callable[[Path], None]:
    return write("tab/train.csv", text)


def scored(work: Path) -> None:
    """A report written by segqc earlier."""
    result = invoke(SCORE, work)
    assert result.exit_code == 0, result.output


def scored_with_history(work: Path) -> None:
    """A report written by segqc earlier, its run kept in the history ``h.sqlite``."""
    result = invoke(SCORE + " --history {w}/h.sqlite", work)
    assert result.exit_code == 0, result.output


def report_folder(work: Path) -> None:
    """A report written by segqc earlier, in which the user then saved a file of their own."""
    scored(work)
    (work / "report" / "notes.txt").write_text("my notes\n")


def then(first: Callable[[Path], None], relative: str, content: str | bytes) -> Callable[[Path], None]:
    """Run ``first`` (e.g. an earlier segqc run), then write ``relative`` (a user's file, or an edit)."""
    return both(first, write(relative, content))


def tab_scored(work: Path) -> None:
    """A scores CSV written by segqc earlier."""
    result = invoke(TABULAR_SCORE, work)
    assert result.exit_code == 0, result.output


def segmented(work: Path) -> None:
    """Masks written by 'segqc segment' earlier."""
    result = invoke(SEGMENT, work)
    assert result.exit_code == 0, result.output


def demo_holding_a_user_file(work: Path) -> None:
    """A demo folder whose report (its own output) holds a file of the user's."""
    scored(work)
    (work / "demo").mkdir()
    write_marker(work / "demo", OutputKind.DEMO, DEMO_PARTS)
    (work / "report").rename(work / "demo" / "report")
    (work / "demo" / "report" / "heatmaps" / "circled.png").write_bytes(b"the user's")


def table(change: Callable[[pd.DataFrame], None], relative: str = "tab/train.csv") -> Callable[[Path], None]:
    """Edit the training table of the working folder."""
    def setup(work: Path) -> None:
        frame = pd.read_csv(work / relative)
        change(frame)
        frame.to_csv(work / relative, index=False)
    return setup


def fifo(relative: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        os.mkfifo(work / relative)
    return setup


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
    return change


def _empty(column: str) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame[column] = np.nan
    return change


def tiny_config(**sections: str) -> Callable[[Path], None]:
    """The tiny image config with sections replaced, e.g. ``model="{network: {nff: 8}}"``."""
    text = TINY_IMAGE_CONFIG
    for name, value in sections.items():
        lines = [line for line in text.splitlines() if not line.startswith(f"{name}:")
                 and not (name == "model" and line.startswith("  "))]
        text = "\n".join(lines) + f"\n{name}: {value}\n"
    return write("config.yaml", text)


def _thresholds(data: dict) -> None:
    data["calibration"]["review"] = data["calibration"]["fail"] = 1e9


def _format(data: dict) -> None:
    data["format_version"] = 1


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Bad:
    """One bad input: the command line ({w} = working folder), what the error line must name, how to break it,
    and environment variables set for the run."""

    name: str
    argv: str
    expect: str
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] | None = None


CATALOGUE = [
    # --- segqc train: folders and files
    Bad("train-images-missing", TRAIN.replace("train/images", "nowhere"), "{w}/nowhere: image folder not found"),
    Bad("train-images-is-a-file", TRAIN.replace("train/images", "config.yaml"), "{w}/config.yaml: expected a folder"),
    Bad("train-masks-empty", TRAIN.replace("train/masks", "empty"), "{w}/empty: no mask files",
        lambda w: (w / "empty").mkdir()),
    Bad("train-image-without-mask", TRAIN, "no mask for", rename_first("train/masks", "zzz.png")),
    Bad("train-corrupt-mask", TRAIN, "cannot read as PNG", corrupt("train/masks")),
    Bad("train-jpeg-mask", TRAIN, "JPEG masks are lossy", write("train/masks/extra.jpg", b"\xff\xd8\xff")),
    Bad("train-colour-mask", TRAIN, "colour (RGB)",
        png_mask(lambda m: Image.fromarray(np.stack([m * 40, m * 0, m * 90], -1).astype(np.uint8)))),
    Bad("train-non-integer-mask", TRAIN, "non-integer value",
        save_array("train/masks", lambda m: m.astype(np.float32) + 0.5)),
    Bad("train-nan-image", TRAIN, "NaN or infinite",
        save_array("train/images", lambda m: np.full(m.shape, np.nan, np.float32), source="train/images")),
    Bad("train-shape-mismatch", TRAIN, "train/masks",
        save_array("train/masks", lambda m: np.zeros((16, 16), np.uint8))),
    Bad("train-too-few-cases", TRAIN, "need at least 10", keep_cases(5)),
    Bad("train-mask-link-loop", TRAIN, "broken symbolic link or link loop", link_loop("train/masks")),
    Bad("train-nnunet-channel-gap", TRAIN, "lacks channel file", nnunet_gap),
    Bad("train-unexpected-labels", TRAIN + " --labels 0,1", "label"),
    Bad("train-file-over-voxel-limit", TRAIN + " --max-voxels 500", "exceeds the limit of 500"),
    # --- segqc train: config and options
    Bad("train-config-missing", TRAIN.replace("config.yaml", "nope.yaml"), "nope.yaml"),
    Bad("train-config-not-yaml", TRAIN, "config.yaml", write("config.yaml", "data: [unclosed\n")),
    Bad("train-config-unknown-key", TRAIN, "did you mean 'steps'", write("config.yaml", "training: {stepz: 3}\n")),
    Bad("train-labels-not-integers", TRAIN + " --labels a,b", "--labels"),
    Bad("train-labels-one-value", TRAIN + " --labels 1", "--labels"),
    Bad("train-steps-zero", TRAIN + " --steps 0", "steps"),
    Bad("train-steps-not-a-number", TRAIN + " --steps many", "--steps"),
    Bad("train-threads-zero", TRAIN + " --threads 0", "--threads"),
    Bad("train-unknown-option", TRAIN + " --epochs 3", "--epochs"),
    Bad("train-group-pattern-not-a-regex", TRAIN + " --group-pattern (unclosed", "--group-pattern '(unclosed'"),
    # --- segqc train: --out and checkpoints
    Bad("train-out-is-a-file", TRAIN.replace("{w}/qc-model", "{w}/config.yaml"), "--out {w}/config.yaml"),
    Bad("train-out-is-a-user-folder", TRAIN.replace("{w}/qc-model", "{w}/notes"), "not written by segqc"),
    Bad("train-out-inside-images", TRAIN.replace("{w}/qc-model", "{w}/train/images/model"), "lies inside the input"),
    Bad("train-out-is-masks", TRAIN.replace("{w}/qc-model", "{w}/train/masks"), "is the input"),
    Bad("train-out-under-a-file", TRAIN.replace("{w}/qc-model", "{w}/notes/notes.txt/model"),
        "is a file, not a folder"),
    Bad("train-checkpoints-folder-holds-user-files", TRAIN, "holds 'notes.txt'",
        write("qc-model.checkpoints/notes.txt", "mine\n")),
    Bad("train-resume-text-checkpoint", TRAIN + " --resume", "found a text file",
        both(write("qc-model.checkpoints/last.pt", "this is not a checkpoint\n"),
             recorded_checkpoint("qc-model.checkpoints/last.pt"))),
    Bad("train-checkpoints-folder-holds-a-user-last-pt", TRAIN, "holds 'last.pt', which segqc did not write",
        write("qc-model.checkpoints/last.pt", "my lightning checkpoint\n")),
    Bad("train-checkpoints-folder-holds-a-foreign-torch-file", TRAIN, "holds 'last.pt', which segqc did not write",
        lambda w: (w / "qc-model.checkpoints").mkdir() or torch.save({"state_dict": {}},
                                                                     w / "qc-model.checkpoints/last.pt")),
    Bad("train-checkpoint-of-a-tabular-model", TRAIN, "checkpoint of a model of mode 'tabular'",
        both(write("qc-model.checkpoints/last.pt", "tabular\n"),
             recorded_checkpoint("qc-model.checkpoints/last.pt", "tabular"))),
    Bad("train-checkpoint-changed-since", TRAIN, "changed since segqc wrote it",
        both(checkpoint({"model": {"w": torch.zeros(3)}}), write("qc-model.checkpoints/last.pt", "edited\n"))),
    Bad("train-out-is-dot", TRAIN.replace("{w}/qc-model", "."), "name the output itself"),
    Bad("train-out-name-too-long", TRAIN.replace("qc-model", "m" * 245), "use a shorter name"),
    Bad("train-resume-hostile-checkpoint", TRAIN + " --resume", "pickles Python objects", checkpoint({"x": Hostile()})),
    Bad("train-resume-truncated-checkpoint", TRAIN + " --resume", "damaged", truncated_checkpoint),
    Bad("train-resume-foreign-checkpoint", TRAIN + " --resume", "does not fit this run",
        checkpoint({"model": {"w": torch.zeros(3)}})),
    # --- segqc score: the model bundle
    Bad("score-model-missing", SCORE.replace("{w}/model", "{w}/nomodel"), "{w}/nomodel: not a segqc model bundle"),
    Bad("score-model-is-tabular", SCORE.replace("{w}/model", "{w}/tab/model"), "a 'tabular' model"),
    Bad("score-thresholds-edited", SCORE, "metadata was modified", edit_json("model/segqc.json", _thresholds)),
    Bad("score-format-version-edited", SCORE, "format version 1", edit_json("model/segqc.json", _format)),
    Bad("score-metadata-not-json", SCORE, "damaged metadata", write("model/segqc.json", "{not json")),
    Bad("score-weights-edited", SCORE, "checksum mismatch", write("model/weights.safetensors", b"\x00" * 64)),
    Bad("score-weights-missing", SCORE, "missing from the bundle", remove("model/weights.safetensors")),
    Bad("score-arrays-missing", SCORE, "missing from the bundle", remove("model/arrays.npz")),
    # --- segqc score: folders and options
    Bad("score-images-missing", SCORE.replace("test/images", "nowhere"), "{w}/nowhere: image folder not found"),
    Bad("score-predictions-empty", SCORE.replace("test/predictions", "empty"), "{w}/empty: no mask files",
        lambda w: (w / "empty").mkdir()),
    Bad("score-every-case-unreadable", SCORE.replace("{w}/report", "{w}/night"), "no case could be scored",
        lambda w: [p.write_bytes(b"junk") for p in (w / "test/predictions").iterdir()]),
    Bad("score-fail-on-negative", SCORE + " --fail-on -1", "--fail-on -1"),
    Bad("score-top-k-zero", SCORE + " --top-k 0", "--top-k 0"),
    Bad("score-dice-threshold-above-one", SCORE + " --dice-threshold 1.5", "--dice-threshold 1.5"),
    Bad("score-incremental-without-history", SCORE + " --incremental", "--incremental"),
    Bad("score-predictions-and-segmenter", SCORE + " --segmenter monai:UNet", "--segmenter"),
    Bad("score-neither-predictions-nor-segmenter", SCORE.replace("score {w}/test/predictions", "score"),
        "--segmenter"),
    Bad("score-history-not-a-database", SCORE + " --history {w}/notes/notes.txt", "not a segqc history database"),
    Bad("score-history-empty-user-file", SCORE + " --history {w}/notes/empty.db", "not a segqc history database",
        write("notes/empty.db", b"")),
    Bad("score-segmenter-masks-would-replace-the-ground-truth",
        SEGMENT.replace("segment", "score", 1).replace("{w}/masks-out", "{w}/report") + " --model {w}/model "
        "--ground-truth {w}/report.predictions", "is the input",
        lambda w: shutil.copytree(w / "test/masks", w / "report.predictions")),
    Bad("score-out-is-dot", SCORE.replace("{w}/report", "."), "name the output itself"),
    Bad("score-max-voxels-zero", SCORE + " --max-voxels 0", "--max-voxels"),
    Bad("score-threads-negative", SCORE + " --threads -2", "--threads"),
    Bad("score-top-k-not-a-number", SCORE + " --top-k ten", "--top-k"),
    Bad("score-unknown-verdict-rule", SCORE + " --verdicts vibes", "--verdicts 'vibes'"),
    # --- segqc score: --out
    Bad("score-out-is-predictions", SCORE.replace("{w}/report", "{w}/test/predictions"), "is the input"),
    Bad("score-out-contains-images", SCORE.replace("{w}/report", "{w}/test"), "contains the input"),
    Bad("score-out-inside-predictions", SCORE.replace("{w}/report", "{w}/test/predictions/r"), "lies inside"),
    Bad("score-out-is-a-user-folder", SCORE.replace("{w}/report", "{w}/notes"), "not written by segqc"),
    Bad("score-out-is-a-file", SCORE.replace("{w}/report", "{w}/config.yaml"), "exists and is not a folder"),
    Bad("score-out-is-the-model", SCORE.replace("{w}/report", "{w}/model"), "is the input"),
    Bad("score-out-contains-history", SCORE + " --history {w}/report/h.sqlite", "contains the input"),
    Bad("score-out-report-with-user-file", SCORE, "holds 'notes.txt'", report_folder),
    Bad("score-out-under-a-file", SCORE.replace("{w}/report", "{w}/notes/notes.txt/r"),
        "is a file, not a folder"),
    # --- segqc segment and segqc report
    Bad("segment-out-is-images", SEGMENT.replace("{w}/masks-out", "{w}/test/images"), "is the input"),
    Bad("segment-out-is-a-user-folder", SEGMENT.replace("{w}/masks-out", "{w}/notes"), "not written by segqc"),
    Bad("segment-unknown-segmenter", SEGMENT.replace("python:segmenter_fixtures:threshold_segmenter", "deeplabv4"),
        "deeplabv4"),
    Bad("segment-weights-text-file", SEGMENT.replace("python:segmenter_fixtures:threshold_segmenter",
                                                     "monai:UNet --weights {w}/notes/notes.txt"),
        "found a text file", write("python.yaml", "args: {spatial_dims: 2, in_channels: 1, out_channels: 3, "
                                                  "channels: [4, 8], strides: [2]}\n")),
    Bad("segment-options-not-yaml", SEGMENT, "python.yaml", write("python.yaml", "class_names: [a, \n")),
    Bad("report-not-a-report", "report {w}/notes", "{w}/notes: folder exists and was not written by segqc"),
    Bad("report-history-missing", "report {w}/report --history {w}/none.sqlite", "none.sqlite", scored),
    Bad("report-files-missing", "report {w}/report", "scores.csv", both(scored, remove("report/scores.csv"))),
    Bad("report-html-edited-by-the-user", "report {w}/report", "holds 'report.html', which segqc did not write",
        then(scored, "report/report.html", "<html>my annotated copy</html>")),
    Bad("report-history-empty-user-file", "report {w}/report --history {w}/notes/empty.db",
        "not a segqc history database", both(scored, write("notes/empty.db", b""))),
    Bad("report-history-summary-without-model", "report {w}/report --history {w}/h.sqlite", "names no model id",
        both(scored_with_history, edit_json("report/summary.json", lambda summary: summary.pop("model")))),
    Bad("report-folder-missing", "report {w}/nowhere", "{w}/nowhere: folder not found"),
    # --- segqc tabular fit
    Bad("tabular-fit-missing-file", TABULAR_FIT.replace("tab/train.csv", "none.csv"), "none.csv: file not found"),
    Bad("tabular-fit-empty-file", TABULAR_FIT, "empty file", bad_table("")),
    Bad("tabular-fit-not-utf8", TABULAR_FIT, "not UTF-8", write("tab/train.csv", b"a,b\n\xff\xfe,1\n" * 30)),
    Bad("tabular-fit-duplicate-columns", TABULAR_FIT, "'a' appears 2 times",
        bad_table("a,b,a\n" + "1,x,2\n" * 30)),
    Bad("tabular-fit-too-few-rows", TABULAR_FIT, "need at least", bad_table("a,b\n1,x\n2,y\n")),
    Bad("tabular-fit-unknown-column", TABULAR_FIT + " --categorical vaule", "did you mean 'value'"),
    Bad("tabular-fit-unknown-method", TABULAR_FIT + " --method magic", "magic"),
    Bad("tabular-fit-val-fraction", TABULAR_FIT + " --val-fraction 1.5", "--val-fraction 1.5"),
    Bad("tabular-fit-val-fraction-leaves-no-rows", TABULAR_FIT + " --val-fraction 0.999", "training.val_fraction 0.999"),
    Bad("tabular-fit-rows-longer-than-the-header", TABULAR_FIT, "more fields than the header's 2 column names",
        bad_table("a,b\n" + "1,x,extra\n" * 30)),
    Bad("tabular-fit-list-column-named-categorical", TABULAR_FIT.replace("train.csv", "nested.parquet")
        + " --categorical tags", "column 'tags': holds lists or records",
        lambda w: pd.DataFrame({"a": range(30), "tags": [[1, 2]] * 30}).to_parquet(w / "tab/nested.parquet")),
    Bad("tabular-fit-out-holds-the-data", TABULAR_FIT.replace("{w}/tab-model", "{w}/tab"), "contains the input"),
    Bad("tabular-fit-out-is-a-user-folder", TABULAR_FIT.replace("{w}/tab-model", "{w}/notes"),
        "not written by segqc"),
    Bad("tabular-fit-out-is-a-file", TABULAR_FIT.replace("{w}/tab-model", "{w}/config.yaml"),
        "exists and is not a folder"),
    Bad("tabular-fit-resume-text-checkpoint", TABULAR_FIT + " --resume", "found a text file",
        both(write("tab-model.checkpoints/last.pt", "hello\n"),
             recorded_checkpoint("tab-model.checkpoints/last.pt", "tabular"))),
    Bad("tabular-fit-checkpoints-folder-holds-a-user-last-pt", TABULAR_FIT, "which segqc did not write",
        write("tab-model.checkpoints/last.pt", "hello\n")),
    Bad("tabular-fit-checkpoint-of-an-image-model", TABULAR_FIT, "checkpoint of a model of mode 'image'",
        both(write("tab-model.checkpoints/last.pt", "image\n"), recorded_checkpoint("tab-model.checkpoints/last.pt"))),
    # --- segqc tabular score
    Bad("tabular-score-out-is-the-data", TABULAR_SCORE.replace("{w}/tab-scores.csv", "{w}/tab/train.csv"),
        "is the input"),
    Bad("tabular-score-out-is-a-user-csv", TABULAR_SCORE, "not a scores file written by segqc",
        write("tab-scores.csv", "name,amount\nrent,900\n")),
    Bad("tabular-score-out-is-a-folder", TABULAR_SCORE.replace("{w}/tab-scores.csv", "{w}/notes"), "is a folder"),
    Bad("tabular-score-thresholds-edited", TABULAR_SCORE, "metadata was modified",
        edit_json("tab/model/segqc.json", _thresholds)),
    Bad("tabular-score-image-model", TABULAR_SCORE.replace("tab/model", "model"), "a 'image' model"),
    Bad("tabular-score-missing-column", TABULAR_SCORE, "missing column", bad_table("id,a\nr1,1\n")),
    Bad("tabular-score-out-name-too-long", TABULAR_SCORE.replace("tab-scores", "s" * 245), "use a shorter name"),
    Bad("tabular-score-top-negative", TABULAR_SCORE + " --top -1", "--top -1"),
    # --- segqc demo
    Bad("demo-out-is-a-user-folder", "demo --fast --out {w}/notes", "not written by segqc"),
    Bad("demo-out-is-a-file", "demo --fast --out {w}/config.yaml", "exists and is not a folder"),
    # --- round 2, data loss: one ownership rule (a manifest), at any depth, for folders, files and modes
    Bad("score-out-report-with-user-folder-deep", SCORE, "holds 'heatmaps/mine', a folder segqc did not write",
        then(scored, "report/heatmaps/mine/notes.txt", "my notes\n")),
    Bad("score-out-report-with-user-file-in-gallery", SCORE, "holds 'gallery/mine.png', a file segqc did not write",
        then(scored, "report/gallery/mine.png", b"a picture of mine")),
    Bad("score-out-report-with-edited-scores", SCORE, "'scores.csv', changed since segqc wrote it",
        then(scored, "report/scores.csv", "case_id,my review\n")),
    Bad("score-out-report-with-link", SCORE, "'heatmaps/link', a file segqc did not write",
        both(scored, lambda w: os.symlink(w / "notes", w / "report" / "heatmaps" / "link"))),
    Bad("train-out-is-a-tabular-model", TRAIN.replace("{w}/qc-model", "{w}/tab/model"),
        "holds a model of mode 'tabular' and this command writes one of mode 'image'"),
    Bad("tabular-fit-out-is-an-image-model", TABULAR_FIT.replace("{w}/tab-model", "{w}/model"),
        "holds a model of mode 'image' and this command writes one of mode 'tabular'"),
    Bad("train-out-model-with-user-file", TRAIN.replace("{w}/qc-model", "{w}/model"),
        "holds 'README.txt', a file segqc did not write", write("model/README.txt", "how I trained it\n")),
    Bad("tabular-score-out-edited-by-the-user", TABULAR_SCORE, "changed since segqc wrote it",
        then(tab_scored, "tab-scores.csv", "id,score,rank,verdict,unseen_categories,norm_1,my_note\nr0,1,1,pass,0,"
                                           "1,check\n")),
    Bad("tabular-score-out-old-scores-with-added-column", TABULAR_SCORE, "not a scores file written by segqc",
        write("tab-scores.csv", "id,score,rank,verdict,unseen_categories,top_column,top_share,norm_1,my_note\n")),
    Bad("segment-out-masks-with-user-file", SEGMENT, "holds 'sub', a folder segqc did not write",
        then(segmented, "masks-out/sub/mine.png", b"mine")),
    Bad("demo-out-report-with-user-file", "demo --fast --out {w}/demo",
        "holds 'report/heatmaps/circled.png', a file segqc did not write", demo_holding_a_user_file),
    # --- round 2: options and config values, checked before any data are read, named as given
    Bad("train-config-wrong-type", TRAIN, "training.steps: expected a whole number, found text 'many'",
        tiny_config(training="{steps: many, device: cpu}")),
    Bad("train-config-number-read-as-text", TRAIN, "training.lr: expected a number, found text '1e-3'",
        tiny_config(training="{steps: 5, lr: 1e-3, device: cpu}")),
    Bad("train-config-not-a-bool", TRAIN, "training.amp: expected true or false", tiny_config(
        training="{steps: 5, amp: 'yes', device: cpu}")),
    Bad("train-config-section-not-a-mapping", TRAIN, "training: expected a mapping of settings, found 5",
        tiny_config(training="5")),
    Bad("train-config-unknown-network-key", TRAIN, "model.network.nff: unknown setting (did you mean 'nf'?)",
        tiny_config(model="{levels: 3, network: {nff: 8}}")),
    Bad("train-config-network-cannot-halve-size", TRAIN, "data.spatial_size [30, 30]",
        tiny_config(data="{spatial_dims: 2, spatial_size: [30, 30]}",
                    model="{levels: 3, network: {nf: 8, ch_mult: [1, 2, 2]}}")),
    Bad("train-config-network-too-large", TRAIN, "model.network: training needs at least",
        tiny_config(model="{levels: 3, network: {nf: 100000, ch_mult: [1, 2]}}")),
    Bad("train-config-network-wrong-type", TRAIN, "model.network: cannot build the network",
        tiny_config(model="{levels: 3, network: {nf: '8'}}")),
    Bad("train-config-infinite-number", TRAIN, "model.tau_max: expected a number, found inf",
        tiny_config(model="{tau_max: .inf}")),
    Bad("train-seed-negative", TRAIN + " --seed -1", "--seed -1: invalid value -1"),
    Bad("train-batch-size-zero", TRAIN + " --batch-size 0", "--batch-size 0"),
    Bad("train-slice-axis-out-of-range", TRAIN + " --slice-axis 7", "--slice-axis 7"),
    Bad("train-device-unknown", TRAIN + " --device gpu", "--device gpu: expected auto, cpu, cuda or cuda:N"),
    Bad("train-labels-repeated", TRAIN + " --labels 0,1,1", "1 given more than once"),
    Bad("train-labels-absent-from-every-mask", TRAIN + " --labels 0,1,2,7", "7 occur(s) in no training mask"),
    Bad("train-config-is-a-pipe", TRAIN.replace("{w}/config.yaml", "{w}/pipe.yaml"),
        "pipe.yaml: is not a regular file", fifo("pipe.yaml")),
    Bad("tabular-fit-lr-absurd", TABULAR_FIT + " --lr 1e30", "--lr 1e+30: invalid value"),
    Bad("tabular-fit-seed-negative", TABULAR_FIT + " --seed -1", "--seed -1"),
    Bad("tabular-fit-width-too-large", TABULAR_FIT + " --width 10000000", "model.width: training needs at least"),
    Bad("tabular-fit-levels-absurd", TABULAR_FIT + " --levels 1000000", "--levels 1000000: invalid value"),
    Bad("tabular-score-threads-absurd", TABULAR_SCORE + " --threads 1000000000", "--threads 1000000000"),
    Bad("tabular-fit-config-wrong-type", TABULAR_FIT + " --config {w}/tab.yaml", "model.width: expected a whole "
        "number, found 20.5", write("tab.yaml", "model: {width: 20.5}\n")),
    Bad("tabular-fit-data-is-a-pipe", TABULAR_FIT.replace("tab/train.csv", "tab/pipe.csv"),
        "pipe.csv: is not a regular file", fifo("tab/pipe.csv")),
    Bad("tabular-score-data-is-a-pipe", TABULAR_SCORE.replace("tab/train.csv", "tab/pipe.csv"),
        "pipe.csv: is not a regular file", fifo("tab/pipe.csv")),
    Bad("score-history-is-a-pipe", SCORE + " --history {w}/pipe.sqlite", "is not a regular file",
        fifo("pipe.sqlite")),
    # --- round 2: garbage in a modelled column
    Bad("tabular-fit-infinite-value", TABULAR_FIT, "column 'value' in {w}/tab/train.csv: 1 infinite value(s), "
        "the first in data row 4", table(_set("value", 3, "inf"))),
    Bad("tabular-fit-value-too-large", TABULAR_FIT, "column 'value' in {w}/tab/train.csv: values too large",
        table(_set("value", 3, 1e308))),
    Bad("tabular-score-empty-modelled-column", TABULAR_SCORE, "column 'value' is empty", table(_empty("value"))),
    # --- round 3: whole numbers beyond 64 bits (or absurd) are refused naming the option or key, never overflow
    Bad("train-labels-beyond-64-bits", TRAIN + f" --labels 0,1,{HUGE}",
        f"--labels '0,1,{HUGE}': {HUGE} outside -9223372036854775808..9223372036854775807"),
    Bad("train-steps-beyond-64-bits", TRAIN + f" --steps {HUGE}",
        f"--steps {HUGE}: invalid value {HUGE}; expected 1..100,000,000 steps"),
    Bad("train-batch-size-beyond-64-bits", TRAIN + f" --batch-size {HUGE}", f"--batch-size {HUGE}: invalid value"),
    Bad("train-config-network-beyond-64-bits", TRAIN, f"model.network.nf: invalid value {HUGE}",
        tiny_config(model=f"{{levels: 3, network: {{nf: {HUGE}}}}}")),
    Bad("train-config-spatial-size-beyond-64-bits", TRAIN, f"data.spatial_size: invalid value [{HUGE}, 32]",
        tiny_config(data=f"{{spatial_dims: 2, spatial_size: [{HUGE}, 32]}}")),
    Bad("segment-class-map-value-beyond-64-bits", SEGMENT + " --class-map {w}/map.json",
        f"map.json: the value of '1' is {HUGE}; expected a non-negative integer label value up to 2147483647",
        write("map.json", f'{{"map": {{"0": 0, "1": {HUGE}}}, "default": 0}}')),
    Bad("tabular-fit-width-beyond-64-bits", TABULAR_FIT + f" --width {HUGE}",
        f"--width {HUGE}: invalid value {HUGE}; expected 1..16,777,216"),
    Bad("tabular-fit-depth-beyond-64-bits", TABULAR_FIT + f" --depth {HUGE}", f"--depth {HUGE}: invalid value"),
    Bad("tabular-fit-steps-beyond-64-bits", TABULAR_FIT + f" --steps {HUGE}", f"--steps {HUGE}: invalid value"),
    Bad("tabular-fit-batch-size-beyond-64-bits", TABULAR_FIT + f" --batch-size {HUGE}",
        f"--batch-size {HUGE}: invalid value"),
    Bad("tabular-fit-config-embedding-size-beyond-64-bits", TABULAR_FIT + " --config {w}/tab.yaml",  # even
        "model.embedding_size: invalid value 100000000000000000000; expected an even number in 2..16,777,216",
        write("tab.yaml", "model: {embedding_size: 100000000000000000000}\n")),
    Bad("tabular-fit-config-sigma-max-negative", TABULAR_FIT + " --config {w}/tab.yaml",  # not a crash in the fit
        "model.sigma_max: invalid value -1.0; expected a scale > 0", write("tab.yaml", "model: {sigma_max: -1.0}\n")),
    Bad("demo-seed-negative", "demo --fast --seed -1 --out {w}/demo", "--seed -1: invalid value -1"),
    Bad("demo-seed-beyond-64-bits", f"demo --fast --seed {HUGE} --out {{w}}/demo", f"--seed {HUGE}: invalid value"),
    # --- round 3: a check of two values names the option given, with both values
    Bad("tabular-fit-fail-quantile-one", TABULAR_FIT + " --fail-quantile 1",
        "--fail-quantile 1.0: invalid value 1.0; expected a quantile in (0, 1)"),
    Bad("tabular-fit-fail-quantile-below-review", TABULAR_FIT + " --fail-quantile 0.9", "--fail-quantile 0.9: "
        "expected review_quantile <= fail_quantile, found review_quantile 0.95 > fail_quantile 0.9"),
    Bad("tabular-fit-review-quantile-above-fail", TABULAR_FIT + " --review-quantile 0.995", "--review-quantile 0.995: "
        "expected review_quantile <= fail_quantile, found review_quantile 0.995 > fail_quantile 0.99"),
    Bad("tabular-fit-lr-below-lr-min", TABULAR_FIT + " --lr 1e-6",
        "--lr 1e-06: expected lr_min <= lr, found lr_min 1e-05 > lr 1e-06"),
    # --- round 3: an invalid SEGQC_MAX_VOXELS is refused before any work (not an error row per file, not clamped)
    *[Bad(f"score-max-voxels-variable-{name}", SCORE,
          f"SEGQC_MAX_VOXELS={value!r}: expected a positive whole number", env={"SEGQC_MAX_VOXELS": value})
      for name, value in (("text", "abc"), ("nan", "nan"), ("zero", "0"), ("negative", "-1"))],
    Bad("train-max-voxels-variable-zero", TRAIN, "SEGQC_MAX_VOXELS='0': expected a positive whole number",
        env={"SEGQC_MAX_VOXELS": "0"}),
    Bad("segment-max-voxels-variable-zero", SEGMENT, "SEGQC_MAX_VOXELS='0'", env={"SEGQC_MAX_VOXELS": "0"}),
    Bad("demo-max-voxels-variable-negative", "demo --fast --out {w}/demo", "SEGQC_MAX_VOXELS='-1'",
        env={"SEGQC_MAX_VOXELS": "-1"}),
]

# New files a failed run may leave: the report that lists every case's error.
WRITES_A_REPORT = {"score-every-case-unreadable": "night"}


def test_the_catalogue_is_large_and_covers_every_command() -> None:
    assert len(CATALOGUE) >= 60 and len({bad.name for bad in CATALOGUE}) == len(CATALOGUE)
    commands = {shlex.split(bad.argv)[0] + (" " + shlex.split(bad.argv)[1] if bad.argv.startswith("tabular") else "")
                for bad in CATALOGUE}
    assert commands >= {"train", "score", "segment", "report", "tabular fit", "tabular score", "demo"}


@pytest.mark.parametrize("bad", CATALOGUE, ids=[bad.name for bad in CATALOGUE])
def test_bad_input_gives_one_line_exit_2_and_loses_nothing(bad: Bad, template: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    shutil.copytree(template, work, symlinks=True)
    if bad.setup:
        bad.setup(work)
    before = tree(work)
    result = invoke(bad.argv, work, bad.env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert bad.expect.format(w=work) in lines[0], lines[0]
    after = tree(work)
    changed = [path for path, digest in before.items() if after.get(path) != digest]
    assert not changed, f"changed or removed: {changed}"
    new = sorted(path for path in after if path not in before)
    allowed = WRITES_A_REPORT.get(bad.name)
    assert all(allowed and path.split(os.sep)[0] == allowed for path in new), f"left behind: {new}"


# ---------------------------------------------------------------- bad cases that must not stop the night


def scoring_work(template: Path, tmp_path: Path) -> Path:
    work = tmp_path / "w"
    shutil.copytree(template, work, symlinks=True)
    return work


TESTS = Path(__file__).parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
"""Environment of segqc run as a real process: this checkout's code, the tests' fixtures on the path."""


def score_table(work: Path, out: str = "report", *extra: str) -> pd.DataFrame:
    result = invoke(SCORE.replace("{w}/report", "{w}/" + out) + " " + " ".join(extra), work)
    assert result.exit_code == 0, result.output
    return pd.read_csv(work / out / "scores.csv", keep_default_na=False).set_index("case_id")


def test_unreadable_cases_become_error_rows_and_the_run_goes_on(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    predictions, images = work / "test/predictions", work / "test/images"
    cases = sorted(p.stem for p in predictions.iterdir())
    huge_png(images / f"{cases[0]}.png", 10_000, 10_000)  # 97 KB on disk, 10^8 pixels: refused before decoding
    (predictions / f"{cases[1]}.png").unlink()
    os.symlink(f"{cases[1]}.png", predictions / f"{cases[1]}.png")  # a link loop
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), predictions / "vol.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), images / "vol.nii.gz")  # 3D for 2D
    before = tree(work)
    table = score_table(work)
    assert "exceeds the limit" in table.loc[cases[0], "message"]
    assert "symbolic link" in table.loc[cases[1], "message"]  # a loop, not "no predicted mask"
    assert table.loc["vol", "status"] == "error"
    assert "train with 'segqc train --slice-axis" in table.loc["vol", "message"]  # score has no --slice-axis
    assert (table.loc[cases[2:], "status"] == "ok").all()
    assert all(tree(work)[path] == digest for path, digest in before.items())


def test_a_case_missing_an_nnunet_channel_is_an_error_row(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    images = work / "test/images"
    for path in sorted(images.iterdir()):
        path.rename(path.with_name(f"{path.stem}_0000.png"))
    gap = min(images.iterdir())
    shutil.copy(gap, gap.with_name(gap.name.removesuffix("_0000.png") + "_0002.png"))
    table = score_table(work)
    case = gap.name.removesuffix("_0000.png")
    assert "lacks channel file" in table.loc[case, "message"] and table.loc[case, "verdict"] == "error"
    assert (table.drop(index=case)["status"] == "ok").all()


def test_case_ids_that_sanitise_alike_keep_their_own_heat_maps(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    predictions, images = work / "test/predictions", work / "test/images"
    source = min(predictions.iterdir()).name
    for case_id in ("a b", "a_b", "tumör"):
        shutil.copy(predictions / source, predictions / f"{case_id}.png")
        shutil.copy(images / source, images / f"{case_id}.png")
    table = score_table(work)
    maps = table.loc[["a b", "a_b", "tumör"], "heatmap"]
    assert maps.nunique() == 3 and all((work / "report" / m).is_file() for m in maps)
    assert table["heatmap"].nunique() == len(table)


# ---------------------------------------------------------------- messages, threads, concurrency


def test_verbose_shows_the_traceback_it_promises(template: Path, tmp_path: Path, monkeypatch) -> None:
    work = scoring_work(template, tmp_path)

    def broken(*_args, **_kwargs):
        raise RuntimeError("something internal")

    monkeypatch.setattr("segqc.jobs.score.score_folder", broken)
    quiet = invoke(SCORE, work)
    assert quiet.exit_code == 1 and "run with --verbose for the traceback" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    verbose = runner.invoke(app, ["--verbose", *shlex.split(SCORE.format(w=work))])
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr and "something internal" in verbose.stderr


def test_threads_option_and_environment(template: Path, tmp_path: Path, monkeypatch) -> None:
    from segqc.threads import limit_threads

    threads = torch.get_num_threads()
    try:
        work = scoring_work(template, tmp_path)
        torch.set_num_threads(2)
        score_table(work, "report", "--threads", "1")
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert limit_threads(None).threads == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "lots")
        with pytest.raises(Exception, match="OMP_NUM_THREADS='lots'"):
            limit_threads(None)
    finally:
        torch.set_num_threads(threads)


def test_concurrent_nightly_runs_share_one_history(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    env = ENV
    runs = [subprocess.Popen([sys.executable, "-m", "segqc", *shlex.split(
        SCORE.replace("{w}/report", "{w}/report-" + name).format(w=work)), "--history", str(work / "qc.sqlite")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in ("a", "b")]
    for process in runs:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr.decode()
    from segqc.history import RunHistory

    with RunHistory(work / "qc.sqlite") as history:
        assert sorted(Path(run["report"]).name for run in history.runs()) == ["report-a", "report-b"]


# ---------------------------------------------------------------- round 2: one case never costs the night


def test_any_failure_reading_one_case_is_its_error_row(template: Path, tmp_path: Path, monkeypatch) -> None:
    from segqc.jobs import score as scoring

    work = scoring_work(template, tmp_path)
    predictions, images = work / "test/predictions", work / "test/images"
    cases = sorted(p.stem for p in predictions.iterdir())
    grey = np.asarray(Image.open(images / f"{cases[0]}.png"))
    Image.fromarray(np.stack([grey, grey // 2, grey], -1)).save(images / f"{cases[0]}.png")  # RGB among grey
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), predictions / "huge.nii.gz")
    header = bytearray(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)).to_bytes())
    header[40:56] = struct.pack("<8h", 3, 30000, 30000, 30000, 1, 1, 1, 1)  # announces 2.7e13 voxels
    (images / "huge.nii").write_bytes(bytes(header))
    original = scoring.prepare_case

    def flaky(files, *args):
        if files.case_id == cases[1]:
            raise MemoryError
        if files.case_id == cases[2]:
            raise RuntimeError("something internal")
        return original(files, *args)

    monkeypatch.setattr(scoring, "prepare_case", flaky)
    before = tree(work)
    table = score_table(work, "report", "--max-voxels", str(10**15))  # the limit raised: decoding is tried
    assert "3 image channel(s) (a colour image?)" in table.loc[cases[0], "message"]
    assert "huge.nii: not enough memory to decode it" in table.loc["huge", "message"]
    assert "not enough memory" in table.loc[cases[1], "message"]
    assert "RuntimeError: something internal" in table.loc[cases[2], "message"]
    assert (table.loc[cases[3:], "status"] == "ok").all()
    assert all(tree(work)[path] == digest for path, digest in before.items())


def test_one_bit_png_masks_are_read_as_0_and_1(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert Image.open(tmp_path / "mask.png").mode == "1"
    read = read_mask(tmp_path / "mask.png").array
    assert sorted(np.unique(read).tolist()) == [0, 1] and int(read.sum()) == 9


# ---------------------------------------------------------------- round 2: spreadsheet-safe CSV, exact ids

FORMULA_IDS = ["=1+2", "@SUM(A1)", "+cmd", "-x", "'quoted", "007"]


def test_case_ids_that_look_like_formulas_are_written_as_text(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    predictions, images = work / "test/predictions", work / "test/images"
    source = min(predictions.iterdir()).name
    for case_id in FORMULA_IDS:
        shutil.copy(predictions / source, predictions / f"{case_id}.png")
        shutil.copy(images / source, images / f"{case_id}.png")
    score_table(work)
    with (work / "report/scores.csv").open(newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "@") or (cell[:1] == "-" and not _number(cell))]
    table = read_csv(work / "report/scores.csv")
    assert set(FORMULA_IDS) <= set(table["case_id"])  # read back exactly
    result = invoke("report {w}/report", work)  # re-rendered from the file, ids as they were
    assert result.exit_code == 0, result.output
    assert "@SUM(A1)" in (work / "report/report.html").read_text()
    assert score_table(work)["score"].notna().sum() >= len(FORMULA_IDS)  # report.html re-rendered is still ours


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_tabular_ids_keep_their_spelling_and_formulas_stay_text(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    frame = pd.read_csv(work / "tab/train.csv", dtype={"id": str})
    ids = [*FORMULA_IDS, "NA"]
    frame.loc[:len(ids) - 1, "id"] = ids
    frame.to_csv(work / "tab/ids.csv", index=False)
    result = invoke(TABULAR_SCORE.replace("tab/train.csv", "tab/ids.csv"), work)
    assert result.exit_code == 0, result.output
    first_cells = [line.split(",")[0] for line in (work / "tab-scores.csv").read_text().splitlines()[1:8]]
    assert first_cells == ["'=1+2", "'@SUM(A1)", "'+cmd", "'-x", "''quoted", "007", "NA"]
    assert read_csv(work / "tab-scores.csv")["id"].tolist()[:len(ids)] == ids
    assert pd.read_csv(work / "tab-scores.csv")["score"].dtype == np.float64  # numbers stay numbers


def test_values_a_model_cannot_score_flag_their_row(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)

    def out_of_reach(frame: pd.DataFrame) -> None:
        frame.loc[[3, 5, 7], "value"] = [np.inf, 1e308, -1e300]

    table(out_of_reach)(work)
    result = invoke(TABULAR_SCORE, work)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(work / "tab-scores.csv")
    flagged = scores.loc[[3, 5, 7]]
    assert np.isinf(flagged["score"]).all() and (flagged["verdict"] == "fail").all()
    assert (flagged["top_column"] == "value").all() and (flagged["rank"] <= 3).all()
    others = scores.drop(index=[3, 5, 7])
    assert np.isfinite(others["score"]).all() and not scores.isna().any().any()


def test_long_reads_report_progress(tmp_path: Path) -> None:
    frame = pd.DataFrame(np.random.default_rng(0).integers(0, 3, (40, 300)), columns=[f"c{i}" for i in range(300)])
    frame.to_csv(tmp_path / "wide.csv", index=False)
    seen: dict[str, tuple[int, int]] = {}
    qc = TabularQC(TabularModelConfig(levels=2, width=8, depth=1, embedding_size=8),
                   TrainingConfig(steps=2, batch_size=8, checkpoint_every=0, device="cpu"))
    qc.fit(tmp_path / "wide.csv", on_read=lambda done, total, stage: seen.__setitem__(stage, (done, total)))
    assert seen == {"MB of wide.csv read": (1, 1), "columns typed": (300, 300), "columns encoded": (300, 300)}


# ---------------------------------------------------------------- round 2: environment faults are bad input


def run_segqc(argv: str, work: Path, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """segqc as a real process; with a file-size limit (``ulimit -f``), writes beyond it fail with EFBIG."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "segqc", *shlex.split(argv.format(w=work))], env=ENV, text=True,
                          capture_output=True, timeout=600, preexec_fn=limit if file_size_limit else None,
                          check=False)


@pytest.mark.parametrize("argv, limit, earlier, out", [
    (SCORE, 40_000, scored, "report"),
    (TABULAR_SCORE, 4_000, tab_scored, "tab-scores.csv"),
    (TABULAR_FIT, 2_000, None, "tab-model"),
], ids=["score", "tabular-score", "tabular-fit"])
def test_a_file_size_limit_is_bad_input_and_loses_nothing(template: Path, tmp_path: Path, argv: str, limit: int,
                                                          earlier, out: str) -> None:
    work = scoring_work(template, tmp_path)
    if earlier:
        earlier(work)
    before = tree(work)
    result = run_segqc(argv, work, limit)
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert result.returncode == 2, result.stderr
    assert last.startswith("error:") and f"{work / out}" in last and "cannot write" in last, last
    assert tree(work) == before  # the earlier output unchanged, no temporary file left


@pytest.mark.parametrize("code, advice", [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "quota"),
                                          (errno.EROFS, "read-only")], ids=["disk-full", "quota", "read-only"])
def test_a_full_disk_is_bad_input_and_loses_nothing(template: Path, tmp_path: Path, monkeypatch, code: int,
                                                    advice: str) -> None:
    work = scoring_work(template, tmp_path)
    scored(work)
    before = tree(work)

    def no_space(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    result = invoke(SCORE, work)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert f"{work}/report: cannot write ({os.strerror(code)})" in lines[0] and advice in lines[0]
    assert tree(work) == before


def test_a_locked_history_is_waited_for_then_refused(template: Path, tmp_path: Path, monkeypatch) -> None:
    work = scoring_work(template, tmp_path)
    history.RunHistory(work / "qc.sqlite").close()
    monkeypatch.setattr(history, "LOCK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(history, "LOCK_NOTICE_S", 0.2)
    holder = sqlite3.connect(work / "qc.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, and not letting go
    try:
        result = invoke(SCORE + " --history {w}/qc.sqlite", work)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 2, result.output
    assert "locked by another process (another segqc run?); waiting up to 1 s" in " ".join(result.stderr.split())
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "qc.sqlite: history database still locked by another process after 1 s" in last
    assert not (work / "report").exists()


def test_report_and_history_agree_when_the_history_cannot_be_written(template: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    from contextlib import contextmanager

    from segqc.errors import InputError

    work = scoring_work(template, tmp_path)
    score_table(work, "report", "--history", str(work / "qc.sqlite"))
    earlier = tree(work / "report")
    original = history.RunHistory.recording

    @contextmanager
    def commit_fails(self, run, cases=()):
        with original(self, run, cases) as run_id:
            yield run_id
            raise InputError(f"{self.path}: cannot write the history database (database or disk is full)")

    monkeypatch.setattr(history.RunHistory, "recording", commit_fails)
    result = invoke(SCORE + " --history {w}/qc.sqlite", work)
    assert result.exit_code == 2 and "database or disk is full" in result.stderr
    assert tree(work / "report") == earlier  # the report swap was undone: neither was written
    with history.RunHistory(work / "qc.sqlite") as runs:
        assert len(runs.runs()) == 1
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []


def test_sigterm_removes_temporary_folders_like_ctrl_c(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    scored(work)
    predictions, images = work / "test/predictions", work / "test/images"
    for path in sorted(predictions.iterdir()):  # enough cases for the run to be caught in the middle
        for copy in range(40):
            shutil.copy(path, predictions / f"{path.stem}-{copy}.png")
            shutil.copy(images / path.name, images / f"{path.stem}-{copy}.png")
    before = tree(work)
    process = subprocess.Popen([sys.executable, "-m", "segqc", *shlex.split(SCORE.format(w=work))], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(p.name.startswith(".report.tmp-") for p in work.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated" in stderr
    assert tree(work) == before  # no staging folder left, the earlier report as it was


def test_scores_to_a_pipe_that_closes_early(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    chained_table(3000, seed=2)[0].to_csv(work / "tab/big.csv", index=False)
    command = " ".join([shlex.quote(sys.executable), "-m", "segqc", *shlex.split(
        TABULAR_SCORE.replace("tab/train.csv", "tab/big.csv").replace("{w}/tab-scores.csv", "/dev/stdout")
        .format(w=work))])
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -3"], env=ENV, text=True,
                            capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("id,score,rank,verdict")


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                                                                "can't allocate memory: you tried to allocate 29 GB")],
                         ids=["MemoryError", "torch-allocation"])
def test_running_out_of_memory_is_one_clear_line(template: Path, tmp_path: Path, monkeypatch, error) -> None:
    work = scoring_work(template, tmp_path)

    def exhausted(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(TabularQC, "score_table", exhausted)
    result = invoke(TABULAR_SCORE, work)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "error: not enough memory" in lines[0], result.output


def test_a_table_piped_to_dev_stdin_is_refused_not_read_as_empty(template: Path, tmp_path: Path) -> None:
    work = scoring_work(template, tmp_path)
    result = subprocess.run([sys.executable, "-m", "segqc", "tabular", "score", "/dev/stdin", "--model",
                             str(work / "tab/model"), "--out", str(work / "scores.csv")], env=ENV, text=True,
                            input=(work / "tab/train.csv").read_text(), capture_output=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "/dev/stdin: is not a regular file (a pipe, terminal or device); save it as a CSV or Parquet file" in message
    assert not (work / "scores.csv").exists()
