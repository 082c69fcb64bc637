"""Training presets shipped with segqc: ``segqc train --config small|paper|PATH``.

A preset is a config file (``data``, ``model`` and ``training`` sections) inside
the package, so ``pip install`` users have them:

* ``small``: the CPU preset: a 64 x 64 (2D) or 32^3 (3D) NCSN++ that trains a
  useful model in about 10 (2D) / 20 (3D) minutes on 2 cores;
* ``gpu``: a wider 2D network at 128 x 128 for a GPU (minutes);
* ``paper``: the GNSM paper's 2D network (128 px, NCSN++ nf 128, 200,000 steps);
* ``patches`` / ``patches-gpu``: the 3D patch route for whole volumes
  (:mod:`segqc.data.regions`): 32^3 patches at 4 mm on a CPU, 64^3 at 1.5 mm on a GPU.

Without ``--config``, :func:`choose_preset` picks one from the data (2D or 3D)
and the device: ``small`` on a CPU, ``gpu`` for 2D data on a GPU. Volumes take
the route :func:`segqc.data.routes.volume_route` chooses (``segqc train`` says which and why): 2D slices
with the 2D preset, or 3D patches with ``patches`` / ``patches-gpu``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from segqc.errors import ConfigError, did_you_mean
from segqc.inputs import check_input_file

PRESETS: dict[str, dict[int, str]] = {
    "small": {2: "image2d-small.yaml", 3: "image3d-small.yaml"},
    "gpu": {2: "image2d-gpu.yaml"},
    "paper": {2: "image2d-paper.yaml"},
    "patches": {3: "volume3d-cpu.yaml"},
    "patches-gpu": {3: "volume3d-gpu.yaml"},
}


def preset_path(name: str, spatial_dims: int) -> Path:
    """The packaged file of preset ``name`` for ``spatial_dims``-D data.

    Raises:
        ConfigError: Unknown preset, or none for that dimensionality.
    """
    if name not in PRESETS:
        raise ConfigError(f"--config {name!r}: not a preset ({', '.join(PRESETS)}) nor an existing file"
                          f"{did_you_mean(name, PRESETS)}")
    files = PRESETS[name]
    if spatial_dims not in files:
        raise ConfigError(f"--config {name}: no {spatial_dims}D preset (it exists for "
                          f"{', '.join(f'{d}D' for d in files)} data)")
    return Path(str(resources.files(__package__) / files[spatial_dims]))


def resolve_config(config: str | Path | None, spatial_dims: Callable[[], int], on_gpu: bool) -> tuple[Path, str]:
    """The config file to train with, and a line saying which one and why.

    Args:
        config: A preset name, a file path, or ``None`` to choose automatically.
        spatial_dims: Returns the dimensionality of the model's inputs (2 for
            slices of volumes); called only when a preset is needed.
        on_gpu: Whether training runs on a GPU.

    Returns:
        ``(path, description)``.

    Raises:
        ConfigError: Unknown preset name, or no preset for that dimensionality.
    """
    if config is not None and (Path(config).exists() or str(config) not in PRESETS and Path(config).suffix):
        return check_input_file(config, "config file", "--config"), f"config {config}"
    if config is not None:
        dims = spatial_dims()
        return preset_path(str(config), dims), f"preset '{config}' ({dims}D)"
    dims = spatial_dims()
    name = choose_preset(dims, on_gpu)
    device = "GPU" if on_gpu else "CPU"
    return preset_path(name, dims), f"preset '{name}' (chosen for {dims}D data on a {device})"


def choose_preset(spatial_dims: int, on_gpu: bool) -> str:
    """``gpu`` for 2D data on a GPU, else ``small``."""
    return "gpu" if on_gpu and spatial_dims in PRESETS["gpu"] else "small"
