"""The checkpoint folder beside a model: segqc's own, recorded in a marker; a user's `last.pt` is never touched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import config, make_data, make_model

from segqc.errors import OutputError
from segqc.fitting.checkpoints import CHECKPOINT_NAME, checkpoint_folder, checkpoints_for
from segqc.fitting.trainer import Trainer
from segqc.manifests import MARKER, OutputKind, manifest_of

LEGACY = {key: torch.zeros(1) for key in ("model", "ema", "optimizer", "scheduler", "generator", "step", "best_val",
                                           "best_step", "best_state", "history")}


def interrupted_run(out: Path, mode: str = "tabular") -> Path:
    """A training run into ``out`` stopped by Ctrl-C after it wrote a checkpoint; returns the checkpoint."""
    data = make_data()
    with pytest.raises(KeyboardInterrupt), checkpoints_for(out, mode) as folder:
        Trainer(make_model(), config(steps=20, checkpoint_every=20), folder).fit(data, data)
        raise KeyboardInterrupt
    return folder / CHECKPOINT_NAME


def test_a_run_records_its_checkpoint_and_removes_it_after_success(tmp_path: Path) -> None:
    data = make_data()
    with checkpoints_for(tmp_path / "model", "tabular") as folder:
        Trainer(make_model(), config(steps=20, checkpoint_every=20), folder).fit(data, data)
        manifest = manifest_of(folder, OutputKind.CHECKPOINTS)
        assert manifest is not None and manifest.mode == "tabular" and set(manifest.files) == {CHECKPOINT_NAME}
    assert not folder.exists()


def test_an_interrupted_run_keeps_its_checkpoint_for_the_same_mode_only(tmp_path: Path) -> None:
    checkpoint = interrupted_run(tmp_path / "model")
    saved = checkpoint.read_bytes()
    with pytest.raises(OutputError, match="checkpoint of a model of mode 'tabular'"):
        checkpoint_folder(tmp_path / "model", "image")
    assert checkpoint.read_bytes() == saved
    with checkpoints_for(tmp_path / "model", "tabular") as folder:  # the same mode resumes or starts over
        assert (folder / CHECKPOINT_NAME).read_bytes() == saved
    assert not folder.exists()


def test_an_interruption_before_any_checkpoint_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), checkpoints_for(tmp_path / "model", "image") as folder:
        assert (folder / MARKER).is_file()
        raise KeyboardInterrupt
    assert not folder.exists()


@pytest.mark.parametrize("content", [b"my lightning checkpoint\n", None])
def test_a_last_pt_segqc_did_not_write_blocks_the_run_and_stays(tmp_path: Path, content: bytes | None) -> None:
    folder = tmp_path / "model.checkpoints"
    folder.mkdir()
    path = folder / CHECKPOINT_NAME
    if content is None:
        torch.save({**LEGACY, "epoch": 3}, path)  # a torch file with more than segqc's keys
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    for mode in ("image", "tabular"):
        with pytest.raises(OutputError, match="holds 'last.pt', which segqc did not write"):
            checkpoint_folder(tmp_path / "model", mode)
    assert path.read_bytes() == before and sorted(folder.iterdir()) == [path]


def test_a_checkpoint_of_a_segqc_without_markers_is_still_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "model.checkpoints"
    folder.mkdir()
    torch.save(LEGACY, folder / CHECKPOINT_NAME)
    with checkpoints_for(tmp_path / "model", "image"):
        assert manifest_of(folder, OutputKind.CHECKPOINTS).files[CHECKPOINT_NAME]
    assert not folder.exists()


def test_a_checkpoint_edited_since_is_kept(tmp_path: Path) -> None:
    checkpoint = interrupted_run(tmp_path / "model")
    checkpoint.write_bytes(b"edited")
    with pytest.raises(OutputError, match="changed since segqc wrote it"):
        checkpoint_folder(tmp_path / "model", "tabular")
    assert checkpoint.read_bytes() == b"edited"
