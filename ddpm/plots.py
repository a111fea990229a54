"""Loss curves, sample montages, FID and quality curves, sweeps and sampling sweeps: the pictures a person looks at.

No torch here, so that the jobs which plot tables start in a second; `ddpm.images` draws the sample grids.
"""

from __future__ import annotations

import io
import itertools
import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogFormatter, NullFormatter  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402
from PIL import Image  # noqa: E402

from ddpm.checks import variant_columns, variant_label  # noqa: E402
from ddpm.files import atomic_write  # noqa: E402


def _save_figure(figure, path: str | Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def experiment_colors(experiments: Iterable[str]) -> dict[str, str]:
    """One colour per experiment, in config order, shared by every plot: tab10, or tab20 beyond ten experiments
    (colours repeat beyond twenty)."""
    experiments = list(experiments)
    palette = plt.get_cmap("tab10" if len(experiments) <= 10 else "tab20")
    return {name: to_hex(palette(i % palette.N)) for i, name in enumerate(experiments)}


def _legend_below(axes, handles: list | None = None) -> None:
    """The legend (of `handles`, default the labelled artists) under the axes, where it covers no curve or point."""
    axes.legend(**({"handles": handles} if handles is not None else {}), loc="upper center",
                bbox_to_anchor=(0.5, -0.15), frameon=False)


class _PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log-axis ticks to label, written as plain numbers (20, 300), never 2×10¹."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _fid_scale(axes, fids: Iterable[float]) -> None:
    """A log FID axis when the plotted FIDs span a factor of 10 or more, else a linear one; plain numbers on either.
    On a log axis spanning under two decades, the ticks between decades (2, 3, 4, 6 times one) are labelled too."""
    fids = [fid for fid in fids if np.isfinite(fid)]
    if fids and min(fids) > 0 and max(fids) >= 10 * min(fids):
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(_PlainLogFormatter())
        axes.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    else:
        axes.set_yscale("linear")
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)


NOT_COMPARABLE = "warning: the experiments train different objectives, so their losses are not comparable"


def smooth(values: pd.Series, window: int) -> pd.Series:
    """A centred rolling mean, so curves of noisy per-step losses can be compared."""
    return values.rolling(window, min_periods=1, center=True).mean()


def loss_figure(losses: pd.DataFrame, labels: dict[str, str], objectives: dict[str, str]) -> Figure:
    """Every experiment's loss against step on one log-scale figure: the mean over its seeds raw (faint) and
    smoothed (bold), and, with several seeds, a band from the lowest to the highest seed's smoothed loss. `labels`
    maps each experiment, in config order, to its legend entry; it also fixes the colours (`experiment_colors`).
    `objectives` maps each experiment to what its loss measures (`ddpm.experiments.loss_objective`): one objective
    labels the axis; several are named in the legend, with a warning that their losses are not comparable."""
    colors = experiment_colors(labels)
    comparable = len(set(objectives.values())) == 1
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
        if not comparable:
            label = f"{label} [{objectives[name]}]"
        axes.plot(by_seed.index, mean, color=colors[name], alpha=0.2, linewidth=0.8)
        axes.plot(by_seed.index, smooth(mean, window), color=colors[name], linewidth=2, label=label)
    title = "Training loss: mean over seeds, band from min to max seed" if several_seeds else "Training loss"
    if not comparable:
        title += f"\n{NOT_COMPARABLE}"
    ylabel = f"training loss ({next(iter(objectives.values()))})" if comparable else "training loss"
    axes.set(xlabel="step", ylabel=ylabel, yscale="log", title=title)
    axes.grid(True, which="both", alpha=0.3)
    _legend_below(axes)
    return figure


def plot_losses(losses: pd.DataFrame, labels: dict[str, str], objectives: dict[str, str], path: str | Path) -> None:
    _save_figure(loss_figure(losses, labels, objectives), path)


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
        label = textwrap.fill(labels[name], 20, break_long_words=False, break_on_hyphens=False)  # between words
        axes[row][0].set_ylabel(label, rotation=0, ha="right", va="center",
                                color=colors[name], fontsize="medium")
    return figure


def plot_sample_montage(grids: dict[str, dict[int, str | Path]], labels: dict[str, str], path: str | Path) -> None:
    _save_figure(montage_figure(grids, labels), path)


VARIANT_STYLES = ("-", "--", ":", "-.")  # the line styles of an experiment's sampling variants, in turn


def _variants(runs: pd.DataFrame, columns: list[str], label: str):
    """(label, style, rows) of each sampling variant (a value of `columns`) among `runs`, the variant's values after
    the experiment's `label`; `runs` itself under `label`, in a solid line, without variant columns."""
    if not columns:
        yield label, VARIANT_STYLES[0], runs
        return
    groups = runs.groupby(columns, dropna=False)
    for style, (values, rows) in zip(itertools.cycle(VARIANT_STYLES), groups):
        variant = variant_label(dict(zip(columns, values)))
        yield (f"{label} ({variant})" if variant else label), style, rows


def _mean_and_errors(runs: pd.DataFrame, by: str, column: str) -> tuple[pd.Series, pd.Series, set[str]]:
    """`column`'s mean over the rows (the seeds) at each value of `by`, and its error bars: ±1 standard deviation
    over seeds where there are several, else ±1 standard error over the sampling draws (`<column>_sampling_se`)
    where there are several (NaN where neither); with what the error bars show (ERROR_BARS' keys that occur)."""
    values = runs.groupby(by)[column].agg(["mean", "std", "count"])
    sampling_se = runs.groupby(by)[f"{column}_sampling_se"].first()
    errors = values["std"].where(values["count"] > 1, sampling_se.where(values["count"] == 1))
    shown = {"seeds" if count > 1 else "draws" for count, error in zip(values["count"], errors) if error == error}
    return values["mean"], errors, shown


def _metric_lines(axes, metrics: pd.DataFrame, labels: dict[str, str], column: str,
                  markers: dict[tuple[str, int], tuple[str, bool]]) -> tuple[list[Line2D], bool]:
    """`column` against epoch on `axes`, one line per experiment in its colour (`experiment_colors(labels)`), and
    with a sampling sweep one per experiment and sampling variant, in its own line style (VARIANT_STYLES): the
    mean over its seeds, a marker per point from `markers` by the epoch's (extractor, fewest samples), and error
    bars as `_mean_and_errors` gives them. Returns the lines, for the legend, and what the error bars show
    (ERROR_BARS' keys that occur)."""
    colors = experiment_colors(labels)
    variants = variant_columns(metrics.columns)
    shown = set()
    lines = []
    for name in labels:
        for label, style, runs in _variants(metrics[metrics["experiment"] == name], variants, labels[name]):
            mean, errors, errors_shown = _mean_and_errors(runs, "epoch", column)
            (line,) = axes.plot(mean.index, mean, color=colors[name], linestyle=style, label=label)
            lines.append(line)
            fewest = runs.sort_values("num_samples").groupby("epoch")[["extractor", "num_samples"]].first()
            for key, epochs in fewest.groupby(["extractor", "num_samples"]).groups.items():  # an epoch's fewest
                marker, filled = markers[key]
                axes.plot(epochs, mean.loc[epochs], linestyle="none", marker=marker, color=colors[name],
                          markerfacecolor=colors[name] if filled else "none", label="_nolegend_")
            shown |= errors_shown
            if errors.notna().any():
                axes.errorbar(mean.index, mean, yerr=errors.fillna(0.0), fmt="none", ecolor=colors[name], capsize=3)
    return lines, shown


ERROR_BARS = {"seeds": "mean over seeds, error bars ±1 std over seeds",
              "draws": "error bars ±1 standard error over sampling draws"}


def _error_bar_note(shown: set[str]) -> str:
    """A title's last line, saying what the error bars show; empty without error bars."""
    return "\n" + "; ".join(ERROR_BARS[key] for key in ERROR_BARS if key in shown) if shown else ""


def _epoch_axis(axes, epochs: Iterable[int]) -> None:
    """A tick at each sample epoch and a grid on both axes."""
    axes.set_xticks(sorted(set(epochs)))
    axes.grid(True, which="both", alpha=0.3)


def fid_figure(metrics: pd.DataFrame, labels: dict[str, str]) -> Figure:
    """FID against epoch, one line per experiment (colours as `experiment_colors(labels)`), on integer epoch ticks:
    the mean over its seeds, with error bars as `_metric_lines` draws them (over seeds, else over draws). FIDs from
    fewer samples than the extractor's most are biased upwards: their points are hollow (see `_sample_markers`);
    the title names each extractor and sample count once, the legend each marker."""
    markers = _sample_markers(metrics)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    handles, shown = _metric_lines(axes, metrics, labels, "fid", markers)
    if len(markers) > 1:
        handles += _marker_legend(markers)
    axes.set(xlabel="epoch", ylabel="FID (lower is better)", title=f"FID ({_fid_title(markers)})" + _error_bar_note(shown))
    lines = ["experiment", "epoch", *variant_columns(metrics.columns)]
    _fid_scale(axes, metrics.groupby(lines, dropna=False)["fid"].mean())
    _epoch_axis(axes, metrics["epoch"])
    _legend_below(axes, handles)
    return figure


FEWER_SAMPLES = "recall not comparable"  # what the quality plot says of the smaller sample counts
QUALITY_PANELS = {  # metric column -> its panel's title and y label
    "precision": ("feature space, k = {k}", "precision (higher is better)"),
    "recall": ("feature space, k = {k}", "recall (higher is better)"),
    "memorisation": ("pixel space", "memorisation (lower is better)"),
}
CLASS_ACCURACY_PANEL = ("the dataset's classifier", "class accuracy (higher is better)")  # class-conditional samples


def quality_figure(metrics: pd.DataFrame, labels: dict[str, str], k: int = 3) -> Figure:
    """Precision, recall (Kynkäänniemi et al. 2019, k-NN balls in the extractor's feature space) and the
    memorisation rate (pixel space) against epoch, a panel each, and where class-conditional experiments have it the
    class accuracy (the share of samples that the dataset's classifier assigns to the label they were drawn with),
    drawn like `fid_figure`: one line per experiment in its colour, the mean over seeds with ±1 std error bars,
    hollow points from fewer samples, on a 0-to-1 axis; one legend under the panels. Precision and memorisation are
    shares of the samples, the same in expectation for any number of samples; recall's balls shrink as the samples
    grow in number, so recall from fewer samples is not comparable with the others."""
    markers = _sample_markers(metrics)
    quality = QUALITY_PANELS
    conditional = "class_accuracy" in metrics and metrics["class_accuracy"].notna().any()
    if conditional:
        quality = {**QUALITY_PANELS, "class_accuracy": CLASS_ACCURACY_PANEL}
    figure, panels = plt.subplots(1, len(quality), figsize=(4.2 * len(quality), 4.2), layout="constrained")
    shown = set()
    for axes, (column, (title, ylabel)) in zip(panels, quality.items()):
        handles, panel_shown = _metric_lines(axes, metrics, labels, column, markers)
        shown |= panel_shown
        axes.set(xlabel="epoch", ylabel=ylabel, title=title.format(k=k), ylim=(-0.03, 1.03))
        _epoch_axis(axes, metrics["epoch"])
    if len(markers) > 1:
        handles += _marker_legend(markers, smaller=FEWER_SAMPLES)
    figure.legend(handles=handles, loc="outside lower center", frameon=False)
    names = ("Precision, recall, memorisation and class accuracy" if conditional
             else "Precision, recall and memorisation")
    figure.suptitle(f"{names} ({_fid_title(markers, smaller=FEWER_SAMPLES)})" + _error_bar_note(shown))
    return figure


def plot_quality(metrics: pd.DataFrame, labels: dict[str, str], path: str | Path) -> None:
    _save_figure(quality_figure(metrics, labels), path)


HOLLOW_MARKERS = ("o", "s", "^", "D", "v")  # for the smaller sample counts of an extractor, largest first


def _sample_markers(metrics: pd.DataFrame) -> dict[tuple[str, int], tuple[str, bool]]:
    """(extractor, num_samples) -> (marker, filled): each extractor's largest sample count a filled circle, its
    smaller counts hollow markers, each its own shape. Only FIDs of one extractor and count are comparable."""
    markers = {}
    for extractor, counts in metrics.groupby("extractor")["num_samples"]:
        largest, *smaller = sorted(set(counts), reverse=True)
        markers[(extractor, int(largest))] = ("o", True)
        for i, count in enumerate(smaller):
            markers[(extractor, int(count))] = (HOLLOW_MARKERS[i % len(HOLLOW_MARKERS)], False)
    return markers


def _fid_title(markers: dict[tuple[str, int], tuple[str, bool]], smaller: str = "biased upwards") -> str:
    """Each extractor once, with its largest sample count and, hollow, its smaller ones, said to be `smaller`."""
    parts = []
    for extractor in dict.fromkeys(extractor for extractor, _ in markers):
        counts = [(count, filled) for (e, count), (_, filled) in markers.items() if e == extractor]
        part = f"{extractor} features, {next(count for count, filled in counts if filled)} samples"
        fewer = sorted(count for count, filled in counts if not filled)
        if fewer:
            part += f"; hollow: {' or '.join(map(str, fewer))} samples, {smaller}"
        parts.append(part)
    return " | ".join(parts)


def _marker_legend(markers: dict[tuple[str, int], tuple[str, bool]], smaller: str = "FID biased upwards") -> list[Line2D]:
    """A grey legend entry per sample count, in its marker; the smaller counts said to be `smaller`."""
    several_extractors = len({extractor for extractor, _ in markers}) > 1
    return [Line2D([], [], color="grey", linestyle="none", marker=marker, markerfacecolor="grey" if filled else "none",
                   label=(f"{extractor}, " if several_extractors else "") + f"{count} samples"
                   + ("" if filled else f", {smaller}"))
            for (extractor, count), (marker, filled) in markers.items()]


def plot_fid(metrics: pd.DataFrame, labels: dict[str, str], path: str | Path) -> None:
    _save_figure(fid_figure(metrics, labels), path)


def sweep_figure(summary: pd.DataFrame, sweep: dict[str, list], experiments: dict[str, dict]) -> Figure:
    """The last sample epoch's mean FID (error bars ±1 std over seeds) against each swept field, one panel a field.

    `sweep` is the config's field -> values; `experiments` maps each experiment to its `parent` (the configured
    experiment) and its `swept` values. In a field's panel, one line joins the experiments that differ only in
    that field. Each panel's legend sits under it, its entries wrapped between words, and the layout is
    constrained, so that no panel's text runs over another's. With a sampling sweep as well, each experiment is
    shown at its sampling variant of the lowest FID."""
    last = summary[summary["epoch"] == summary["epoch"].max()]
    last = last.sort_values("fid_mean", kind="stable").drop_duplicates("experiment").set_index("experiment")
    figure, axes = plt.subplots(1, len(sweep), figsize=(4.5 * len(sweep), 4.5), squeeze=False, layout="constrained")
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
            (line,) = axis.plot(x, rows["fid_mean"], marker="o",
                                label=textwrap.fill(label, 30, break_long_words=False, break_on_hyphens=False))
            axis.errorbar(x, rows["fid_mean"], yerr=rows["fid_std"].fillna(0.0), fmt="none",
                          ecolor=line.get_color(), capsize=3)
        axis.set_xticks(range(len(ticks)), ticks)
        axis.set(xlabel=field, ylabel=f"FID at epoch {int(last['epoch'].max())}")
        _fid_scale(axis, last["fid_mean"])
        axis.grid(True, which="both", alpha=0.3)
        below_axis_label = offset_copy(axis.transAxes, figure, y=-40, units="points")  # however tall the panel
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below_axis_label, frameon=False,
                    fontsize="small")
    figure.suptitle("FID against each swept field\n(mean over seeds, error bars ±1 std)")
    return figure


def plot_sweep(summary: pd.DataFrame, sweep: dict[str, list], experiments: dict[str, dict], path: str | Path) -> None:
    _save_figure(sweep_figure(summary, sweep, experiments), path)


SWEEP_METRICS = ("precision", "recall")  # beside the ranking metric in every sampling sweep; class accuracy where scored


def sampling_sweep_figure(metrics: pd.DataFrame, swept: dict[str, list], columns: dict[str, str],
                          labels: dict[str, str], metric: str = "fid") -> Figure:
    """`metric` (the summary's ranking metric), precision, recall and, where class-conditional experiments have it,
    the class accuracy against each field of the sampling sweep, a row of panels a field (`swept`: field -> its
    values as configured; `columns`: field -> its column in the metric rows), at each experiment's last sample
    epoch. One line per experiment in its colour (`experiment_colors(labels)`), and per value of the other swept
    fields, in its own line style; each point the mean over seeds, with error bars as `_mean_and_errors` gives them.
    Numbers lie on a numeric axis (logarithmic where they span a factor of 10 or more), names (samplers, spacings)
    on a categorical one, in the configured order. Each row's legend sits beside its last panel."""
    colors = experiment_colors(labels)
    scored = [metric, *SWEEP_METRICS]
    if "class_accuracy" in metrics and metrics["class_accuracy"].notna().any():
        scored.append("class_accuracy")
    last = metrics[metrics["epoch"] == metrics.groupby("experiment")["epoch"].transform("max")]
    figure, axes = plt.subplots(len(swept), len(scored), figsize=(4.2 * len(scored), 3.8 * len(swept)), squeeze=False,
                                layout="constrained")
    shown = set()
    for row, (field, values) in zip(axes, swept.items()):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        positions = {str(v): i for i, v in enumerate(values)}  # of the names on a categorical axis
        others = [columns[other] for other in swept if other != field]
        plotted = {column: [] for column in scored}
        for name in labels:
            for label, style, runs in _variants(last[last["experiment"] == name], others, labels[name]):
                x = runs[columns[field]]
                runs = runs.assign(x=x if numeric else x.map(lambda v: positions[str(v)]))
                for panel, column in zip(row, scored):
                    mean, errors, errors_shown = _mean_and_errors(runs, "x", column)
                    panel.plot(mean.index, mean, color=colors[name], linestyle=style, marker="o", label=label)
                    plotted[column] += list(mean)
                    shown |= errors_shown
                    if errors.notna().any():
                        panel.errorbar(mean.index, mean, yerr=errors.fillna(0.0), fmt="none", ecolor=colors[name],
                                       capsize=3)
        for panel, column in zip(row, scored):
            _sweep_axis(panel, values, numeric)
            panel.set(xlabel=field, ylabel=f"{column} ({'lower' if column == metric else 'higher'} is better)")
            panel.grid(True, which="both", alpha=0.3)
            if column == metric:
                _fid_scale(panel, plotted[column])
            else:
                panel.set_ylim(-0.03, 1.03)
        row[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize="small")
    epochs = sorted(set(last["epoch"]))
    at = f"epoch {epochs[0]}" if len(epochs) == 1 else "each experiment's last epoch"
    figure.suptitle(f"{metric}, {', '.join(scored[1:-1])} and {scored[-1]} against each swept sampling field, at {at}"
                    + _error_bar_note(shown))
    return figure


def _sweep_axis(axes, values: list, numeric: bool) -> None:
    """A tick at each swept value: at the value on a numeric axis, logarithmic where the values are all > 0 and span
    a factor of 10 or more; at positions 0, 1, ... on a categorical one."""
    if not numeric:
        axes.set_xticks(range(len(values)), [str(v) for v in values])
        axes.set_xlim(-0.5, len(values) - 0.5)
        return
    if min(values) > 0 and max(values) >= 10 * min(values):
        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xticks(sorted(values), [f"{v:g}" for v in sorted(values)])


def plot_sampling_sweep(metrics: pd.DataFrame, swept: dict[str, list], columns: dict[str, str],
                        labels: dict[str, str], metric: str, path: str | Path) -> None:
    _save_figure(sampling_sweep_figure(metrics, swept, columns, labels, metric), path)
