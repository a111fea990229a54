"""The summary over seeds: per-epoch loss and speed, means and spreads over seeds, ranking, Welch's t-test."""

import math

import numpy as np
import pandas as pd
import pytest

from scipy.stats import ttest_ind

from ddpm.checks import METRICS
from ddpm.summary import best_lead, epoch_statistics, summarize, summary_html, write_summary

BATCH_SIZE = 4
STEPS_PER_EPOCH = 3
# (experiment, seed) -> per-step losses of two epochs, and seconds per step
RUNS = {
    ("a", 0): ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 0.5),
    ("a", 1): ([1.0, 0.7, 0.7, 0.5, 0.5, 0.3], 0.25),
    ("b", 0): ([0.8, 0.8, 0.8, 0.7, 0.7, 0.7], 1.0),
    ("b", 1): ([0.9, 0.9, 0.6, 0.6, 0.6, 0.6], 2.0),
}
OBJECTIVES = {"a": "MSE on the noise", "b": "MSE on the noise"}
LOG_STEPS = [2, 3, 5, 6]  # log_every 2 with a row at each epoch's end: windows of 2, 1, 2 and 1 steps
FID = {("a", 0): {1: 30.0, 2: 10.0}, ("a", 1): {1: 40.0, 2: 12.0}, ("b", 0): {1: 20.0, 2: 20.0},
       ("b", 1): {1: 25.0, 2: 24.0}}


def losses() -> pd.DataFrame:
    """The long loss table as aggregate_losses writes it: each row the mean of the steps since the previous row."""
    rows = []
    for (experiment, seed), (per_step, seconds_per_step) in RUNS.items():
        previous = 0
        for step in LOG_STEPS:
            window = per_step[previous:step]
            rows.append({"experiment": experiment, "seed": seed, "step": step, "epoch": (step - 1) // STEPS_PER_EPOCH + 1,
                         "loss": float(np.mean(window)), "lr": 1e-3,
                         "images_per_second": BATCH_SIZE / seconds_per_step,
                         "elapsed_seconds": step * seconds_per_step})
            previous = step
    return pd.DataFrame(rows)


def metric_rows(rows: list[dict], draws: int = 1) -> pd.DataFrame:
    """Metric rows as aggregate_metrics writes them from `rows` (experiment, seed, epoch, fid, ...): each metric not
    given made from the FID, each its own, but no class-balanced FID (an extractor without classes: FID ranks); no
    sampling standard errors (one draw) unless given."""
    made = {"fid_balanced": lambda fid: math.nan, "class_mix_error": lambda fid: fid / 200,
            "precision": lambda fid: 1 - fid / 100, "recall": lambda fid: 1 - fid / 50,
            "memorisation": lambda fid: fid / 1000}
    return pd.DataFrame([{**{m: f(row["fid"]) for m, f in made.items()}, **{f"{m}_sampling_se": math.nan for m in METRICS},
                          "extractor": "classifier", "num_samples": 16, "sampling_draws": draws, "num_reference": 1797,
                          **row} for row in rows])


def metrics() -> pd.DataFrame:
    return metric_rows([{"experiment": e, "seed": s, "epoch": epoch, "fid": fid}
                        for (e, s), by_epoch in FID.items() for epoch, fid in by_epoch.items()])


def test_epoch_statistics_weigh_each_row_by_its_steps():
    stats = epoch_statistics(losses()).set_index(["experiment", "seed", "epoch"])
    for (experiment, seed), (per_step, seconds_per_step) in RUNS.items():
        for epoch in (1, 2):
            row = stats.loc[(experiment, seed, epoch)]
            steps = per_step[(epoch - 1) * STEPS_PER_EPOCH:epoch * STEPS_PER_EPOCH]
            assert row["final_loss"] == pytest.approx(np.mean(steps))
            assert row["train_seconds"] == pytest.approx(epoch * STEPS_PER_EPOCH * seconds_per_step)
            assert row["images_per_second"] == pytest.approx(BATCH_SIZE / seconds_per_step)


def test_summary_means_and_spreads_over_seeds_ranked_by_the_last_epoch():
    summary = summarize(losses(), metrics(), {"a": {"lr": 1e-3}, "b": {"lr": 2e-3}}, OBJECTIVES)
    assert list(summary.columns) == ["rank", "experiment", "lr", "epoch", "seeds",
                                     *(f"{m}_{s}" for m in METRICS for s in ("mean", "std", "sampling_se")),
                                     "final_loss_mean", "final_loss_std", "loss_objective", "train_seconds",
                                     "images_per_second"]
    assert summary["fid_sampling_se"].isna().all()  # one draw each: no sampling error
    # a leads at epoch 2 (11 < 22) though b leads at epoch 1: the last epoch ranks
    assert summary[["rank", "experiment", "epoch"]].values.tolist() == [[1, "a", 1], [1, "a", 2], [2, "b", 1], [2, "b", 2]]
    row = summary.set_index(["experiment", "epoch"]).loc[("b", 2)]
    assert (row["seeds"], row["lr"]) == (2, 2e-3)
    assert (row["fid_mean"], row["fid_std"]) == pytest.approx((22.0, math.sqrt(8.0)))  # (20, 24): sample std
    for column, (mean, std) in {"precision": (0.78, 0.04 / math.sqrt(2)), "recall": (0.56, 0.08 / math.sqrt(2)),
                                "memorisation": (0.022, 0.004 / math.sqrt(2))}.items():  # (0.8, 0.76), (0.6, 0.52), ...
        assert (row[f"{column}_mean"], row[f"{column}_std"]) == pytest.approx((mean, std)), column
    assert (row["final_loss_mean"], row["final_loss_std"]) == pytest.approx((0.65, math.sqrt(0.005)))
    assert (row["train_seconds"], row["images_per_second"]) == pytest.approx(((6.0 + 12.0) / 2, (4.0 + 2.0) / 2))


def test_one_seed_has_no_spread_and_no_test():
    one_seed = metrics()[metrics()["seed"] == 0]
    summary = summarize(losses()[losses()["seed"] == 0], one_seed)
    assert (summary["seeds"] == 1).all() and summary["fid_std"].isna().all()
    assert summary[["precision_std", "recall_std", "memorisation_std"]].isna().all().all()
    lead = best_lead(one_seed)
    assert (lead.best, lead.second, lead.p_value) == ("a", "b", None)
    assert lead.sentence().endswith("needs >= 2 seeds or sampling draws.")


def welch_t(a, b) -> float:
    """Welch's t statistic written out: the difference of means over sqrt(s_a^2 / n_a + s_b^2 / n_b)."""
    return (np.mean(a) - np.mean(b)) / math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))


def test_welch_test_of_the_best_against_the_second():
    lead = best_lead(metrics())
    assert (lead.epoch, lead.best, lead.second) == (2, "a", "b")
    assert lead.t_statistic == pytest.approx(welch_t([10, 12], [20, 24]))
    assert 0 < lead.p_value < 1
    assert "is within the seed-to-seed and sampling noise" in lead.sentence()  # 2 seeds each: far from significant

    many = metric_rows([{"experiment": e, "seed": s, "epoch": 1, "fid": base + 0.1 * s}
                        for e, base in (("x", 10.0), ("y", 20.0), ("z", 30.0)) for s in range(5)])
    lead = best_lead(many)
    assert (lead.best, lead.second) == ("x", "y") and lead.p_value < 1e-6
    assert "exceeds the seed-to-seed and sampling noise" in lead.sentence() and "within" not in lead.sentence()


# (experiment, seed) -> the FIDs of its three sampling draws at epoch 1
DRAWS = {("x", 0): [10.0, 11.5, 12.0], ("x", 1): [12.0, 13.0, 10.5], ("y", 0): [14.0, 15.5, 13.0],
         ("y", 1): [16.0, 14.5, 17.0]}


def draw_rows(draws: dict) -> pd.DataFrame:
    """Metric rows of runs of several draws each: the mean FID and its standard error over the draws."""
    return metric_rows([{"experiment": e, "seed": s, "epoch": 1, "fid": np.mean(fids),
                         "fid_sampling_se": np.std(fids, ddof=1) / math.sqrt(len(fids))}
                        for (e, s), fids in draws.items()], draws=3)


def test_welch_test_over_every_draw_of_every_seed():
    """The lead is tested on the draws themselves, rebuilt from each run's mean and standard error: the same t and
    p as Welch's test on the twelve FIDs."""
    lead = best_lead(draw_rows(DRAWS))
    x = [fid for (e, _), fids in DRAWS.items() if e == "x" for fid in fids]
    y = [fid for (e, _), fids in DRAWS.items() if e == "y" for fid in fids]
    expected = ttest_ind(x, y, equal_var=False)
    assert (lead.t_statistic, lead.p_value) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
    assert lead.p_value < 0.05 and "exceeds the seed-to-seed and sampling noise" in lead.sentence()
    assert "over 2 seeds x 3 sampling draws" in lead.sentence()
    # one seed of three draws each, the draws overlapping: within the sampling noise
    close = {("x", 0): [10.0, 12.0, 11.0], ("y", 0): [11.0, 13.0, 11.5]}
    sentence = best_lead(draw_rows(close)).sentence()
    assert "is within the sampling noise" in sentence and "seed-to-seed" not in sentence, sentence


def test_the_sampling_error_of_a_mean_over_seeds():
    summary = summarize(losses().replace({"a": "x", "b": "y"}).query("epoch == 1"), draw_rows(DRAWS))
    row = summary.set_index("experiment").loc["x"]
    errors = [np.std(DRAWS[("x", s)], ddof=1) / math.sqrt(3) for s in (0, 1)]
    assert row["fid_sampling_se"] == pytest.approx(math.sqrt(sum(e * e for e in errors)) / 2)
    assert math.isnan(row["precision_sampling_se"])  # not given for the draws


def test_no_test_without_spread_or_without_a_second_experiment():
    constant = metric_rows([{"experiment": e, "seed": s, "epoch": 1, "fid": fid}
                            for e, fid in (("x", 5.0), ("y", 6.0)) for s in range(3)])
    assert "undefined" in best_lead(constant).sentence()
    assert best_lead(constant[constant["experiment"] == "x"]) is None


def test_summary_files_hold_the_table_and_the_verdict(tmp_path):
    losses().to_csv(tmp_path / "losses.csv", index=False)
    metrics().to_csv(tmp_path / "metrics.csv", index=False)
    summary = write_summary(tmp_path / "losses.csv", tmp_path / "metrics.csv", {}, OBJECTIVES, tmp_path / "summary.csv",
                            tmp_path / "summary.html")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "summary.csv"), summary)
    page = (tmp_path / "summary.html").read_text()
    assert "<table" in page and "Welch" in page and page.count("<tr") == 1 + len(summary)
    assert "nothing to compare" in summary_html(summary, None)


def test_final_losses_of_different_objectives_come_with_a_warning(tmp_path, capsys):
    losses().to_csv(tmp_path / "losses.csv", index=False)
    metrics().to_csv(tmp_path / "metrics.csv", index=False)
    mixed = {"a": "MSE on the noise", "b": "MSE on x_0, Min-SNR-5 weights"}
    summary = write_summary(tmp_path / "losses.csv", tmp_path / "metrics.csv", {}, mixed, tmp_path / "summary.csv",
                            tmp_path / "summary.html")
    assert summary.set_index("experiment")["loss_objective"].to_dict() == mixed
    assert "final_loss values are not comparable" in (tmp_path / "summary.html").read_text()
    assert "warning: The experiments train different objectives" in capsys.readouterr().out
    write_summary(tmp_path / "losses.csv", tmp_path / "metrics.csv", {}, OBJECTIVES, tmp_path / "summary.csv",
                  tmp_path / "summary.html")
    assert "not comparable" not in (tmp_path / "summary.html").read_text()


def test_equal_means_are_a_tie_not_a_lead():
    identical = metric_rows([{"experiment": e, "seed": 0, "epoch": 1, "fid": 708.7} for e in ("x", "y")])
    sentence = best_lead(identical).sentence()
    assert "x and y are tied" in sentence and "(708.7 over 1 seed and 708.7 over 1 seed)" in sentence, sentence
    assert "below" not in sentence and "lead" not in sentence, sentence
    two_seeds = metric_rows([{"experiment": e, "seed": s, "epoch": 1, "fid": fid}
                             for e in ("x", "y") for s, fid in enumerate((5.0, 7.0))])
    sentence = best_lead(two_seeds).sentence()
    assert "tied" in sentence and "t-test" not in sentence and "lead" not in sentence, sentence
    assert "tied" in summary_html(summarize(losses(), metrics()), best_lead(two_seeds))


def test_one_seed_is_singular():
    sentence = best_lead(metrics()[metrics()["seed"] == 0]).sentence()
    assert "(10 over 1 seed)" in sentence and "(20 over 1 seed)" in sentence and "seeds)" not in sentence, sentence
    assert "(11 over 2 seeds)" in best_lead(metrics()).sentence()


def test_the_class_balanced_fid_ranks_and_is_tested_where_every_row_has_it():
    """x leads in FID but y in the class-balanced FID, whose draws barely move: the balanced FID ranks and decides."""
    draws = {("x", 0): ([10.0, 14.0, 12.0], [9.0, 9.1, 9.2]), ("y", 0): ([13.0, 12.5, 13.5], [7.0, 7.1, 6.9])}
    rows = metric_rows([{"experiment": e, "seed": s, "epoch": 1, "fid": np.mean(fid),
                         "fid_sampling_se": np.std(fid, ddof=1) / math.sqrt(3), "fid_balanced": np.mean(balanced),
                         "fid_balanced_sampling_se": np.std(balanced, ddof=1) / math.sqrt(3)}
                        for (e, s), (fid, balanced) in draws.items()], draws=3)
    lead = best_lead(rows)
    assert (lead.metric, lead.best, lead.second) == ("fid_balanced", "y", "x")
    expected = ttest_ind(draws[("y", 0)][1], draws[("x", 0)][1], equal_var=False)
    assert (lead.t_statistic, lead.p_value) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
    assert "y has the lowest mean class-balanced FID" in lead.sentence() and "exceeds the sampling noise" in lead.sentence()
    summary = summarize(losses().replace({"a": "x", "b": "y"}).query("epoch == 1 and seed == 0"), rows)
    assert summary.set_index("experiment")["rank"].to_dict() == {"y": 1, "x": 2}
    assert best_lead(rows.assign(fid_balanced=math.nan)).metric == "fid"  # an inception run: FID ranks


# (experiment, guidance_scale) -> the FIDs of seeds 0 and 1 at epochs 1 and 2: at epoch 2, a at 3.0 leads, then b at
# 1.0, a at 1.0 and b at 3.0
GUIDED = {("a", 1.0): {1: (30.0, 32.0), 2: (14.0, 16.0)}, ("a", 3.0): {1: (40.0, 42.0), 2: (10.0, 12.0)},
          ("b", 1.0): {1: (20.0, 22.0), 2: (12.0, 14.0)}, ("b", 3.0): {1: (10.0, 12.0), 2: (20.0, 22.0)}}


def guided_metrics() -> pd.DataFrame:
    """Metric rows of a sampling sweep over guidance_scale, as aggregate_metrics writes them."""
    return metric_rows([{"experiment": e, "seed": s, "epoch": epoch, "guidance_scale": scale, "fid": fids[s]}
                        for (e, scale), by_epoch in GUIDED.items() for epoch, fids in by_epoch.items()
                        for s in (0, 1)])


def test_each_experiment_at_each_sampling_variant_is_a_row_ranked_on_its_own():
    summary = summarize(losses(), guided_metrics(), {"a": {"lr": 1e-3}, "b": {"lr": 2e-3}}, OBJECTIVES)
    assert list(summary.columns[:6]) == ["rank", "experiment", "lr", "epoch", "guidance_scale", "seeds"]
    assert summary[["rank", "experiment", "guidance_scale", "epoch"]].values.tolist() == [
        [1, "a", 3.0, 1], [1, "a", 3.0, 2], [2, "b", 1.0, 1], [2, "b", 1.0, 2],
        [3, "a", 1.0, 1], [3, "a", 1.0, 2], [4, "b", 3.0, 1], [4, "b", 3.0, 2]]
    row = summary.set_index(["experiment", "guidance_scale", "epoch"]).loc[("b", 3.0, 1)]
    assert (row["seeds"], row["fid_mean"], row["fid_std"]) == pytest.approx((2, 11.0, math.sqrt(2.0)))
    plain = summarize(losses(), metrics()).set_index(["experiment", "epoch"]).loc[("b", 1)]
    assert row["final_loss_mean"] == plain["final_loss_mean"] == 0.8  # each run's loss, at every variant alike
    lead = best_lead(guided_metrics())
    assert (lead.best, lead.second) == ("a (guidance_scale=3)", "b (guidance_scale=1)")
    assert lead.t_statistic == pytest.approx(welch_t([10, 12], [12, 14]))


def test_a_single_sampling_variant_changes_nothing_but_its_column():
    """The summary of today's rows is the summary of the same rows as the one variant of a sampling sweep, without
    the variant's column: ranks, means, spreads and the verdict alike."""
    plain = summarize(losses(), metrics(), {"a": {"lr": 1e-3}, "b": {"lr": 2e-3}}, OBJECTIVES)
    one_variant = summarize(losses(), metrics().assign(sampling_seed=7), {"a": {"lr": 1e-3}, "b": {"lr": 2e-3}},
                            OBJECTIVES)
    assert list(one_variant.columns) == [*plain.columns[:4], "sampling_seed", *plain.columns[4:]]
    pd.testing.assert_frame_equal(one_variant.drop(columns="sampling_seed"), plain, check_exact=True)
    lead = best_lead(metrics().assign(sampling_seed=7))
    assert (lead.best, lead.second) == ("a (sampling_seed=7)", "b (sampling_seed=7)")
    assert lead.t_statistic == best_lead(metrics()).t_statistic


def test_class_accuracy_is_summarised_like_the_other_metrics(tmp_path):
    """A class-conditional experiment's class accuracy: its mean and std over seeds and the sampling error of that
    mean, after the other metrics; empty for an unconditional experiment."""
    accuracy = {("a", 0): (0.8, 0.02), ("a", 1): (0.9, 0.04)}
    rows = metrics().assign(class_accuracy=[accuracy.get((e, s), (math.nan,))[0] for e, s in
                                            zip(metrics()["experiment"], metrics()["seed"])],
                            class_accuracy_sampling_se=[accuracy.get((e, s), (0, math.nan))[1] for e, s in
                                                        zip(metrics()["experiment"], metrics()["seed"])])
    rows.to_csv(tmp_path / "metrics.csv", index=False)
    losses().to_csv(tmp_path / "losses.csv", index=False)
    summary = write_summary(tmp_path / "losses.csv", tmp_path / "metrics.csv", {}, OBJECTIVES, tmp_path / "summary.csv",
                            tmp_path / "summary.html")
    at = list(summary.columns).index("memorisation_sampling_se") + 1
    assert list(summary.columns[at:at + 3]) == ["class_accuracy_mean", "class_accuracy_std", "class_accuracy_sampling_se"]
    a = summary.set_index(["experiment", "epoch"]).loc[("a", 2)]
    assert (a["class_accuracy_mean"], a["class_accuracy_std"]) == pytest.approx((0.85, 0.1 / math.sqrt(2)))
    assert a["class_accuracy_sampling_se"] == pytest.approx(math.sqrt(0.02 ** 2 + 0.04 ** 2) / 2)
    assert summary.loc[summary["experiment"] == "b", ["class_accuracy_mean", "class_accuracy_sampling_se"]].isna().all().all()
    assert "class_accuracy_mean" in (tmp_path / "summary.html").read_text()
