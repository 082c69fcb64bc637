"""The segment job: request checks, the class-count guard, masks written, outputs checked."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segqc.errors import ConfigError, InputError, OutputError
from segqc.jobs.segment import SegmenterRequest, segment, segment_images
from segqc.synthetic import phantoms

SPEC = "python:segmenter_fixtures:threshold_segmenter"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment-job")
    phantoms.write_cases(phantoms.make_training_set(3, (32, 32), seed=2), root / "cases", fmt="png")
    (root / "three.yaml").write_text("class_names: [background, organ, lesion]\n")
    (root / "to-two.yaml").write_text("map: {background: 0, organ: 1, lesion: 1}\n")
    return root


def request(root, **extra) -> SegmenterRequest:
    return SegmenterRequest(SPEC, options=root / "three.yaml", **extra)


@pytest.mark.parametrize("batch_size", [0, -2])
def test_a_batch_size_below_one_is_refused(batch_size: int) -> None:
    with pytest.raises(ConfigError, match=f"^--batch-size {batch_size}: expected at least 1"):
        SegmenterRequest(SPEC, batch_size=batch_size)


def test_the_inputs_are_the_files_the_segmenter_reads(tmp_path) -> None:
    made = SegmenterRequest(SPEC, weights=tmp_path / "w.pt", class_map=tmp_path / "map.yaml")
    assert made.inputs == [tmp_path / "w.pt", None, tmp_path / "map.yaml"] and made.batch_size == 4


@pytest.mark.parametrize("labels", [None, [0, 1, 2], [0, 10, 20, 30]])
def test_segment_images_writes_one_mask_per_image(folder, tmp_path, labels) -> None:
    progress = []
    run = segment_images(request(folder, batch_size=2), folder / "cases" / "images", tmp_path / "masks", "cpu",
                         labels, on_case=lambda done, total: progress.append((done, total)))
    assert [p.name for p in run.written] == [f"train_{i:04d}.png" for i in range(3)] and not run.failures
    assert progress[-1] == (3, 3)
    for path in run.written:
        assert set(np.unique(np.asarray(Image.open(path)))) <= {0, 1, 2}


def test_more_segmenter_classes_than_model_labels_need_a_class_map(folder, tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        segment_images(request(folder), folder / "cases" / "images", tmp_path / "masks", "cpu", [0, 1])
    message = str(caught.value)
    assert message.startswith(f"--segmenter {SPEC} has 3 classes") and "[0, 1]" in message and "--class-map" in message
    assert not (tmp_path / "masks").exists()
    run = segment_images(request(folder, class_map=folder / "to-two.yaml"), folder / "cases" / "images",
                         tmp_path / "masks", "cpu", [0, 1])
    assert len(run.written) == 3
    assert set().union(*(np.unique(np.asarray(Image.open(p))).tolist() for p in run.written)) <= {0, 1}


def test_no_mask_written_is_an_input_error(folder, tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="produced no mask"):
        segment_images(request(folder), tmp_path / "images", tmp_path / "masks", "cpu")


def test_segment_refuses_an_output_it_did_not_write_and_writes_nothing(folder, tmp_path) -> None:
    out = tmp_path / "masks"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="--out"):
        segment(request(folder), folder / "cases" / "images", out, "cpu")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    with pytest.raises(OutputError, match="input"):
        segment(request(folder), folder / "cases" / "images", folder / "cases" / "images" / "masks", "cpu")
    assert not (folder / "cases" / "images" / "masks").exists()


def test_segment_writes_into_a_new_folder(folder, tmp_path) -> None:
    run = segment(request(folder), folder / "cases" / "images", tmp_path / "new" / "masks", "cpu")
    assert len(run.written) == 3 and all(p.parent == tmp_path / "new" / "masks" for p in run.written)
