"""Seeds and sweeps end to end: real snakemake on the tiny config with 2 seeds x a 2-value lr sweep."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from ddpm.experiments import RESULTS_ENTRIES
from tests.workflow import finish, snakemake, start_snakemake, tiny_config

SEEDS = [0, 1]
LRS = [1.0e-3, 3.0e-3]
EPOCH = 1  # the one epoch, sampled
EXPERIMENTS = [f"base.lr-{lr}" for lr in LRS]
RUNS = [f"{experiment}.seed-{seed}" for experiment in EXPERIMENTS for seed in SEEDS]


def sweep_config(seeds=SEEDS, lrs=LRS) -> dict:
    """The tiny config with one experiment of one epoch, swept over two learning rates at `seeds`."""
    return tiny_config(defaults={**tiny_config()["defaults"], "epochs": EPOCH}, experiments={"base": {}}, seeds=seeds,
                       sweep={"lr": lrs}, sample_epochs=[EPOCH])


@pytest.fixture(scope="module")
def sweep_run(tiny_run, tmp_path_factory):
    """One complete run of the sweep config. It starts from the tiny run's dataset and FID reference, which it
    shares, so that only the runs themselves and what depends on them are computed."""
    workdir = tmp_path_factory.mktemp("sweep")
    for shared in ("data", "results/reference", ".snakemake"):
        shutil.copytree(tiny_run / shared, workdir / shared, symlinks=True)
    result = snakemake(workdir, config=sweep_config())
    assert result.returncode == 0, result.output
    assert "rule download:" not in result.output and "rule reference_stats:" not in result.output, result.output
    return workdir


def planned_runs(output: str, rule: str) -> list[str]:
    """The `run` wildcard of every job of `rule` that a dry run plans."""
    blocks = re.split(r"\n(?=(?:local)?rule \w+:\n)", output)
    return [re.search(r"wildcards: .*?run=([^,\s]+)", block).group(1) for block in blocks
            if re.match(rf"(?:local)?rule {rule}:\n", block.lstrip("\n"))]


def test_each_run_has_its_folder_with_its_seed_and_swept_value(sweep_run):
    results = sweep_run / "results"
    assert sorted(p.name for p in results.iterdir() if p.name not in RESULTS_ENTRIES) == sorted(RUNS)
    for lr, experiment in zip(LRS, EXPERIMENTS):
        for seed in SEEDS:
            run = results / f"{experiment}.seed-{seed}"
            resolved = yaml.safe_load((run / "config.yaml").read_text())
            assert resolved["experiment"] == experiment
            assert (resolved["train"]["seed"], resolved["train"]["lr"]) == (seed, lr)
            assert np.load(run / "samples" / f"epoch_{EPOCH}.npy").shape == (16, 1, 8, 8)
    losses = {run: pd.read_csv(results / run / "losses.csv") for run in RUNS}
    assert not losses[RUNS[0]]["loss"].equals(losses[RUNS[1]]["loss"])  # another seed, another run
    assert sorted(p.name for p in (results / "resume").iterdir()) == sorted(RUNS)  # final states, to extend runs


def test_summary_equals_what_the_per_run_files_give(sweep_run):
    results = sweep_run / "results"
    summary = pd.read_csv(results / "summary.csv").set_index("experiment")
    expected = {}
    for lr, experiment in zip(LRS, EXPERIMENTS):
        runs = [results / f"{experiment}.seed-{seed}" for seed in SEEDS]
        rows = [json.loads((run / "metrics" / f"epoch_{EPOCH}.json").read_text()) for run in runs]
        fids, balanced = [row["fid"] for row in rows], [row["fid_balanced"] for row in rows]
        frames = [pd.read_csv(run / "losses.csv") for run in runs]  # one epoch, log_every 1: a row a step
        final_losses = [frame["loss"].mean() for frame in frames]
        seconds = [frame["elapsed_seconds"].iloc[-1] for frame in frames]
        speeds = [frame["step"].iloc[-1] * 64 / s for frame, s in zip(frames, seconds)]  # batch_size 64
        expected[experiment] = {"lr": lr, "epoch": EPOCH, "seeds": 2, "fid_mean": np.mean(fids),
                                "fid_std": np.std(fids, ddof=1), "fid_balanced_mean": np.mean(balanced),
                                "final_loss_mean": np.mean(final_losses),
                                "final_loss_std": np.std(final_losses, ddof=1), "train_seconds": np.mean(seconds),
                                "images_per_second": np.mean(speeds)}
    assert sorted(summary.index) == sorted(EXPERIMENTS)
    for experiment, values in expected.items():
        for column, value in values.items():
            # images/s is rebuilt from the CSV's rounded speed column: equal to rounding
            assert summary.loc[experiment, column] == pytest.approx(value, rel=1e-3 if column == "images_per_second"
                                                                    else 1e-9), (experiment, column)
    ranked = sorted(EXPERIMENTS, key=lambda e: expected[e]["fid_balanced_mean"])  # the classifier ranks by it
    assert summary["rank"].to_dict() == {name: i + 1 for i, name in enumerate(ranked)}
    page = (results / "summary.html").read_text()
    assert f"{ranked[0]} has the lowest mean class-balanced FID" in page and "p = " in page
    assert "Welch's t-test over every draw t = " in page


def test_plots_and_the_report_show_the_runs(sweep_run):
    for plot in ("loss", "samples", "fid", "sweep"):
        with Image.open(sweep_run / "results" / "plots" / f"{plot}.png") as image:
            assert image.format == "PNG" and image.size[0] > 300
    grids = {run for run in RUNS if (sweep_run / "results" / run / "samples" / f"epoch_{EPOCH}.png").exists()}
    assert grids == set(RUNS)  # every seed's, though the montage shows each experiment's first seed
    result = snakemake(sweep_run, "--report", "results/report.html", config=sweep_config())
    assert result.returncode == 0, result.output
    assert "summary.html" in (sweep_run / "results" / "report.html").read_text()


def test_adding_a_seed_plans_only_the_new_seeds_jobs(sweep_run):
    planned = snakemake(sweep_run, "--dry-run", config=sweep_config(seeds=[0, 1, 2]))
    assert planned.returncode == 0, planned.output
    assert sorted(planned_runs(planned.output, "train")) == [f"{e}.seed-2" for e in EXPERIMENTS], planned.output
    for rule, per_run in (("sample", 2), ("evaluate", 1)):  # two sampling draws a run
        expected = sorted([f"{e}.seed-2" for e in EXPERIMENTS] * per_run)
        assert sorted(planned_runs(planned.output, rule)) == expected, planned.output


def test_seeds_and_sweep_can_be_switched_off_from_the_command_line(sweep_run):
    planned = snakemake(sweep_run, "--dry-run", "--config", "sweep={}", "seeds=null", config=sweep_config())
    assert planned.returncode == 0, planned.output
    assert planned_runs(planned.output, "train") == ["base"], planned.output


def test_changing_one_sweep_value_plans_only_the_runs_it_touches(sweep_run):
    planned = snakemake(sweep_run, "--dry-run", config=sweep_config(lrs=[1.0e-3, 5.0e-3]))
    assert planned.returncode == 0, planned.output
    assert sorted(planned_runs(planned.output, "train")) == [f"base.lr-0.005.seed-{s}" for s in SEEDS], planned.output


def test_without_seeds_the_summary_has_one_seed_and_no_test(tiny_run):
    results = tiny_run / "results"
    summary = pd.read_csv(results / "summary.csv")
    assert sorted(zip(summary["experiment"], summary["epoch"])) == [(e, n) for e in ("base", "lr_high") for n in (1, 2)]
    assert (summary["seeds"] == 1).all() and summary["fid_std"].isna().all()
    page = (results / "summary.html").read_text()  # one seed, but two sampling draws a run: Welch's test over them
    assert "over 1 seed x 2 sampling draws" in page and "Welch's t-test over every draw" in page
    assert not (results / "plots" / "sweep.png").exists()
    assert sorted(p.name for p in results.iterdir() if p.name not in RESULTS_ENTRIES) == ["base", "lr_high"]


BAD_SWEEPS = [
    ("unknown field", {"sweep": {"learning_rate": [0.1]}}, "sweep field 'learning_rate' is not an experiment field"),
    ("empty list", {"sweep": {"lr": []}}, "sweep.lr must be a non-empty list of values, got []"),
    ("value of the wrong type", {"sweep": {"batch_size": [32, "many"]}},
     "sweep batch_size='many': experiment 'base': batch_size must be an integer >= 1, got 'many'"),
]


@pytest.fixture(scope="module")
def bad_sweep_runs(tmp_path_factory):
    """snakemake on every bad sweep, all started at once: each run is only the start-up and the checks."""
    started = {}
    for name, change, _ in BAD_SWEEPS:
        workdir = tmp_path_factory.mktemp("bad_sweep")
        started[name] = workdir, start_snakemake(workdir, config={**tiny_config(), **change})
    return {name: (workdir, finish(process, timeout=300)) for name, (workdir, process) in started.items()}


@pytest.mark.parametrize("name, message", [(c[0], c[2]) for c in BAD_SWEEPS], ids=[c[0] for c in BAD_SWEEPS])
def test_bad_sweep_fails_before_any_job(bad_sweep_runs, name, message):
    workdir, result = bad_sweep_runs[name]
    assert result.returncode != 0
    assert message in result.output, result.output
    assert not (workdir / "results").exists() and not (workdir / "data").exists()
