"""The workflow end to end: real snakemake, real files, on the tiny config."""

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.workflow import finish, snakemake, start_snakemake, tiny_config

EXPERIMENTS = ("base", "lr_high")
EPOCHS = (1, 2)


@pytest.fixture
def run(tiny_run):
    return tiny_run


def test_every_output_exists_and_is_valid(run):
    results = run / "results"
    with open(results / "losses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["experiment", "step", "epoch", "loss", "lr", "images_per_second", "elapsed_seconds"]
    assert {r["experiment"] for r in rows} == set(EXPERIMENTS)
    for exp in EXPERIMENTS:
        assert (results / exp / "config.yaml").exists()
        for epoch in EPOCHS:
            array = np.load(results / exp / "samples" / f"epoch_{epoch}.npy")
            assert array.shape == (16, 1, 8, 8) and array.dtype == np.uint8
            with Image.open(results / exp / "samples" / f"epoch_{epoch}.png") as grid:
                grid.verify()
    for plot in ("loss", "samples", "fid"):
        with Image.open(results / "plots" / f"{plot}.png") as image:
            assert image.format == "PNG" and image.size[0] > 300
    with open(results / "metrics.csv", newline="") as f:
        metrics = list(csv.DictReader(f))
    assert len(metrics) == len(EXPERIMENTS) * len(EPOCHS)
    assert all(m["extractor"] == "classifier" and int(m["num_samples"]) == 16 for m in metrics)
    assert not (results / "resume" / "base").exists()  # resume states go once training is done


def test_second_run_does_nothing(run):
    result = snakemake(run)
    assert result.returncode == 0
    assert "Nothing to be done" in result.output


def test_report_is_built(run):
    result = snakemake(run, "--report", "results/report.html")
    assert result.returncode == 0, result.output
    assert (run / "results" / "report.html").stat().st_size > 10_000


def test_changing_one_experiment_reruns_only_its_jobs(run, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(run, workdir, symlinks=True)
    config = tiny_config(experiments={"base": {}, "lr_high": {"lr": 4.0e-3}})
    untouched = {p: p.stat().st_mtime_ns for p in (workdir / "results" / "base").rglob("*") if p.is_file()}
    changed = workdir / "results" / "lr_high" / "losses.csv"
    before = changed.read_bytes()

    planned = snakemake(workdir, "--dry-run", config=config)  # the whole workflow's plan
    assert planned.returncode == 0, planned.output
    for rule in ("train", "sample", "evaluate"):
        assert planned.output.count(f"rule {rule}:") == (1 if rule == "train" else len(EPOCHS)), planned.output
    assert "exp=lr_high" in planned.output and "exp=base" not in planned.output, planned.output

    result = snakemake(workdir, "results/plots/loss.png", config=config)  # carried out for the training half
    assert result.returncode == 0, result.output
    assert "exp=lr_high" in result.output and "exp=base" not in result.output, result.output
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert changed.read_bytes() != before


def test_loss_plot_builds_only_what_it_needs(tmp_path):
    result = snakemake(tmp_path, "--dry-run", "results/plots/loss.png")
    assert result.returncode == 0, result.output
    for rule in ("download", "train", "aggregate_losses", "plot_losses"):
        assert f"rule {rule}:" in result.output
    for rule in ("sample", "evaluate", "plot_samples", "reference_stats"):
        assert f"rule {rule}:" not in result.output


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint")
    assert result.returncode == 0, result.output
    assert "Congratulations" in result.output


BAD_CONFIGS = [
    ("unknown dataset", {"dataset": {"name": "mnist"}}, "'mnist' is not one of"),
    ("negative lr", {"defaults": {"lr": -1.0}}, "lr"),
    ("unknown optimizer", {"defaults": {"optimizer": "rmsprop"}}, "'rmsprop' is not one of"),
    ("wrong type", {"defaults": {"batch_size": "many"}}, "'many' is not of type 'integer'"),
    ("unknown key", {"defaults": {"learning_rate": 0.1}}, "'learning_rate' was unexpected"),
    ("sample epoch beyond epochs", {"sample_epochs": [1, 3]}, "sample_epochs [3] are beyond its epochs (2)"),
    ("sample epoch beyond one experiment's epochs", {"experiments": {"base": {}, "short": {"epochs": 1}}},
     "experiment 'short': sample_epochs [2] are beyond its epochs (1)"),
    ("hidden_size not a multiple of 8", {"defaults": {"hidden_size": 12}}, "multiple of 8"),
    ("missing folder", {"dataset": {"name": "folder", "path": "/no/such/folder", "image_size": 8},
                        "evaluation": {"extractor": "inception"}}, "dataset.path must be an existing folder"),
    ("folder without image_size", {"dataset": {"name": "folder", "path": "."}}, "'image_size' is a required property"),
    ("classifier on unlabelled images", {"dataset": {"name": "folder", "path": "tests", "image_size": 8},
                                         "evaluation": {"extractor": "classifier"}}, "needs a labelled dataset"),
    ("experiment name with a path separator", {"experiments": {"a/b": {}}}, "a/b"),
    ("experiment name with shell characters", {"experiments": {"x;rm -rf ~": {}}}, "x;rm -rf ~"),
    ("experiment name ..", {"experiments": {"..": {}}}, ".."),
    ("no experiments", {"experiments": {}}, "experiments"),
    ("unknown sampler", {"sampling": {"sampler": "euler"}}, "'euler' is not one of"),
    ("unknown extractor", {"evaluation": {"extractor": "clip"}}, "'clip' is not one of"),
]


def bad_config(change: dict) -> dict:
    """The tiny config with `change` applied; keys under "defaults" update the tiny defaults."""
    return tiny_config(**{k: v if k != "defaults" else {**tiny_config()["defaults"], **v} for k, v in change.items()})


@pytest.fixture(scope="module")
def bad_config_runs(tmp_path_factory):
    """snakemake on every bad config, all started at once: each run is only the start-up and the checks."""
    started = {}
    for name, change, _ in BAD_CONFIGS:
        workdir = tmp_path_factory.mktemp("bad")
        started[name] = workdir, start_snakemake(workdir, config=bad_config(change))
    return {name: (workdir, finish(process, timeout=300)) for name, (workdir, process) in started.items()}


@pytest.mark.parametrize("name, message", [(c[0], c[2]) for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_fails_before_any_job(bad_config_runs, name, message):
    workdir, result = bad_config_runs[name]
    assert result.returncode != 0
    assert message in result.output, result.output
    assert not (workdir / "results").exists() and not (workdir / "data").exists()
