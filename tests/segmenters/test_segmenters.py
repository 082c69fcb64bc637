"""Pretrained segmenters: loading by spec, weights handling, writing masks, class maps, plugins.

All models have random weights saved at test time; nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from segqc.data.images import read_mask
from segqc.errors import ConfigError, InputError, OutputError, SchemaError
from segqc.segmenters import (
    ClassMap,
    apply_class_map,
    known_names,
    load_class_map,
    load_segmenter,
    segment_folder,
    voc_palette,
)
from segqc.segmenters.python_callable import FunctionSegmenter

DEEPLAB = "deeplabv3_mobilenet_v3_large"


def _rgb_pngs(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate(sizes):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{index}.png")


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def deeplab_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random DeepLabV3-MobileNetV3 weights, saved with the auxiliary head (which loading strips)."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    model = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    path = tmp_path_factory.mktemp("weights") / "deeplab.pth"
    torch.save(model.state_dict(), path)
    return path


def test_deeplab_end_to_end_writes_palette_pngs(tmp_path: Path, deeplab_weights: Path) -> None:
    _rgb_pngs(tmp_path / "images", [(64, 64), (64, 64), (48, 64)])
    segmenter = load_segmenter(DEEPLAB, weights=deeplab_weights)
    assert segmenter.class_names[0] == "background" and segmenter.class_names[15] == "person"
    assert len(segmenter.class_names) == 21
    progress = []
    run = segment_folder(segmenter, tmp_path / "images", tmp_path / "masks", batch_size=2,
                         on_case=lambda case, done, total: progress.append((case, done, total)))
    assert run.failures == []
    assert [p.name for p in run.written] == ["img_0.png", "img_1.png", "img_2.png"]
    assert max(progress)[1:] == (3, 3)
    for path, size in zip(run.written, [(64, 64), (64, 64), (64, 48)], strict=True):
        with Image.open(path) as mask:
            assert mask.mode == "P" and mask.size == size
            assert mask.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
            assert np.asarray(mask).max() < 21
        assert read_mask(path).array.shape == (1, size[1], size[0])


def test_deeplab_missing_weights_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                deeplab_weights: Path) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(InputError) as caught:
        load_segmenter(DEEPLAB)
    message = str(caught.value)
    assert "deeplabv3_mobilenet_v3_large-fc3c493d.pth" in message and "--weights" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "torchvision.models.segmentation.deeplabv3_mobilenet_v3_large" in message
    # The same file in torchvision's cache is used without --weights.
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "deeplabv3_mobilenet_v3_large-fc3c493d.pth").write_bytes(
        deeplab_weights.read_bytes())
    assert load_segmenter(DEEPLAB).spatial_dims == 2


def test_deeplab_wrong_class_count(tmp_path: Path) -> None:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    model = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5, aux_loss=False)
    torch.save(model.state_dict(), tmp_path / "five.pth")
    with pytest.raises(SchemaError, match=r"five\.pth: state_dict has 5 classes, expected 21"):
        load_segmenter(DEEPLAB, weights=tmp_path / "five.pth")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_end_to_end(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU()))
    network.save(str(tmp_path / "net.pt"))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 32), dtype=np.uint8)).save(images / "a.png")
    options = _write_json(tmp_path / "options.json", {"class_names": ["bg", "x", "y"], "normalize": "minmax"})
    segmenter = load_segmenter(f"torchscript:{tmp_path / 'net.pt'}", options=options)
    run = segment_folder(segmenter, images, tmp_path / "masks")
    mask = read_mask(run.written[0]).array
    assert mask.shape == (1, 24, 32) and mask.max() < 3
    unnamed = load_segmenter(f"torchscript:{tmp_path / 'net.pt'}")
    unnamed.segment(torch.zeros(1, 1, 8, 8))
    assert unnamed.class_names == ["class_0", "class_1", "class_2"]
    with pytest.raises(InputError, match="missing.pt: TorchScript model file not found"):
        load_segmenter(f"torchscript:{tmp_path / 'missing.pt'}")


def _monai_unet(tmp_path: Path, spatial_dims: int, in_channels: int, **extra: object) -> tuple[Path, Path]:
    from monai.networks.nets import UNet

    args = {"spatial_dims": spatial_dims, "in_channels": in_channels, "out_channels": 3, "channels": [4, 8],
            "strides": [2]}
    torch.manual_seed(0)
    weights = tmp_path / f"unet{spatial_dims}d.pt"
    torch.save({"state_dict": UNet(**args).state_dict(), "epoch": 3}, weights)
    return weights, _write_json(tmp_path / f"unet{spatial_dims}d.json", {"args": args, **extra})


def test_monai_unet_2d_npy(tmp_path: Path) -> None:
    weights, options = _monai_unet(tmp_path, 2, 1, class_names=["bg", "a", "b"], normalize="zscore")
    images = tmp_path / "images"
    images.mkdir()
    np.save(images / "case1.npy", np.random.default_rng(2).normal(size=(32, 32)).astype(np.float32))
    segmenter = load_segmenter("monai:UNet", weights=weights, options=options)
    run = segment_folder(segmenter, images, tmp_path / "masks")
    assert [p.name for p in run.written] == ["case1.npy"]
    labels = np.load(run.written[0])
    assert labels.shape == (32, 32) and labels.max() < 3


def test_monai_unet_3d_sliding_window_nifti(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import monai.inferers

    weights, options = _monai_unet(tmp_path, 3, 1, roi_size=[16, 16, 16], sw_batch_size=2, overlap=0.25)
    images = tmp_path / "images"
    images.mkdir()
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    volume = np.random.default_rng(3).normal(size=(40, 36, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), images / "ct.nii.gz")
    windows = []
    original = monai.inferers.sliding_window_inference
    monkeypatch.setattr(monai.inferers, "sliding_window_inference",
                        lambda inputs, roi, *args, **kwargs: windows.append(roi) or original(inputs, roi, *args,
                                                                                             **kwargs))
    segmenter = load_segmenter("monai:UNet", weights=weights, options=options)
    assert segmenter.class_names == ["class_0", "class_1", "class_2"] and segmenter.spatial_dims == 3
    run = segment_folder(segmenter, images, tmp_path / "masks")
    assert windows == [[16, 16, 16]]
    assert [p.name for p in run.written] == ["ct.nii.gz"]
    mask = nib.load(run.written[0])
    assert mask.shape == (40, 36, 20) and np.allclose(mask.affine, affine)
    assert np.asarray(mask.dataobj).max() < 3


def test_monai_errors(tmp_path: Path) -> None:
    weights, options = _monai_unet(tmp_path, 2, 1)
    with pytest.raises(ConfigError, match="did you mean 'SegResNet'"):
        load_segmenter("monai:SegResNett", weights=weights, options=options)
    with pytest.raises(ConfigError, match="--weights"):
        load_segmenter("monai:UNet", options=options)
    bad = _write_json(tmp_path / "bad.json", {"args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 4,
                                                       "channels": [4, 8], "strides": [2]}})
    with pytest.raises(SchemaError, match="state_dict does not fit monai:UNet"):
        load_segmenter("monai:UNet", weights=weights, options=bad)


def test_python_callable_function_and_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "segqc_test_user_code.py").write_text(
        "import torch\n"
        "from segqc.segmenters.python_callable import FunctionSegmenter\n"
        "def threshold(images):\n"
        "    return (images[:, 0] > 100).long()\n"
        "def build(device='cpu'):\n"
        "    return FunctionSegmenter(threshold, ['bg', 'bright'], 2, 'built')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "segqc_test_user_code", raising=False)
    options = _write_json(tmp_path / "options.json", {"class_names": ["bg", "bright"]})
    function = load_segmenter("python:segqc_test_user_code:threshold", options=options)
    labels = function.segment(torch.tensor([[[[0.0, 200.0], [50.0, 255.0]]]]))
    assert labels.tolist() == [[[0, 1], [0, 1]]] and labels.dtype == torch.int64
    assert load_segmenter("python:segqc_test_user_code:build").class_names == ["bg", "bright"]
    with pytest.raises(ConfigError, match="class names"):
        load_segmenter("python:segqc_test_user_code:threshold")
    with pytest.raises(ConfigError, match="did you mean 'threshold'"):
        load_segmenter("python:segqc_test_user_code:treshold")
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        load_segmenter("python:no_such_module_xyz:f")


def test_unknown_names_suggest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'deeplabv3_resnet50'") as caught:
        load_segmenter("deeplabv3_resnet5")
    assert "torchscript:PATH" in str(caught.value) and "monai:NAME" in str(caught.value)
    with pytest.raises(ConfigError, match="did you mean 'torchscript'"):
        load_segmenter("torchscrpt:model.pt")


def test_plugin_discovered_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "segqc_test_plugin.py").write_text(
        "from segqc.segmenters.python_callable import FunctionSegmenter\n"
        "def make(weights, options, device):\n"
        "    return FunctionSegmenter(lambda images: images[:, 0].long() * 0, ['only'], 2, 'myplugin')\n",
        encoding="utf-8")
    dist_info = tmp_path / "segqc_test_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: segqc-test-plugin\nVersion: 0.1\n",
                                        encoding="utf-8")
    (dist_info / "entry_points.txt").write_text("[segqc.segmenters]\nmyplugin = segqc_test_plugin:make\n",
                                                encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates importlib's caches
    monkeypatch.delitem(sys.modules, "segqc_test_plugin", raising=False)
    assert "myplugin" in known_names()
    segmenter = load_segmenter("myplugin")
    assert segmenter.class_names == ["only"]
    assert segmenter.segment(torch.ones(2, 1, 4, 4)).shape == (2, 4, 4)
    with pytest.raises(ConfigError, match="did you mean 'myplugin'"):
        load_segmenter("myplugn")


def test_class_map_by_index_and_name(tmp_path: Path) -> None:
    names = ["background", "cat", "dog", "person"]
    by_name = load_class_map(_write_json(tmp_path / "map.json", {"map": {"person": 1, "0": 0, "dog": 2}}), names)
    labels = np.array([[0, 3], [2, 3]])
    assert by_name.apply(labels).tolist() == [[0, 1], [2, 1]]
    (tmp_path / "map.yaml").write_text("map:\n  3: 1\ndefault: 0\n", encoding="utf-8")
    by_index = load_class_map(tmp_path / "map.yaml", names)
    assert by_index == ClassMap({3: 1}, 0, tuple(names))
    assert by_index.apply(np.array([1, 2, 3])).tolist() == [0, 0, 1]
    with pytest.raises(SchemaError, match=r"1 \('cat'\) have no entry"):
        by_name.apply(np.array([0, 1, 3]))
    with pytest.raises(SchemaError, match="5, 7 have no entry"):
        apply_class_map(np.array([5, 7, 0]), {0: 0})
    with pytest.raises(SchemaError, match=r"bad\.json: unknown class name 'persn' \(did you mean 'person'\?\)"):
        load_class_map(_write_json(tmp_path / "bad.json", {"map": {"persn": 1}}), names)
    with pytest.raises(ConfigError, match="expected a non-negative integer"):
        load_class_map(_write_json(tmp_path / "neg.json", {"map": {"0": -1}}), names)


@pytest.mark.parametrize("content, what", [({"map": {"0": 10**20}}, "the value of '0' is 100000000000000000000"),
                                           ({"map": {"0": 0}, "default": 2**31}, "'default' is 2147483648")])
def test_class_map_values_beyond_what_a_mask_holds_are_refused(tmp_path: Path, content, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_class_map(_write_json(tmp_path / "big.json", content), ["background", "cat"])
    assert str(info.value) == (f"{tmp_path / 'big.json'}: {what}; expected a non-negative integer label value up to "
                               "2147483647 (the largest a mask file holds)")
    assert load_class_map(_write_json(tmp_path / "top.json", {"map": {"1": 2**31 - 1}}), ["a", "b"]).mapping == {
        1: 2**31 - 1}


def test_class_map_and_unreadable_image_in_folder(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.array([[0, 200], [200, 0]], dtype=np.uint8)).save(images / "good.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    segmenter = FunctionSegmenter(lambda x: (x[:, 0] > 100).long() * 15, list(map(str, range(21))), 2, "fn")
    run = segment_folder(segmenter, images, tmp_path / "masks", class_map=ClassMap({15: 1, 0: 0}))
    assert [p.name for p in run.written] == ["good.png"]
    assert read_mask(run.written[0]).array[0].tolist() == [[0, 1], [1, 0]]
    assert [case for case, _ in run.failures] == ["broken"] and "cannot read as PNG" in run.failures[0][1]
    unmatched = segment_folder(segmenter, images, tmp_path / "masks2", class_map=ClassMap({0: 0}))
    assert unmatched.written == [] and "15" in dict(unmatched.failures)["good"]
    with pytest.raises(OutputError, match="is the input"):
        segment_folder(segmenter, images, images)


def test_voc_palette() -> None:
    palette = voc_palette()
    assert len(palette) == 256
    assert palette[:5] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    assert palette[15] == (192, 128, 128)


def _raises_type_error(images: torch.Tensor) -> torch.Tensor:
    raise TypeError("boom")


@pytest.mark.parametrize("function, expected", [
    (_raises_type_error, "boom"),
    (lambda images: torch.full((images.shape[0], *images.shape[2:]), -1), "label maps must be non-negative"),
    (lambda images: torch.full((images.shape[0], *images.shape[2:]), 70_000), "label 70000 is larger than a .png"),
    (lambda images: torch.zeros(images.shape[0], 10, *images.shape[2:]), "logits of 10 classes but 2 class names"),
], ids=["segmenter-raises", "negative-labels", "labels-too-large-for-png", "more-classes-than-names"])
def test_a_failing_segmenter_or_unwritable_labels_fail_their_cases_only(tmp_path: Path, function, expected) -> None:
    images = tmp_path / "images"
    _rgb_pngs(images, [(16, 16), (16, 16)])
    segmenter = FunctionSegmenter(function, ["bg", "fg"], 2, "python:test")
    run = segment_folder(segmenter, images, tmp_path / "masks")
    assert run.written == [] and len(run.failures) == 2
    for case_id, message in run.failures:
        assert message.startswith(str(images / case_id)) and expected in message and ".tmp-" not in message
