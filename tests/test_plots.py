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


SAME_OBJECTIVE = {name: "MSE on x_0, Min-SNR-5 weights" for name in LABELS}


def losses() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"experiment": name, "seed": 0, "step": step, "loss": rng.uniform(0.1, 1)}
                         for name in LABELS for step in range(1, 21)])


def metrics() -> pd.DataFrame:
    """As aggregate_metrics writes them: sorted by experiment name."""
    rows = [{"experiment": name, "epoch": epoch, "fid": 100.0 / epoch + i, "precision": 0.2 * epoch + 0.01 * i,
             "recall": 0.25 * epoch - 0.02 * i, "memorisation": 0.01 * epoch + 0.001 * i, "extractor": "classifier",
             "num_samples": 16, **{f"{m}_sampling_se": np.nan for m in ("fid", *QUALITY)}}
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
    assert line_colors(plots.loss_figure(losses(), LABELS, SAME_OBJECTIVE)) == expected
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


def test_loss_plot_names_what_was_trained_and_warns_when_objectives_differ(close_figures):
    axes = plots.loss_figure(losses(), LABELS, SAME_OBJECTIVE).axes[0]
    assert axes.get_ylabel() == "training loss (MSE on x_0, Min-SNR-5 weights)" and "warning" not in axes.get_title()
    mixed = {**SAME_OBJECTIVE, "zeta": "MSE on the noise"}
    axes = plots.loss_figure(losses(), LABELS, mixed).axes[0]
    assert "not comparable" in axes.get_title() and axes.get_ylabel() == "training loss"
    entries = [t.get_text() for t in axes.get_legend().get_texts()]
    assert f"{LABELS['zeta']} [MSE on the noise]" in entries
    assert f"{LABELS['alpha']} [MSE on x_0, Min-SNR-5 weights]" in entries


def test_loss_plot_draws_the_mean_over_seeds_and_a_min_to_max_band(close_figures):
    one = losses()
    axes = plots.loss_figure(two_seeds(one, "loss"), LABELS, SAME_OBJECTIVE).axes[0]
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


def test_one_seed_has_error_bars_of_one_standard_error_over_its_sampling_draws(close_figures):
    frame = metrics().assign(fid_sampling_se=lambda f: f["fid"] / 10)
    figure = plots.fid_figure(frame, LABELS)
    bars = figure.axes[0].containers
    assert len(bars) == len(LABELS) and "error bars ±1 standard error over sampling draws" in figure.axes[0].get_title()
    assert "std over seeds" not in figure.axes[0].get_title()
    zeta = frame[frame["experiment"] == "zeta"]["fid"].to_numpy()
    segments = bars[0].lines[2][0].get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments], 2 * zeta / 10)


def test_metric_plots_tick_every_sample_epoch(close_figures):
    frame = metrics()
    frame = frame.assign(epoch=frame["epoch"].map(dict(zip(EPOCHS, (10, 40, 55)[:len(EPOCHS)]))))
    for figure in (plots.fid_figure(frame, LABELS), plots.quality_figure(frame, LABELS)):
        assert list(figure.axes[0].get_xticks()) == sorted(frame["epoch"].unique())


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


def mixed_sample_counts() -> pd.DataFrame:
    """metrics() with epoch 1 scored from 16 samples (num_samples_early) and the later epochs from 64."""
    frame = metrics()
    return frame.assign(num_samples=np.where(frame["epoch"] == 1, 16, 64))


def test_fid_plot_names_each_extractor_and_sample_count_once_and_marks_the_smaller_counts_hollow(close_figures):
    figure = plots.fid_figure(mixed_sample_counts(), LABELS)
    axes = figure.axes[0]
    title = axes.get_title()
    assert title.count("classifier") == 1 and title.count("16 samples") == 1 and title.count("64 samples") == 1
    assert "hollow: 16 samples, biased upwards" in title
    colors = set(plots.experiment_colors(LABELS).values())
    marked = [line for line in axes.get_lines() if line.get_marker() not in ("None", "", None)]
    points = {(to_hex(line.get_color()), int(epoch), line.get_markerfacecolor() == "none")
              for line in marked for epoch in line.get_xdata()}
    assert points == {(color, epoch, epoch == 1) for color in colors for epoch in EPOCHS}  # hollow exactly at epoch 1
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert "16 samples, FID biased upwards" in legend and "64 samples" in legend
    one_count = plots.fid_figure(metrics(), LABELS).axes[0]
    assert one_count.get_title() == "FID (classifier features, 16 samples)"
    assert not any(line.get_markerfacecolor() == "none" for line in one_count.get_lines())


def tick_label_texts(figure) -> list[str]:
    """The drawn major and minor tick labels of every axes of a figure."""
    figure.canvas.draw()
    return [label.get_text() for axes in figure.axes for axis in (axes.xaxis, axes.yaxis)
            for label in axis.get_ticklabels(minor=False) + axis.get_ticklabels(minor=True) if label.get_visible()]


def sweep_case(fields: dict[str, list], fid: float = 10.0):
    """A sweep over `fields` of the experiment `ddpm_paper`: its config, experiments and summary (FIDs from `fid`)."""
    experiments = {}
    for values in itertools.product(*fields.values()):
        swept = dict(zip(fields, values))
        experiments["ddpm_paper." + ".".join(f"{k}-{v}" for k, v in swept.items())] = {"parent": "ddpm_paper",
                                                                                      "swept": swept}
    summary = pd.DataFrame([{"experiment": name, "epoch": epoch, "fid_mean": fid + 10 * i + epoch, "fid_std": 1.0}
                            for i, name in enumerate(experiments) for epoch in (1, 2)])
    return summary, fields, experiments


def test_fid_axes_over_a_narrow_range_have_plain_tick_labels(close_figures):
    narrow = metrics().assign(fid=lambda frame: 800.0 + 25 * frame["epoch"] + frame.index % 4)  # 825..879
    wide = metrics().assign(fid=lambda frame: 5.0 * 10.0 ** (frame["epoch"] - 1))  # 5..500
    sweep = sweep_case({"lr": [1e-4, 2e-4]}, fid=800.0)
    for figure in (plots.fid_figure(narrow, LABELS), plots.fid_figure(wide, LABELS), plots.sweep_figure(*sweep)):
        labels = [text for text in tick_label_texts(figure) if text]
        assert labels and not [text for text in labels if "$" in text or "10^" in text or "×10" in text], labels
    assert plots.fid_figure(narrow, LABELS).axes[0].get_yscale() == "linear"  # less than a decade: linear
    assert plots.fid_figure(wide, LABELS).axes[0].get_yscale() == "log"


def text_boxes_of(axes, renderer) -> list:
    """The bounding boxes of an axes' drawn text: its title, each axis (its drawn tick labels and its label) and
    its legend."""
    boxes = [axes.title.get_window_extent(renderer)] if axes.get_title() else []
    boxes += [axis.get_tightbbox(renderer) for axis in (axes.xaxis, axes.yaxis)]
    legend = axes.get_legend()
    return boxes + ([legend.get_window_extent(renderer)] if legend is not None else [])


@pytest.mark.parametrize("fields", [
    {"lr": [1e-4, 2e-4, 5e-4], "attention_resolutions": [[16], [8, 16]]},
    {"lr": [1e-4, 2e-4], "batch_size": [64, 128], "channel_mult": [[1, 2], [1, 2, 2, 2]]},
])
def test_sweep_panels_draw_no_text_over_each_other(fields, close_figures):
    figure = plots.sweep_figure(*sweep_case(fields))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    panels = [text_boxes_of(axes, renderer) for axes in figure.axes]
    assert len(panels) == len(fields)
    for first, second in itertools.combinations(range(len(panels)), 2):
        for a, b in itertools.product(panels[first], panels[second]):
            assert not a.overlaps(b), (first, second, a, b)
        for box in panels[second]:
            assert not box.overlaps(figure.axes[first].get_window_extent(renderer))
        for box in panels[first]:
            assert not box.overlaps(figure.axes[second].get_window_extent(renderer))
    for axes in figure.axes:  # nor a legend over its own panel's axes, ticks or axis labels
        legend = axes.get_legend().get_window_extent(renderer)
        for box in [axes.get_window_extent(renderer)] + [axis.get_tightbbox(renderer) for axis in (axes.xaxis, axes.yaxis)]:
            assert not legend.overlaps(box), (legend, box)
    title = figure._suptitle.get_window_extent(renderer)
    assert not any(title.overlaps(box) for boxes in panels for box in boxes)


def test_montage_row_labels_wrap_between_words_only(tmp_path, close_figures):
    labels = {"ddpm": "ddpm (attention_resolutions=[16], channel_mult=[1, 2], hidden_size=64)",
              "course": "course (course.lr-0.0001-with-a-long-name, lr=0.0001)"}
    grids = {name: {1: path} for name, path in zip(labels, write_grids(tmp_path)["zeta"].values())}
    figure = plots.montage_figure(grids, labels)
    words = {name: label.split() for name, label in labels.items()}
    drawn = {name: axes.get_ylabel() for name, axes in zip(labels, figure.axes)}
    for name, text in drawn.items():
        assert "\n" in text  # still wrapped
        assert [word for line in text.split("\n") for word in line.split()] == words[name], text


QUALITY = ("precision", "recall", "memorisation")


def test_quality_plot_has_a_panel_a_metric_with_each_experiment_in_its_colour(close_figures):
    frame = metrics()
    figure = plots.quality_figure(frame, LABELS)
    assert len(figure.axes) == len(QUALITY)
    colors = plots.experiment_colors(LABELS)
    for axes, column in zip(figure.axes, QUALITY):
        assert column in axes.get_ylabel()
        assert axes.get_ylim() == pytest.approx((-0.03, 1.03))
        lines = {line.get_label(): line for line in axes.get_lines() if not line.get_label().startswith("_")}
        assert {label: to_hex(line.get_color()) for label, line in lines.items()} == {
            LABELS[name]: color for name, color in colors.items()}
        for name in LABELS:
            np.testing.assert_allclose(lines[LABELS[name]].get_ydata(), frame[frame["experiment"] == name][column])
        low, high = axes.get_xlim()
        assert all(float(t).is_integer() for t in axes.get_xticks() if low <= t <= high)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == list(LABELS.values())
    for axes in figure.axes:  # the legend under the panels, over none of them nor their tick labels
        assert not legend.get_window_extent(renderer).overlaps(axes.get_tightbbox(renderer))
    assert [axes.get_title() for axes in figure.axes] == ["feature space, k = 3"] * 2 + ["pixel space"]
    assert "(classifier features, 16 samples)" in figure._suptitle.get_text()


def test_quality_plot_has_error_bars_over_seeds_and_hollow_points_for_fewer_samples(close_figures):
    assert not any(axes.containers for axes in plots.quality_figure(metrics(), LABELS).axes)
    figure = plots.quality_figure(two_seeds(metrics(), "precision"), LABELS)
    precision = figure.axes[0]
    assert len(precision.containers) == len(LABELS) and "error bars ±1 std" in figure._suptitle.get_text()
    zeta = metrics()[metrics()["experiment"] == "zeta"]["precision"].to_numpy()
    segments = precision.containers[0].lines[2][0].get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments], 2 * np.std([zeta, 2 * zeta], axis=0, ddof=1))
    mixed = plots.quality_figure(mixed_sample_counts(), LABELS)
    assert "hollow: 16 samples, recall not comparable" in mixed._suptitle.get_text()
    for axes in mixed.axes:
        hollow = {int(epoch) for line in axes.get_lines() if line.get_markerfacecolor() == "none"
                  for epoch in line.get_xdata()}
        assert hollow == {1}
    assert "16 samples, recall not comparable" in [t.get_text() for t in mixed.legends[0].get_texts()]


def test_quality_plot_is_written(tmp_path):
    plots.plot_quality(metrics(), LABELS, tmp_path / "quality.png")
    with Image.open(tmp_path / "quality.png") as image:
        assert image.format == "PNG" and image.size[0] > 900


def test_quality_plot_has_a_class_accuracy_panel_only_where_experiments_have_it(close_figures):
    frame = metrics()
    assert "class accuracy" not in plots.quality_figure(frame.assign(class_accuracy=np.nan), LABELS)._suptitle.get_text()
    conditional = frame.assign(class_accuracy=np.where(frame["experiment"] == "zeta", 0.1 * frame["epoch"], np.nan),
                               class_accuracy_sampling_se=np.nan)
    figure = plots.quality_figure(conditional, LABELS)
    assert len(figure.axes) == len(QUALITY) + 1 and "class accuracy" in figure.axes[-1].get_ylabel()
    assert figure._suptitle.get_text().startswith("Precision, recall, memorisation and class accuracy (")
    lines = {line.get_label(): line for line in figure.axes[-1].get_lines() if not line.get_label().startswith("_")}
    np.testing.assert_allclose(lines[LABELS["zeta"]].get_ydata(), [0.1, 0.2, 0.3])
    assert np.isnan(lines[LABELS["alpha"]].get_ydata()).all()  # unconditional: in the legend, not on the panel


def sampling_sweep_metrics() -> pd.DataFrame:
    """Metric rows of two experiments, two seeds each, sampled with every guidance scale and sampler at epochs 1
    and 2: FID rises with the scale and is 1 lower with dpm_solver; seed 1 doubles precision's distance from 0.5."""
    rows = []
    for i, name in enumerate(("zeta", "alpha")):
        for seed, epoch, scale, sampler in itertools.product((0, 1), (1, 2), (1.0, 2.0, 4.0), ("ddim", "dpm_solver")):
            fid = 10.0 * i + scale + (sampler == "ddim") + 5.0 / epoch
            rows.append({"experiment": name, "seed": seed, "epoch": epoch, "guidance_scale": scale,
                         "sampler": sampler, "fid": fid, "precision": 0.5 + 0.05 * scale * (1 + seed),
                         "recall": 0.9 - 0.1 * scale, "extractor": "classifier", "num_samples": 16,
                         **{f"{m}_sampling_se": 0.1 for m in ("fid", "precision", "recall")}})
    return pd.DataFrame(rows)


SAMPLING_SWEEP = {"guidance_scale": [1.0, 2.0, 4.0], "sampler": ["ddim", "dpm_solver"]}


def test_sampling_sweep_plot_has_a_row_a_field_and_a_line_per_experiment_and_other_value(close_figures):
    labels = {name: LABELS[name] for name in ("zeta", "alpha")}
    figure = plots.sampling_sweep_figure(sampling_sweep_metrics(), SAMPLING_SWEEP, {f: f for f in SAMPLING_SWEEP},
                                         labels)
    assert len(figure.axes) == 2 * 3  # fid, precision, recall for each swept field
    (fid, precision, recall), (by_sampler, *_) = np.reshape(figure.axes, (2, 3))
    assert [a.get_ylabel() for a in (fid, precision, recall)] == [
        "fid (lower is better)", "precision (higher is better)", "recall (higher is better)"]
    for axes, per_experiment in ((fid, 2), (precision, 2), (by_sampler, 3)):  # a line per value of the other field
        labelled = [line for line in axes.get_lines() if not line.get_label().startswith("_")]
        assert len(labelled) == 2 * per_experiment
        colors = plots.experiment_colors(labels)
        assert {to_hex(line.get_color()) for line in labelled if line.get_label().startswith("zeta")} == {colors["zeta"]}
    assert [t.get_text() for t in by_sampler.get_xticklabels()] == ["ddim", "dpm_solver"]
    assert [t.get_text() for t in fid.get_xticklabels()] == ["1", "2", "4"]
    lines = {line.get_label(): line for line in fid.get_lines()}
    ddim = lines[f"{LABELS['alpha']} (sampler=ddim)"]
    np.testing.assert_allclose(ddim.get_xdata(), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(ddim.get_ydata(), [10.0 + s + 1 + 2.5 for s in (1.0, 2.0, 4.0)])  # epoch 2, the last
    by_scale = {line.get_label(): line for line in by_sampler.get_lines()}
    np.testing.assert_allclose(by_scale[f"{LABELS['alpha']} (guidance_scale=2)"].get_xdata(), [0, 1])  # categorical
    np.testing.assert_allclose(by_scale[f"{LABELS['alpha']} (guidance_scale=2)"].get_ydata(), [15.5, 14.5])
    segments = precision.containers[0].lines[2][0].get_segments()  # two seeds: ±1 std over them
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments],
                               [2 * np.std([0.05 * v, 0.1 * v], ddof=1) for v in (1.0, 2.0, 4.0)])
    assert "at epoch 2" in figure._suptitle.get_text() and "±1 std over seeds" in figure._suptitle.get_text()


def test_sampling_sweep_plot_adds_class_accuracy_and_is_written(tmp_path):
    frame = sampling_sweep_metrics().assign(class_accuracy=0.5, class_accuracy_sampling_se=0.01)
    figure = plots.sampling_sweep_figure(frame, {"sampler": ["ddim", "dpm_solver"]},
                                         {"sampler": "sampler"}, {"zeta": "zeta", "alpha": "alpha"}, "fid")
    assert [a.get_ylabel().split()[0] for a in figure.axes] == ["fid", "precision", "recall", "class_accuracy"]
    plt.close(figure)
    plots.plot_sampling_sweep(frame, SAMPLING_SWEEP, {f: f for f in SAMPLING_SWEEP}, LABELS, "fid",
                              tmp_path / "sampling_sweep.png")
    with Image.open(tmp_path / "sampling_sweep.png") as image:
        assert image.format == "PNG" and image.size[0] > 900


def test_fid_plot_draws_each_sampling_variant_in_its_own_line_style(close_figures):
    frame = sampling_sweep_metrics()
    figure = plots.fid_figure(frame[frame["sampler"] == "ddim"].drop(columns="sampler"), LABELS)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == sorted(f"{LABELS[name]} (guidance_scale={s})" for name in ("zeta", "alpha") for s in (1, 2, 4))
    assert {lines[f"{LABELS['zeta']} (guidance_scale={s})"].get_linestyle() for s in (1, 2, 4)} == {"-", "--", ":"}
    np.testing.assert_allclose(lines[f"{LABELS['zeta']} (guidance_scale=2)"].get_ydata(), [2 + 1 + 5, 2 + 1 + 2.5])


def test_sweep_plot_shows_each_experiment_at_its_best_sampling_variant(close_figures):
    sweep = {"lr": [1e-4, 2e-4]}
    experiments = {f"base.lr-{lr}": {"parent": "base", "swept": {"lr": lr}} for lr in sweep["lr"]}
    summary = pd.DataFrame([{"experiment": name, "epoch": 2, "guidance_scale": scale, "fid_mean": fid + i,
                             "fid_std": 1.0} for i, name in enumerate(experiments)
                            for scale, fid in ((1.0, 20.0), (3.0, 10.0), (5.0, 15.0))])
    (axes,) = plots.sweep_figure(summary, sweep, experiments).axes
    (line,) = [line for line in axes.get_lines() if line.get_label() == "base"]
    np.testing.assert_allclose(line.get_ydata(), [10.0, 11.0])
