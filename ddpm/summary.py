"""The summary over seeds: one row per experiment and sample epoch, ranked by the last epoch's mean FID, and
whether the best experiment's lead over the second is larger than the seed-to-seed spread (Welch's t-test)."""

import html
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

import pandas as pd
from scipy.stats import ttest_ind

from ddpm.files import atomic_write, write_csv

QUALITY = ("precision", "recall", "memorisation")  # the metric columns beside FID, summarised like it
SIGNIFICANCE = 0.05  # the p-value below which a lead counts as larger than the seed-to-seed spread


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


def summarize(losses: pd.DataFrame, metrics: pd.DataFrame, swept: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per experiment and sample epoch: `rank` (by the last sample epoch's mean FID, 1 = lowest), the
    experiment, its swept values (from `swept`: experiment -> field -> value), `epoch`, `seeds` (how many runs),
    mean and sample standard deviation over seeds of FID, of precision, recall and memorisation (QUALITY) and of
    the epoch's loss, and the mean `train_seconds` and `images_per_second` (see `epoch_statistics`). The std is
    empty for one seed."""
    runs = metrics[["experiment", "seed", "epoch", "fid", *QUALITY]].merge(
        epoch_statistics(losses), on=["experiment", "seed", "epoch"], how="left", validate="one_to_one")
    spreads = {f"{column}_{statistic}": (column, statistic) for column in QUALITY for statistic in ("mean", "std")}
    summary = runs.groupby(["experiment", "epoch"], sort=False).agg(
        seeds=("seed", "count"), fid_mean=("fid", "mean"), fid_std=("fid", "std"), **spreads,
        final_loss_mean=("final_loss", "mean"), final_loss_std=("final_loss", "std"),
        train_seconds=("train_seconds", "mean"), images_per_second=("images_per_second", "mean"),
    ).reset_index()
    last = summary[summary["epoch"] == summary["epoch"].max()]
    ranks = last.sort_values(["fid_mean", "experiment"])["experiment"].tolist()
    summary.insert(0, "rank", summary["experiment"].map({name: i + 1 for i, name in enumerate(ranks)}))
    swept = swept or {}
    fields = list(dict.fromkeys(name for values in swept.values() for name in values))
    for i, name in enumerate(fields):
        summary.insert(2 + i, name, [swept.get(experiment, {}).get(name) for experiment in summary["experiment"]])
    return summary.sort_values(["rank", "epoch"], ignore_index=True)


@dataclass(frozen=True)
class Lead:
    """The best experiment's lead over the second at the last sample epoch, tested against the seed-to-seed spread
    with Welch's t-test (unequal variances); `p_value` is None with fewer than 2 seeds, NaN when neither experiment's
    FID varies over seeds. Equal mean FIDs (bit-identical runs, say) are a tie, not a lead."""

    epoch: int
    best: str
    second: str
    best_fids: tuple[float, ...]
    second_fids: tuple[float, ...]
    t_statistic: float | None
    p_value: float | None

    @property
    def tied(self) -> bool:
        """Nothing separates the two: their mean FIDs are equal."""
        return fmean(self.best_fids) == fmean(self.second_fids)

    def sentence(self) -> str:
        best, second = fmean(self.best_fids), fmean(self.second_fids)
        if self.tied:
            seeds = (f"{_seeds(len(self.best_fids))} each" if len(self.best_fids) == len(self.second_fids)
                     else f"{len(self.best_fids)} and {_seeds(len(self.second_fids))}")
            return (f"At epoch {self.epoch}, {self.best} and {self.second} are tied for the lowest mean FID "
                    f"({best:.4g} over {seeds}): nothing separates them.")
        lead = (f"At epoch {self.epoch}, {self.best} has the lowest mean FID ({best:.4g} over "
                f"{_seeds(len(self.best_fids))}), {second - best:.4g} below {self.second} ({second:.4g} over "
                f"{_seeds(len(self.second_fids))}).")
        if self.p_value is None:
            return f"{lead} Whether this lead exceeds the seed-to-seed spread needs >= 2 seeds."
        if math.isnan(self.p_value):
            return f"{lead} Welch's t-test is undefined: neither experiment's FID varies over seeds."
        verdict = ("exceeds the seed-to-seed spread" if self.p_value < SIGNIFICANCE
                   else "does not exceed the seed-to-seed spread")
        return (f"{lead} The lead {verdict}: Welch's t-test t = {self.t_statistic:.3g}, p = {self.p_value:.3g} "
                f"(significant below {SIGNIFICANCE}).")


def _seeds(count: int) -> str:
    return f"{count} seed" if count == 1 else f"{count} seeds"


def best_lead(metrics: pd.DataFrame) -> Lead | None:
    """Welch's t-test (scipy.stats.ttest_ind, equal_var=False) between the FIDs over seeds of the two experiments
    with the lowest mean FID at the last sample epoch; None with a single experiment."""
    epoch = int(metrics["epoch"].max())
    fids = metrics[metrics["epoch"] == epoch].groupby("experiment")["fid"].agg(list)
    if len(fids) < 2:
        return None
    best, second = sorted(fids.index, key=lambda name: (fmean(fids[name]), name))[:2]
    a, b = tuple(fids[best]), tuple(fids[second])
    if min(len(a), len(b)) < 2:
        return Lead(epoch, best, second, a, b, None, None)
    if len(set(a)) == len(set(b)) == 1:  # no spread at all: the t statistic is undefined
        return Lead(epoch, best, second, a, b, math.nan, math.nan)
    test = ttest_ind(a, b, equal_var=False)
    return Lead(epoch, best, second, a, b, float(test.statistic), float(test.pvalue))


def summary_html(summary: pd.DataFrame, lead: Lead | None) -> str:
    """The summary as an HTML page for the report: the verdict on the best lead, then the table."""
    verdict = lead.sentence() if lead is not None else "A single experiment: nothing to compare."
    table = summary.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="", border=0)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Summary</title><style>"
        "body{font-family:sans-serif} table{border-collapse:collapse} td,th{padding:2px 8px;text-align:right}"
        "tr:nth-child(even){background:#f2f2f2}</style></head><body>\n"
        f"<p>{html.escape(verdict, quote=False)}</p>\n{table}\n</body></html>\n"
    )


def write_summary(losses_csv: str | Path, metrics_csv: str | Path, swept: dict[str, dict], csv_out: str | Path,
                  html_out: str | Path) -> pd.DataFrame:
    """results/summary.csv and its HTML page from the long loss and metric tables; prints the verdict."""
    metrics = pd.read_csv(metrics_csv)
    summary = summarize(pd.read_csv(losses_csv), metrics, swept)
    lead = best_lead(metrics)
    write_csv(summary, csv_out)
    atomic_write(html_out, lambda f: f.write(summary_html(summary, lead).encode()))
    print(lead.sentence() if lead is not None else "a single experiment")
    return summary
