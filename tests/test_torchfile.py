"""load_torch_file: state_dict files load; anything else is an InputError naming the file and what it is."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segqc.errors import InputError
from segqc.torchfile import load_torch_file


def test_a_state_dict_file_loads_on_the_cpu(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = torch.nn.Conv2d(1, 3, 3).state_dict()
    torch.save(state, tmp_path / "weights.pth")
    loaded = load_torch_file(tmp_path / "weights.pth", "a state_dict")
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor) and loaded[name].device.type == "cpu"


def test_plain_containers_of_tensors_load(tmp_path: Path) -> None:
    torch.save({"step": 3, "weights": [torch.arange(4)], "name": "ema"}, tmp_path / "checkpoint.pt")
    loaded = load_torch_file(str(tmp_path / "checkpoint.pt"), "a checkpoint")
    assert loaded["step"] == 3 and loaded["name"] == "ema" and torch.equal(loaded["weights"][0], torch.arange(4))


def whole_module(path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), path)  # the whole module pickled, not its state_dict


def python_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=2))


def text_file(path: Path) -> None:
    path.write_text("these are not weights\n")


def safetensors_file(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(2, 2)}, str(path))


def image_file(path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="PNG")


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


def truncated_file(path: Path) -> None:
    torch.save({"w": torch.ones(64)}, path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(("write", "says"), [
    (whole_module, "pickles Python objects"),
    (python_pickle, "cannot read as"),
    (text_file, "found a text file"),
    (safetensors_file, "found a safetensors file"),
    (image_file, "found a file of another format"),
    (empty_file, "found an empty file"),
    (truncated_file, "damaged"),
])
def test_files_that_are_not_state_dicts_give_an_input_error_naming_the_file(write, says: str,
                                                                             tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    write(path)
    with pytest.raises(InputError) as caught:
        load_torch_file(path, "a PyTorch state_dict for the segmenter", remedy="re-save it with torch.save")
    message = str(caught.value)
    assert message.startswith(f"{path}:") and says in message
    assert "a PyTorch state_dict for the segmenter" in message and message.endswith("; re-save it with torch.save")
    assert "\n" not in message


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()], ids=["missing", "folder"])
def test_a_missing_file_or_a_folder_cannot_be_opened(make, tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    make(path)
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: cannot open a state_dict"):
        load_torch_file(path, "a state_dict")


def test_without_a_remedy_the_message_ends_with_the_reason(tmp_path: Path) -> None:
    text_file(tmp_path / "w.pth")
    with pytest.raises(InputError) as caught:
        load_torch_file(tmp_path / "w.pth", "weights")
    assert str(caught.value).endswith("found a text file")
