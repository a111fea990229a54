"""The summary over seeds: one row per experiment, sampling variant and sample epoch, ranked by the last epoch's mean
class-balanced FID (FID where the extractor gives no classes), and whether the best experiment's (or experiment and
variant's) lead over the second is larger than the noise of training and sampling seeds (Welch's t-test over every
draw)."""

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy.stats import ttest_ind_from_stats

from ddpm.checks import metric_columns, variant_columns, variant_label
from ddpm.files import atomic_write, write_csv

SIGNIFICANCE = 0.05  # the p-value below which a lead counts as larger than the noise
RANKING_NAMES = {"fid_balanced": "class-balanced FID", "fid": "FID"}  # column -> its name in the verdict


def ranking_metric(metrics: pd.DataFrame) -> str:
    """The column that ranks and compares experiments: `fid_balanced`, whose draws spread half as much as FID's,
    where every row has it (the classifier extractor), else `fid`."""
    return "fid_balanced" if metrics["fid_balanced"].notna().all() else "fid"


def epoch_statistics(losses: pd.DataFrame) -> pd.DataFrame:
    """Per run (experiment, seed) and epoch, from the long loss table: `final_loss`, the epoch's mean training loss
    (each row weighs as many steps as it covers); `train_seconds`, the training time up to the epoch's end; and
    `images_per_second`, the images trained on up to then over that time."""
    frames = []
    for (experiment, seed), run in losses.groupby(["experiment", "seed"], sort=False):
        run = run.sort_values("step")
        steps = run["step"].diff().fillna(run["step"])  # each row is the mean over the steps since the previous one
        seconds = run["elapsed_seconds"].diff().fillna(run["elapsed_seconds"])
        by_epoch = pd.DataFrame({
            "epoch": run["epoch"], "weighted_loss": run["loss"] * steps, "steps": steps,
            "images": run["images_per_second"] * seconds, "train_seconds": run["elapsed_seconds"],
        }).groupby("epoch").agg(weighted_loss=("weighted_loss", "sum"), steps=("steps", "sum"),
                                images=("images", "sum"), train_seconds=("train_seconds", "last"))
        frames.append(pd.DataFrame({
            "experiment": experiment, "seed": seed, "epoch": by_epoch.index,
            "final_loss": (by_epoch["weighted_loss"] / by_epoch["steps"]).to_numpy(),
            "train_seconds": by_epoch["train_seconds"].to_numpy(),
            "images_per_second": (by_epoch["images"].cumsum() / by_epoch["train_seconds"]).to_numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


def summarize(losses: pd.DataFrame, metrics: pd.DataFrame, swept: dict[str, dict] | None = None,
              objectives: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per experiment, sampling variant and sample epoch: `rank` (by the last sample epoch's mean of
    `ranking_metric`, 1 = lowest; each experiment and variant its own rank), the experiment, its swept values (from
    `swept`: experiment -> field -> value), `epoch`, the variant's columns (ddpm.checks.variant_columns; none
    without a sampling sweep), `seeds` (how many runs), for each metric of the rows (METRICS, then
    CONDITIONING_METRICS where scored) its mean and sample standard deviation over seeds and `<metric>_sampling_se`,
    the standard error that sampling leaves in that mean (sqrt(sum of the runs' squared standard errors) / seeds),
    then the mean and std of the epoch's loss and, from `objectives` (experiment -> what its loss measures),
    `loss_objective`, and the mean `train_seconds` and `images_per_second` (see `epoch_statistics`). The std is
    empty for one seed, the sampling error for one draw."""
    variants, scored = variant_columns(metrics.columns), metric_columns(metrics.columns)
    runs = metrics[["experiment", "seed", "epoch", *variants, *scored, *(f"{m}_sampling_se" for m in scored)]].merge(
        epoch_statistics(losses), on=["experiment", "seed", "epoch"], how="left", validate="many_to_one")
    columns = {}
    for metric in scored:
        columns |= {f"{metric}_mean": (metric, "mean"), f"{metric}_std": (metric, "std"),
                    f"{metric}_sampling_se": (f"{metric}_sampling_se", _mean_standard_error)}
    summary = runs.groupby(["experiment", "epoch", *variants], sort=False, dropna=False).agg(
        seeds=("seed", "count"), **columns,
        final_loss_mean=("final_loss", "mean"), final_loss_std=("final_loss", "std"),
        train_seconds=("train_seconds", "mean"), images_per_second=("images_per_second", "mean"),
    ).reset_index()
    summary.insert(summary.columns.get_loc("final_loss_std") + 1, "loss_objective",
                   summary["experiment"].map(objectives or {}))
    keys = ["experiment", *variants]
    last = summary[summary["epoch"] == summary["epoch"].max()]
    ranks = last.sort_values([f"{ranking_metric(metrics)}_mean", *keys])[keys]
    summary = summary.merge(ranks.assign(rank=range(1, len(ranks) + 1)), on=keys, how="left", validate="many_to_one")
    summary = summary[["rank", *summary.columns.drop("rank")]]
    swept = swept or {}
    fields = list(dict.fromkeys(name for values in swept.values() for name in values))
    for i, name in enumerate(fields):
        summary.insert(2 + i, name, [swept.get(experiment, {}).get(name) for experiment in summary["experiment"]])
    return summary.sort_values(["rank", "epoch"], ignore_index=True)


def _mean_standard_error(errors: pd.Series) -> float:
    """The standard error of a mean over runs whose own standard errors are `errors`; NaN if one is missing."""
    return math.sqrt((errors ** 2).sum()) / len(errors) if errors.notna().all() else math.nan


@dataclass(frozen=True)
class Scores:
    """One experiment's FIDs at an epoch, as Welch's t-test takes them: the mean, standard deviation and number of
    every draw of every seed (`seeds` runs of `draws` draws each)."""

    mean: float
    std: float
    seeds: int
    draws: int

    @property
    def count(self) -> int:
        return self.seeds * self.draws

    def described(self) -> str:
        draws = "" if self.draws == 1 else f" x {self.draws} sampling draws"
        return f"{self.mean:.4g} over {_seeds(self.seeds)}{draws}"

    @classmethod
    def of_runs(cls, runs: pd.DataFrame, metric: str = "fid") -> "Scores":
        """From the runs' metric rows: each run's mean `metric` over its draws, its standard error and its number of
        draws give back the draws' sum of squares within runs, K (K - 1) se^2, to which the runs' spread around the
        overall mean adds K sum (mean_run - mean)^2 (one-way ANOVA's decomposition)."""
        draws = int(runs["sampling_draws"].iloc[0])
        mean = float(runs[metric].mean())
        within = (draws * (draws - 1) * runs[f"{metric}_sampling_se"] ** 2).sum() if draws > 1 else 0.0
        between = draws * ((runs[metric] - mean) ** 2).sum()
        count = len(runs) * draws
        std = math.sqrt((within + between) / (count - 1)) if count > 1 else math.nan
        return cls(mean, std, len(runs), draws)


@dataclass(frozen=True)
class Lead:
    """The best experiment's lead over the second at the last sample epoch, tested against the noise of training
    and sampling seeds with Welch's t-test (unequal variances) over every draw of every seed; `p_value` is None
    with a single FID per experiment, NaN when neither experiment's FID varies. Equal mean FIDs (bit-identical runs,
    say) are a tie, not a lead."""

    epoch: int
    metric: str  # the column compared: ranking_metric's
    best: str
    second: str
    best_scores: Scores
    second_scores: Scores
    t_statistic: float | None
    p_value: float | None

    @property
    def tied(self) -> bool:
        """Nothing separates the two: their mean FIDs are equal."""
        return self.best_scores.mean == self.second_scores.mean

    def sentence(self) -> str:
        best, second, name = self.best_scores, self.second_scores, RANKING_NAMES[self.metric]
        if self.tied:
            return (f"At epoch {self.epoch}, {self.best} and {self.second} are tied for the lowest mean {name} "
                    f"({best.described()} and {second.described()}): nothing separates them.")
        lead = (f"At epoch {self.epoch}, {self.best} has the lowest mean {name} ({best.described()}), "
                f"{second.mean - best.mean:.4g} below {self.second} ({second.described()}).")
        if self.p_value is None:
            return f"{lead} Whether this lead exceeds the noise needs >= 2 seeds or sampling draws."
        if math.isnan(self.p_value):
            return f"{lead} Welch's t-test is undefined: neither experiment's {name} varies."
        noise = "the seed-to-seed and sampling noise" if max(best.seeds, second.seeds) > 1 else "the sampling noise"
        verdict = f"exceeds {noise}" if self.p_value < SIGNIFICANCE else f"is within {noise}"
        return (f"{lead} The lead {verdict}: Welch's t-test over every draw t = {self.t_statistic:.3g}, "
                f"p = {self.p_value:.3g} (significant below {SIGNIFICANCE}).")


def _seeds(count: int) -> str:
    return f"{count} seed" if count == 1 else f"{count} seeds"


def best_lead(metrics: pd.DataFrame) -> Lead | None:
    """Welch's t-test (scipy.stats.ttest_ind_from_stats, equal_var=False) between the `ranking_metric` values of
    every draw of every seed (`Scores.of_runs`) of the two experiments (with a sampling sweep: experiments at a
    sampling variant, named 'experiment (field=value, ...)') with the lowest means at the last sample epoch; None
    with a single one."""
    epoch, metric = int(metrics["epoch"].max()), ranking_metric(metrics)
    last = metrics[metrics["epoch"] == epoch]
    variants = variant_columns(metrics.columns)
    scores = {}
    for (experiment, *values), runs in last.groupby(["experiment", *variants], dropna=False):
        variant = variant_label(dict(zip(variants, values)))
        scores[f"{experiment} ({variant})" if variant else experiment] = Scores.of_runs(runs, metric)
    if len(scores) < 2:
        return None
    best, second = sorted(scores, key=lambda name: (scores[name].mean, name))[:2]
    a, b = scores[best], scores[second]
    if min(a.count, b.count) < 2:
        return Lead(epoch, metric, best, second, a, b, None, None)
    if a.std == b.std == 0:  # no spread at all: the t statistic is undefined
        return Lead(epoch, metric, best, second, a, b, math.nan, math.nan)
    test = ttest_ind_from_stats(a.mean, a.std, a.count, b.mean, b.std, b.count, equal_var=False)
    return Lead(epoch, metric, best, second, a, b, float(test.statistic), float(test.pvalue))


def loss_warning(summary: pd.DataFrame) -> str | None:
    """A warning when the summary's experiments train different objectives, whose final losses do not compare."""
    objectives = summary["loss_objective"].dropna().unique()
    if len(objectives) < 2:
        return None
    return (f"The experiments train different objectives ({'; '.join(sorted(objectives))}): their final_loss values "
            "are not comparable.")


def summary_html(summary: pd.DataFrame, lead: Lead | None) -> str:
    """The summary as an HTML page for the report: the verdict on the best lead, a warning when the losses do not
    compare, then the table."""
    verdict = lead.sentence() if lead is not None else "A single experiment: nothing to compare."
    warning = loss_warning(summary)
    if warning is not None:
        verdict += f" Warning: {warning}"
    table = summary.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="", border=0)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Summary</title><style>"
        "body{font-family:sans-serif} table{border-collapse:collapse} td,th{padding:2px 8px;text-align:right}"
        "tr:nth-child(even){background:#f2f2f2}</style></head><body>\n"
        f"<p>{html.escape(verdict, quote=False)}</p>\n{table}\n</body></html>\n"
    )


def write_summary(losses_csv: str | Path, metrics_csv: str | Path, swept: dict[str, dict], objectives: dict[str, str],
                  csv_out: str | Path, html_out: str | Path) -> pd.DataFrame:
    """results/summary.csv and its HTML page from the long loss and metric tables; prints the verdict."""
    metrics = pd.read_csv(metrics_csv)
    summary = summarize(pd.read_csv(losses_csv), metrics, swept, objectives)
    lead = best_lead(metrics)
    write_csv(summary, csv_out)
    atomic_write(html_out, lambda f: f.write(summary_html(summary, lead).encode()))
    print(lead.sentence() if lead is not None else "a single experiment")
    if loss_warning(summary) is not None:
        print(f"warning: {loss_warning(summary)}")
    return summary
