"""Loss curves, sample grids and montages, FID curves: the pictures a person looks at.

Only `save_grid` needs torch (torchvision's `make_grid`); it imports it itself, so that the jobs which plot
tables start in a second instead of spending seconds importing torch.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from ddpm.files import atomic_write  # noqa: E402

if TYPE_CHECKING:
    import torch


def _save_figure(figure, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, upscale: int = 1) -> None:
    """uint8 images (N, C, H, W) as one PNG grid (torchvision's make_grid), optionally upscaled."""
    from torchvision.utils import make_grid

    nrow = nrow or max(1, int(np.ceil(np.sqrt(len(images)))))
    grid = make_grid(images, nrow=nrow, padding=1, pad_value=255).permute(1, 2, 0).numpy()
    image = Image.fromarray(grid[..., 0] if images.shape[1] == 1 else grid)
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def smooth(values: pd.Series, window: int) -> pd.Series:
    """A centred rolling mean, so curves of noisy per-step losses can be compared."""
    return values.rolling(window, min_periods=1, center=True).mean()


def plot_losses(losses: pd.DataFrame, labels: dict[str, str], path: str | Path) -> None:
    """Every experiment's loss against step on one log-scale figure: raw faint, smoothed bold."""
    figure, axes = plt.subplots(figsize=(8, 5))
    for i, (name, frame) in enumerate(losses.groupby("experiment", sort=False)):
        color = f"C{i}"
        window = max(1, len(frame) // 50)
        axes.plot(frame["step"], frame["loss"], color=color, alpha=0.2, linewidth=0.8)
        axes.plot(frame["step"], smooth(frame["loss"], window), color=color, linewidth=2, label=labels.get(name, name))
    axes.set(xlabel="step", ylabel="training loss (MSE on the noise)", yscale="log", title="Training loss")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    _save_figure(figure, path)


def plot_sample_montage(grids: dict[str, dict[int, str | Path]], labels: dict[str, str], path: str | Path) -> None:
    """One row per experiment, one column per sample epoch, each cell that epoch's grid."""
    epochs = sorted({e for by_epoch in grids.values() for e in by_epoch})
    figure, axes = plt.subplots(len(grids), len(epochs), figsize=(2.6 * len(epochs), 2.8 * len(grids)), squeeze=False)
    for row, (name, by_epoch) in enumerate(grids.items()):
        for col, epoch in enumerate(epochs):
            axis = axes[row][col]
            axis.axis("off")
            if epoch in by_epoch:
                axis.imshow(Image.open(by_epoch[epoch]), cmap="gray")
            if row == 0:
                axis.set_title(f"epoch {epoch}")
        axes[row][0].text(-0.05, 0.5, labels.get(name, name), transform=axes[row][0].transAxes,
                          rotation=90, ha="right", va="center")
    _save_figure(figure, path)


def plot_fid(metrics: pd.DataFrame, labels: dict[str, str], path: str | Path) -> None:
    """FID against epoch, one line per experiment; the extractor and sample count go in the title."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, frame in metrics.groupby("experiment", sort=False):
        axes.plot(frame["epoch"], frame["fid"], marker="o", label=labels.get(name, name))
    kinds = ", ".join(sorted({f"{e} features, {n} samples" for e, n in zip(metrics["extractor"], metrics["num_samples"])}))
    axes.set(xlabel="epoch", ylabel="FID (lower is better)", yscale="log", title=f"FID ({kinds})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    _save_figure(figure, path)
