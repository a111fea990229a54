"""Image I/O: uint8 samples as one grid, written as a PNG file or as a TensorBoard image.

No plotting library here (matplotlib, pandas): sampling imports this module, and a sampling job or `ddpm-sample`
should not spend seconds importing them. torchvision and TensorBoard are imported by the functions that use them.
"""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ddpm.files import atomic_write


def _grid(images: torch.Tensor | np.ndarray, cells: int | None = None, nrow: int | None = None) -> torch.Tensor:
    """uint8 images (N, C, H, W) as one (C, H', W') grid (torchvision's make_grid) of `cells` cells (default N), in
    rows of `nrow` (default ceil(sqrt(cells))): the first `cells` images, then blank cells in the padding's white,
    so that a grid has the same layout and size however many images there are."""
    from torchvision.utils import make_grid

    images = torch.as_tensor(images)
    cells = cells or len(images)
    images = images[:cells]
    blank = torch.full((cells - len(images), *images.shape[1:]), 255, dtype=images.dtype)
    nrow = nrow or max(1, int(np.ceil(np.sqrt(cells))))
    return make_grid(torch.cat([images, blank]), nrow=nrow, padding=1, pad_value=255)


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, cells: int | None = None, nrow: int | None = None,
              upscale: int | None = None) -> None:
    """uint8 images (N, C, H, W) as one PNG grid of `cells` cells (see `_grid`), upscaled `upscale` times (default:
    enough for images of at least 32 pixels a side, so that 8x8 digits can be seen)."""
    grid = _grid(images, cells, nrow).permute(1, 2, 0).numpy()
    upscale = max(1, 32 // images.shape[-1]) if upscale is None else upscale
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def add_grid_to_tensorboard(images: np.ndarray, tensorboard_dir: str | Path, epoch: int, cells: int | None = None,
                            nrow: int | None = None) -> None:
    """uint8 images (N, C, H, W) as one grid image `samples` (of `cells` cells in rows of `nrow`, see `_grid`) at step `epoch`, in the
    run's TensorBoard folder under samples/epoch_<epoch>/. Event files only grow, so that folder's old files are
    deleted first: a grid drawn again replaces the epoch's image instead of adding a second one."""
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(tensorboard_dir) / "samples" / f"epoch_{epoch}"
    for old in folder.glob("*tfevents*"):
        old.unlink()
    with SummaryWriter(str(folder)) as writer:
        writer.add_image("samples", _grid(images, cells, nrow), global_step=epoch)
