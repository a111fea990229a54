"""Loss curves, sample grids and montages, FID curves and sweeps: the pictures a person looks at.

Only `save_grid` needs torch (torchvision's `make_grid`); it imports it itself, so that the jobs which plot
tables start in a second instead of spending seconds importing torch.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from ddpm.files import atomic_write  # noqa: E402

if TYPE_CHECKING:
    import torch


def _save_figure(figure, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, nrow: int | None = None, upscale: int = 1) -> None:
    """uint8 images (N, C, H, W) as one PNG grid (torchvision's make_grid), optionally upscaled."""
    import torch
    from torchvision.utils import make_grid

    images = torch.as_tensor(images)
    nrow = nrow or max(1, int(np.ceil(np.sqrt(len(images)))))
    grid = make_grid(images, nrow=nrow, padding=1, pad_value=255).permute(1, 2, 0).numpy()
    image = Image.fromarray(grid[..., 0] if images.shape[1] == 1 else grid)
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def experiment_colors(experiments: Iterable[str]) -> dict[str, str]:
    """One colour per experiment, in config order, shared by every plot: tab10, or tab20 beyond ten experiments
    (colours repeat beyond twenty)."""
    experiments = list(experiments)
    palette = plt.get_cmap("tab10" if len(experiments) <= 10 else "tab20")
    return {name: to_hex(palette(i % palette.N)) for i, name in enumerate(experiments)}


def _legend_below(axes) -> None:
    """The legend under the axes, where it covers no curve or point."""
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)


def add_grid_to_tensorboard(images: np.ndarray, tensorboard_dir: str | Path, epoch: int) -> None:
    """uint8 images (N, C, H, W) as one grid image `samples` at step `epoch` of the run's TensorBoard files."""
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from torchvision.utils import make_grid

    images = torch.as_tensor(images)
    grid = make_grid(images, nrow=max(1, int(np.ceil(np.sqrt(len(images))))), padding=1, pad_value=255)
    with SummaryWriter(str(tensorboard_dir)) as writer:
        writer.add_image("samples", grid, global_step=epoch)

def smooth(values: pd.Series, window: int) -> pd.Series:
    """A centred rolling mean, so curves of noisy per-step losses can be compared."""
    return values.rolling(window, min_periods=1, center=True).mean()


def loss_figure(losses: pd.DataFrame, labels: dict[str, str]) -> Figure:
    """Every experiment's loss against step on one log-scale figure: the mean over its seeds raw (faint) and
    smoothed (bold), and, with several seeds, a band from the lowest to the highest seed's smoothed loss. `labels`
    maps each experiment, in config order, to its legend entry; it also fixes the colours (`experiment_colors`)."""
    colors = experiment_colors(labels)
    figure, axes = plt.subplots(figsize=(8, 5))
    several_seeds = False
    for name in labels:
        by_seed = losses[losses["experiment"] == name].pivot_table(index="step", columns="seed", values="loss")
        window = max(1, len(by_seed) // 50)
        mean = by_seed.mean(axis=1)
        label = labels[name]
        if by_seed.shape[1] > 1:
            several_seeds = True
            smoothed = by_seed.apply(smooth, window=window)
            axes.fill_between(by_seed.index, smoothed.min(axis=1), smoothed.max(axis=1), color=colors[name],
                              alpha=0.2, linewidth=0)
            label = f"{label}, {by_seed.shape[1]} seeds"
        axes.plot(by_seed.index, mean, color=colors[name], alpha=0.2, linewidth=0.8)
        axes.plot(by_seed.index, smooth(mean, window), color=colors[name], linewidth=2, label=label)
    title = "Training loss: mean over seeds, band from min to max seed" if several_seeds else "Training loss"
    axes.set(xlabel="step", ylabel="training loss (MSE on the noise)", yscale="log", title=title)
    axes.grid(True, which="both", alpha=0.3)
    _legend_below(axes)
    return figure


def plot_losses(losses: pd.DataFrame, labels: dict[str, str], path: str | Path) -> None:
    _save_figure(loss_figure(losses, labels), path)


def montage_figure(grids: dict[str, dict[int, str | Path]], labels: dict[str, str]) -> Figure:
    """One row per experiment (in `labels`' order), one column per sample epoch, each cell that epoch's grid; each
    row is named on its left by its label, wrapped and in the experiment's colour."""
    colors = experiment_colors(labels)
    epochs = sorted({e for by_epoch in grids.values() for e in by_epoch})
    figure, axes = plt.subplots(len(labels), len(epochs), figsize=(2.6 * len(epochs), 2.8 * len(labels)), squeeze=False)
    for row, name in enumerate(labels):
        for col, epoch in enumerate(epochs):
            axis = axes[row][col]
            axis.set_xticks([])
            axis.set_yticks([])
            axis.spines[:].set_visible(False)
            if epoch in grids.get(name, {}):
                with Image.open(grids[name][epoch]) as grid:
                    axis.imshow(np.asarray(grid), cmap="gray")
            if row == 0:
                axis.set_title(f"epoch {epoch}")
        axes[row][0].set_ylabel(textwrap.fill(labels[name], 20), rotation=0, ha="right", va="center",
                                color=colors[name], fontsize="medium")
    return figure


def plot_sample_montage(grids: dict[str, dict[int, str | Path]], labels: dict[str, str], path: str | Path) -> None:
    _save_figure(montage_figure(grids, labels), path)


def fid_figure(metrics: pd.DataFrame, labels: dict[str, str]) -> Figure:
    """FID against epoch, one line per experiment (colours as `experiment_colors(labels)`), on integer epoch ticks:
    the mean over its seeds, with error bars of ±1 standard deviation over seeds where it has several; the
    extractor and sample count go in the title."""
    colors = experiment_colors(labels)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    several_seeds = False
    for name in labels:
        fid = metrics[metrics["experiment"] == name].groupby("epoch")["fid"].agg(["mean", "std", "count"])
        axes.plot(fid.index, fid["mean"], marker="o", color=colors[name], label=labels[name])
        if (fid["count"] > 1).any():
            several_seeds = True
            axes.errorbar(fid.index, fid["mean"], yerr=fid["std"].fillna(0.0), fmt="none", ecolor=colors[name],
                          capsize=3)
    title = f"FID ({_fid_title(metrics)})" + ("\nmean over seeds, error bars ±1 std" if several_seeds else "")
    axes.set(xlabel="epoch", ylabel="FID (lower is better)", yscale="log", title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, which="both", alpha=0.3)
    _legend_below(axes)
    return figure


def _fid_title(metrics: pd.DataFrame) -> str:
    """The extractor and sample count the FIDs come from: values are only comparable when these match."""
    return ", ".join(sorted({f"{e} features, {n} samples" for e, n in zip(metrics["extractor"], metrics["num_samples"])}))


def plot_fid(metrics: pd.DataFrame, labels: dict[str, str], path: str | Path) -> None:
    _save_figure(fid_figure(metrics, labels), path)


def sweep_figure(summary: pd.DataFrame, sweep: dict[str, list], experiments: dict[str, dict]) -> Figure:
    """The last sample epoch's mean FID (error bars ±1 std over seeds) against each swept field, one panel a field.

    `sweep` is the config's field -> values; `experiments` maps each experiment to its `parent` (the configured
    experiment) and its `swept` values. In a field's panel, one line joins the experiments that differ only in
    that field."""
    last = summary[summary["epoch"] == summary["epoch"].max()].set_index("experiment")
    figure, axes = plt.subplots(1, len(sweep), figsize=(4.5 * len(sweep), 4), squeeze=False)
    for axis, (field, values) in zip(axes[0], sweep.items()):
        ticks = list(map(str, values))
        lines = {}
        for name, experiment in experiments.items():
            others = ", ".join(f"{k}={v}" for k, v in experiment["swept"].items() if k != field)
            lines.setdefault(experiment["parent"] + (f" ({others})" if others else ""), []).append(
                (ticks.index(str(experiment["swept"][field])), name))
        for label, points in lines.items():
            points.sort()
            rows = last.loc[[name for _, name in points]]
            x = [x for x, _ in points]
            (line,) = axis.plot(x, rows["fid_mean"], marker="o", label=label)
            axis.errorbar(x, rows["fid_mean"], yerr=rows["fid_std"].fillna(0.0), fmt="none",
                          ecolor=line.get_color(), capsize=3)
        axis.set_xticks(range(len(ticks)), ticks)
        axis.set(xlabel=field, ylabel=f"FID at epoch {int(last['epoch'].max())}", yscale="log")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle("FID against each swept field\n(mean over seeds, error bars ±1 std)")
    return figure


def plot_sweep(summary: pd.DataFrame, sweep: dict[str, list], experiments: dict[str, dict], path: str | Path) -> None:
    _save_figure(sweep_figure(summary, sweep, experiments), path)
