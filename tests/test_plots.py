"""The comparison plots: one colour per experiment everywhere, readable ticks, legends and row labels."""

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from ddpm import plots

# config order on purpose not alphabetical, and long labels as experiment_labels writes them
LABELS = {
    "zeta": "zeta (lr=0.002, optimizer=adam, ema_decay=0.999, hidden_size=128)",
    "alpha": "alpha (lr=0.0005, optimizer=adamw, ema_decay=None, hidden_size=64)",
    "mid": "mid (lr=0.0001, optimizer=sgd, ema_decay=0.9999, hidden_size=32)",
    "omega": "omega (lr=1e-05, optimizer=adam, ema_decay=0.99, hidden_size=256)",
}
EPOCHS = (1, 2, 3)


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


def losses() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"experiment": name, "seed": 0, "step": step, "loss": rng.uniform(0.1, 1)}
                         for name in LABELS for step in range(1, 21)])


def metrics() -> pd.DataFrame:
    """As aggregate_metrics writes them: sorted by experiment name."""
    rows = [{"experiment": name, "epoch": epoch, "fid": 100.0 / epoch + i, "extractor": "classifier", "num_samples": 16}
            for i, name in enumerate(LABELS) for epoch in EPOCHS]
    return pd.DataFrame(rows).sort_values(["experiment", "epoch"], ignore_index=True)


def line_colors(figure) -> dict[str, str]:
    """Legend label -> the colour of the line carrying it."""
    return {line.get_label(): to_hex(line.get_color()) for line in figure.axes[0].get_lines()
            if not line.get_label().startswith("_")}


def test_experiment_colors_follow_config_order_and_differ():
    colors = plots.experiment_colors(LABELS)
    assert list(colors) == list(LABELS)
    assert len(set(colors.values())) == len(LABELS)
    assert colors["zeta"] == to_hex("tab:blue") and colors["alpha"] == to_hex("tab:orange")
    many = plots.experiment_colors(f"e{i}" for i in range(15))
    assert len(set(many.values())) == 15


def test_loss_and_fid_plots_give_each_experiment_its_colour(close_figures):
    colors = plots.experiment_colors(LABELS)
    expected = {LABELS[name]: color for name, color in colors.items()}
    assert line_colors(plots.loss_figure(losses(), LABELS)) == expected
    assert line_colors(plots.fid_figure(metrics(), LABELS)) == expected


def test_fid_plot_has_integer_epoch_ticks_and_a_legend_beside_the_points(close_figures):
    figure = plots.fid_figure(metrics(), LABELS)
    axes = figure.axes[0]
    low, high = axes.get_xlim()
    ticks = [t for t in axes.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert not axes.get_legend().get_window_extent(renderer).overlaps(axes.get_window_extent(renderer))


def write_grids(folder) -> dict[str, dict[int, str]]:
    rng = np.random.default_rng(0)
    grids = {}
    for name in LABELS:
        for epoch in EPOCHS:
            path = folder / f"{name}_{epoch}.png"
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(path)
            grids.setdefault(name, {})[epoch] = path
    return grids


def experiment_named_by(text) -> str | None:
    """The first word of a text artist: an experiment's name for a row label."""
    words = text.get_text().split()
    return words[0] if words else None


@pytest.fixture
def montage(tmp_path, close_figures):
    """The drawn montage of four experiments with long labels and its renderer; the row labels by experiment."""
    figure = plots.montage_figure(write_grids(tmp_path), LABELS)
    figure.canvas.draw()
    texts = {experiment_named_by(t): t for t in figure.findobj(plt.Text) if experiment_named_by(t) in LABELS}
    assert sorted(texts) == sorted(LABELS)
    return figure, figure.canvas.get_renderer(), texts


def test_montage_row_labels_are_in_their_experiments_colours(montage):
    _, _, texts = montage
    colors = plots.experiment_colors(LABELS)
    assert {name: to_hex(text.get_color()) for name, text in texts.items()} == colors


def test_montage_row_labels_overlap_nothing(montage):
    figure, renderer, texts = montage
    label_boxes = [t.get_window_extent(renderer) for t in texts.values()]
    image_boxes = [axes.get_window_extent(renderer) for axes in figure.axes]
    for a, b in itertools.combinations(label_boxes, 2):
        assert not a.overlaps(b), (a, b)
    for label, image in itertools.product(label_boxes, image_boxes):
        assert not label.overlaps(image), (label, image)


def two_seeds(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """`frame` at seed 0 and again at seed 1 with `column` doubled."""
    return pd.concat([frame.assign(seed=0), frame.assign(seed=1, **{column: 2 * frame[column]})], ignore_index=True)


def test_loss_plot_draws_the_mean_over_seeds_and_a_min_to_max_band(close_figures):
    one = losses()
    axes = plots.loss_figure(two_seeds(one, "loss"), LABELS).axes[0]
    labelled = {line.get_label(): line for line in axes.get_lines() if not line.get_label().startswith("_")}
    assert set(labelled) == {f"{label}, 2 seeds" for label in LABELS.values()}
    bold = labelled[f"{LABELS['zeta']}, 2 seeds"]
    expected = 1.5 * one[one["experiment"] == "zeta"]["loss"].to_numpy()  # the mean of x and 2x, window 1
    np.testing.assert_allclose(bold.get_ydata(), expected)
    band = axes.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(expected.min() / 1.5) and band.max() == pytest.approx(2 * expected.max() / 1.5)


def test_fid_plot_has_error_bars_of_one_std_only_with_several_seeds(close_figures):
    assert not plots.fid_figure(metrics(), LABELS).axes[0].containers
    figure = plots.fid_figure(two_seeds(metrics(), "fid"), LABELS)
    bars = figure.axes[0].containers
    assert len(bars) == len(LABELS) and "error bars ±1 std" in figure.axes[0].get_title()
    zeta = metrics()[metrics()["experiment"] == "zeta"]["fid"].to_numpy()
    segments = bars[0].lines[2][0].get_segments()  # one vertical bar per epoch: mean - std to mean + std
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments], 2 * np.std([zeta, 2 * zeta], axis=0, ddof=1))


def test_sweep_plot_has_a_panel_a_field_and_a_line_per_other_setting(close_figures):
    sweep = {"lr": [1e-4, 2e-4, 5e-4], "batch_size": [64, 128]}
    experiments = {f"base.lr-{lr}.batch_size-{bs}": {"parent": "base", "swept": {"lr": lr, "batch_size": bs}}
                   for lr in sweep["lr"] for bs in sweep["batch_size"]}
    summary = pd.DataFrame([{"experiment": name, "epoch": epoch, "fid_mean": 10.0 + i + epoch, "fid_std": 1.0}
                            for i, name in enumerate(experiments) for epoch in (1, 2)])
    lr_axes, batch_axes = plots.sweep_figure(summary, sweep, experiments).axes
    assert [t.get_text() for t in lr_axes.get_xticklabels()] == ["0.0001", "0.0002", "0.0005"]
    assert sorted(line.get_label() for line in lr_axes.get_lines() if not line.get_label().startswith("_")) == [
        "base (batch_size=128)", "base (batch_size=64)"]
    assert len([line for line in batch_axes.get_lines() if not line.get_label().startswith("_")]) == 3
    line = next(line for line in lr_axes.get_lines() if line.get_label() == "base (batch_size=128)")
    np.testing.assert_allclose(line.get_ydata(), [10.0 + 1 + 2, 10.0 + 3 + 2, 10.0 + 5 + 2])  # the last epoch's means


def test_grid_goes_to_tensorboard_at_its_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ddpm.plots import add_grid_to_tensorboard

    images = np.random.default_rng(0).integers(0, 256, (9, 1, 8, 8), dtype=np.uint8)
    add_grid_to_tensorboard(images, tmp_path, epoch=7)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (image,) = events.Images("samples")
    assert (image.step, image.width, image.height) == (7, 3 * 9 + 1, 3 * 9 + 1)  # 3x3 grid of 8x8, 1-pixel padding
