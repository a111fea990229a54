"""The workflow end to end: real snakemake, real files, on the tiny config."""

import csv
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ddpm.checkpoint import ResumeStore, load_checkpoint
from ddpm.checks import METRICS
from ddpm.workflow import logged_to, run_of
from tests.workflow import ROOT, TINY, finish, snakemake, start_snakemake, tiny_config

EXPERIMENTS = ("base", "lr_high")
IMAGES = ROOT / "tests" / "data" / "images"  # two 8x8 grayscale PNGs
EPOCHS = (1, 2)
DRAWS = 2  # sampling draws per epoch in the tiny config


@pytest.fixture
def run(tiny_run):
    return tiny_run


def test_every_output_exists_and_is_valid(run):
    results = run / "results"
    with open(results / "losses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["experiment", "seed", "step", "epoch", "loss", "lr", "images_per_second", "elapsed_seconds"]
    assert {r["experiment"] for r in rows} == set(EXPERIMENTS)
    for exp in EXPERIMENTS:
        assert (results / exp / "config.yaml").exists()
        for epoch in EPOCHS:
            array = np.load(results / exp / "samples" / f"epoch_{epoch}.npy")
            assert array.shape == (16 if epoch == EPOCHS[-1] else 8, 1, 8, 8) and array.dtype == np.uint8
            second_draw = np.load(results / exp / "samples" / f"epoch_{epoch}_draw1.npy")  # sampling seed 1
            assert second_draw.shape == array.shape and not np.array_equal(second_draw, array)
            with Image.open(results / exp / "samples" / f"epoch_{epoch}.png") as grid:
                grid.verify()
    for plot in ("loss", "samples", "fid", "quality"):
        with Image.open(results / "plots" / f"{plot}.png") as image:
            assert image.format == "PNG" and image.size[0] > 300
    with open(results / "metrics.csv", newline="") as f:
        metrics = list(csv.DictReader(f))
    assert list(metrics[0]) == ["experiment", "seed", "epoch",
                                *(f"{m}{s}" for m in METRICS for s in ("", "_sampling_se")), "extractor",
                                "num_samples", "sampling_draws", "num_reference", "num_reference_features"]
    assert all(0 <= float(m[column]) <= 1 for m in metrics for column in ("precision", "recall", "memorisation"))
    assert all(m["sampling_draws"] == "2" and float(m["fid_sampling_se"]) > 0 for m in metrics)
    assert len(metrics) == len(EXPERIMENTS) * len(EPOCHS)
    assert all(m["extractor"] == "classifier" for m in metrics)
    assert sorted((int(m["epoch"]), int(m["num_samples"])) for m in metrics) == [(1, 8), (1, 8), (2, 16), (2, 16)]
    assert ResumeStore(results / "resume" / "base").steps()[-1] == 2 * 28  # the final state stays, to extend the run
    resolved = yaml.safe_load((results / "base" / "config.yaml").read_text())
    assert resolved["dataset"] == {"name": "digits", "channels": 1, "image_size": 8}  # what it trained on


def test_second_run_does_nothing(run):
    result = snakemake(run)
    assert result.returncode == 0
    assert "Nothing to be done" in result.output


def test_switching_tensorboard_on_reruns_nothing(run):
    result = snakemake(run, "--dry-run", "--config", "tensorboard=true")
    assert result.returncode == 0, result.output
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
        expected = {"train": 1, "sample": DRAWS * len(EPOCHS), "evaluate": len(EPOCHS)}[rule]
        assert planned.output.count(f"rule {rule}:") == expected, planned.output
    assert "run=lr_high" in planned.output and "run=base" not in planned.output, planned.output

    result = snakemake(workdir, "results/plots/loss.png", config=config)  # carried out for the training half
    assert result.returncode == 0, result.output
    assert "run=lr_high" in result.output and "run=base" not in result.output, result.output
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert changed.read_bytes() != before


def planned_rules(output: str) -> list[str]:
    """The rule of every job a dry run plans (one entry per job)."""
    return re.findall(r"^(?:local)?rule (\w+):$", output, flags=re.MULTILINE)


@pytest.fixture
def run_copy(run, tmp_path):
    """A copy of the finished tiny run that a test may change."""
    workdir = tmp_path / "copy"
    shutil.copytree(run, workdir, symlinks=True)
    return workdir


@pytest.mark.parametrize("defaults", [
    {"state_every": 7, "keep_states": 3},  # how a run is saved
    {"dropout": 0.5, "channel_mult": [1, 2]},  # the paper UNet's fields, for the course UNet
])
def test_fields_that_cannot_change_a_run_retrain_nothing(run, defaults):
    planned = snakemake(run, "--dry-run", config=tiny_config(defaults={**tiny_config()["defaults"], **defaults}))
    assert planned.returncode == 0, planned.output
    assert "Nothing to be done" in planned.output, planned.output


def test_runs_that_train_the_same_model_are_warned_of_before_any_job(tmp_path):
    config = tiny_config(experiments={"base": {}, "saved_often": {"state_every": 7}})
    planned = snakemake(tmp_path, "--dry-run", config=config)
    assert planned.returncode == 0, planned.output
    assert "runs base, saved_often have the same training config and seed" in planned.output, planned.output


def test_a_finished_run_asked_for_more_epochs_trains_only_those(run, tmp_path):
    """The tiny run with base raised from 2 to 4 epochs: only base's train job runs, from its final state, and its
    loss rows and final state are bit-identical to a run asked for 4 epochs from the start; the samples and FIDs
    of epochs 1 and 2 are kept as they were, and its last epoch is sampled and scored."""
    extended, fresh = tmp_path / "extended", tmp_path / "fresh"
    shutil.copytree(run, extended, symlinks=True)
    config = tiny_config(experiments={"base": {"epochs": 4}, "lr_high": {"lr": 3.0e-3}})
    kept = {p: p.stat().st_mtime_ns for p in (extended / "results").glob("*/*/epoch_*.*")}
    planned = snakemake(extended, "--dry-run", config=config)
    assert planned.returncode == 0, planned.output
    assert "run base: epochs 2 -> 4: trains on from its final state at epoch 2" in planned.output, planned.output
    assert sorted(rule for rule in planned_rules(planned.output) if rule in ("train", "sample", "evaluate")) == \
        ["evaluate", "sample", "sample", "train"]  # two draws
    assert planned_samples(planned.output) == {("base", 4)}, planned.output
    result = snakemake(extended, config=config)
    assert result.returncode == 0, result.output
    assert "resumed from step 56 (epoch 3" in (extended / "results" / "logs" / "train" / "base.log").read_text()
    assert {p: p.stat().st_mtime_ns for p in kept if "checkpoints" not in p.parts} == \
        {p: t for p, t in kept.items() if "checkpoints" not in p.parts}

    shutil.copytree(run / "data", fresh / "data")
    result = snakemake(fresh, "results/base/losses.csv", config=config)
    assert result.returncode == 0, result.output
    columns = ["step", "epoch", "loss", "lr"]
    assert (extended / "results" / "base" / "losses.csv").read_text().splitlines()[0].split(",")[:4] == columns
    rows = [[line.split(",")[:4] for line in (d / "results" / "base" / "losses.csv").read_text().splitlines()]
            for d in (extended, fresh)]
    assert rows[0] == rows[1] and len(rows[0]) == 1 + 4 * 28
    states = [ResumeStore(d / "results" / "resume" / "base").latest() for d in (extended, fresh)]
    assert states[0]["step"] == states[1]["step"] == 4 * 28
    for part in ("model", "ema"):
        assert all(torch.equal(states[0][part][k], states[1][part][k]) for k in states[1][part]), part


def test_removing_a_sample_epoch_retrains_nothing(run):
    planned = snakemake(run, "--dry-run", config=tiny_config(sample_epochs=[2]))
    assert planned.returncode == 0, planned.output
    assert "train" not in planned_rules(planned.output), planned.output


def test_changing_grid_size_redraws_only_the_grids(run_copy):
    config = tiny_config(sampling={**tiny_config()["sampling"], "grid_size": 4})
    planned = snakemake(run_copy, "--dry-run", config=config)
    assert planned.returncode == 0, planned.output
    rules = planned_rules(planned.output)
    assert sorted(set(rules)) == ["all", "plot_grid", "plot_samples"], planned.output
    assert rules.count("plot_grid") == len(EXPERIMENTS) * len(EPOCHS)


def test_num_samples_early_reruns_only_the_early_epochs(run):
    config = tiny_config(sampling={**tiny_config()["sampling"], "num_samples_early": 4})
    planned = snakemake(run, "--dry-run", config=config)
    assert planned.returncode == 0, planned.output
    assert planned_rules(planned.output).count("sample") == 2 * len(EXPERIMENTS), planned.output  # two draws
    assert re.findall(r"epoch=(\d+)", planned.output) and set(re.findall(r"epoch=(\d+)", planned.output)) == {"1"}


def test_steps_do_not_matter_to_the_ancestral_sampler(run_copy):
    target = "results/base/samples/epoch_1.npy"
    ancestral = {**tiny_config()["sampling"], "sampler": "ancestral"}
    result = snakemake(run_copy, target, config=tiny_config(sampling=ancestral))  # samples with the new sampler
    assert result.returncode == 0, result.output
    assert planned_rules(result.output) == ["sample"], result.output
    planned = snakemake(run_copy, "--dry-run", target, config=tiny_config(sampling={**ancestral, "steps": 7}))
    assert planned.returncode == 0, planned.output
    assert "Nothing to be done" in planned.output, planned.output


def test_config_overrides_apply_on_top_of_the_default_config(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    first, first_sample_epoch = next(iter(default["experiments"])), min(default["sample_epochs"])
    planned = snakemake(tmp_path, "--dry-run", "--config", "sample_epochs=[3]", configfile=None)
    assert planned.returncode == 0, planned.output
    assert f"run={first}, epoch=3" in planned.output and f"epoch={first_sample_epoch}," not in planned.output
    assert f"the last epoch ({default['defaults']['epochs']}) is not one of sample_epochs [3]" in planned.output


def test_config_overrides_apply_on_top_of_a_configfile_alone(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")  # not to be merged in
    planned = snakemake(tmp_path, "--dry-run", "--config", "sample_epochs=[1]", configfile=TINY)
    assert planned.returncode == 0, planned.output
    assert "run=base, epoch=1" in planned.output, planned.output
    assert "the last epoch (2) is not one of sample_epochs [1]" in planned.output, planned.output  # tiny's [1, 2] gone
    assert "lr_2e-3" not in planned.output, planned.output


def test_a_sample_epoch_that_is_not_configured_has_no_rule(tmp_path):
    result = snakemake(tmp_path, "--dry-run", "results/base/samples/epoch_3.png")
    assert result.returncode != 0
    assert "No rule to produce results/base/samples/epoch_3.png" in result.output, result.output


def test_a_changed_image_folder_is_prepared_again(tmp_path):
    images = tmp_path / "images"
    images.mkdir()

    def add_images(start, count):
        for i in range(start, start + count):
            Image.fromarray(np.full((8, 8), 10 * i, dtype=np.uint8)).save(images / f"{i}.png")

    add_images(0, 4)
    config = tiny_config(dataset={"name": "folder", "path": str(images), "image_size": 8, "channels": 1},
                         defaults={**tiny_config()["defaults"], "batch_size": 2}, evaluation={"extractor": "inception"})
    target = "data/folder/images.npy"
    result = snakemake(tmp_path, target, config=config)
    assert result.returncode == 0, result.output
    assert np.load(tmp_path / target).shape == (4, 1, 8, 8)
    unchanged = snakemake(tmp_path, "--dry-run", target, config=config)
    assert "Nothing to be done" in unchanged.output, unchanged.output
    add_images(4, 2)
    planned = snakemake(tmp_path, "--dry-run", config=config)  # the whole workflow's plan
    assert planned.returncode == 0, planned.output
    assert "rule download:" in planned.output, planned.output
    assert "Params have changed since last execution" in planned.output, planned.output


def test_loss_plot_builds_only_what_it_needs(tmp_path):
    result = snakemake(tmp_path, "--dry-run", "results/plots/loss.png")
    assert result.returncode == 0, result.output
    for rule in ("download", "train", "aggregate_losses", "plot_losses"):
        assert f"rule {rule}:" in result.output
    for rule in ("sample", "evaluate", "plot_samples", "reference_stats"):
        assert f"rule {rule}:" not in result.output


@pytest.mark.parametrize("path, run, epoch", [
    ("results/base.lr-0.001.seed-2/losses.csv", "base.lr-0.001.seed-2", None),
    ("results/base/metrics/epoch_10.json", "base", 10),
    ("results/lr_high/samples/epoch_2.png", "lr_high", 2),
])
def test_a_run_file_is_matched_to_its_run_by_name(path, run, epoch):
    assert run_of(path) == (run, epoch)


def test_a_job_log_has_a_traceback_for_a_crash_and_none_for_an_exit_status(tmp_path):
    """A training stopped by a signal says so and exits with 75: no 'SystemExit: 75' traceback that reads like a crash."""
    with pytest.raises(SystemExit), logged_to(tmp_path / "stopped.log"):
        print("training interrupted by SIGINT at step 5")
        raise SystemExit(75)
    assert (tmp_path / "stopped.log").read_text() == "training interrupted by SIGINT at step 5\n"
    with pytest.raises(RuntimeError), logged_to(tmp_path / "crashed.log"):
        raise RuntimeError("out of memory")
    assert "Traceback" in (tmp_path / "crashed.log").read_text()


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint")
    assert result.returncode == 0, result.output
    assert "Congratulations" in result.output


# each check once (the schema's own contents are tested in test_config.py)
BAD_CONFIGS = [
    ("unknown dataset", {"dataset": {"name": "mnist"}}, "'mnist' is not one of"),
    ("negative lr", {"defaults": {"lr": -1.0}}, "lr"),
    ("lr written 1e-3", {"experiments": {"base": {"lr": "1e-3"}}},
     "experiments.base.lr is '1e-3', which YAML reads as text, not a number: write 1.0e-3"),
    ("num_samples_early above num_samples", {"sampling": {"num_samples": 8, "num_samples_early": 16}},
     "sampling.num_samples_early (16) is larger than sampling.num_samples (8)"),
    ("unknown optimizer", {"defaults": {"optimizer": "rmsprop"}}, "'rmsprop' is not one of"),
    ("wrong type", {"defaults": {"batch_size": "many"}}, "'many' is not of type 'integer'"),
    ("unknown key", {"defaults": {"learning_rate": 0.1}}, "defaults.learning_rate is not a known field; allowed: "),
    ("sample epoch beyond epochs", {"sample_epochs": [1, 3]}, "sample_epochs [3] are beyond its epochs (2)"),
    ("sample epoch beyond one experiment's epochs", {"experiments": {"base": {}, "short": {"epochs": 1}}},
     "experiment 'short': sample_epochs [2] are beyond its epochs (1)"),
    ("hidden_size not a multiple of 8", {"defaults": {"hidden_size": 12}}, "multiple of 8"),
    ("missing folder", {"dataset": {"name": "folder", "path": "/no/such/folder", "image_size": 8},
                        "evaluation": {"extractor": "inception"}}, "dataset.path must be an existing folder"),
    ("folder without image_size", {"dataset": {"name": "folder", "path": "."}}, "'image_size' is a required property"),
    ("classifier on unlabelled images", {"dataset": {"name": "folder", "path": str(IMAGES), "image_size": 8},
                                         "evaluation": {"extractor": "classifier"}}, "needs a labelled dataset"),
    ("experiment name with a path separator", {"experiments": {"a/b": {}}}, "a/b"),
    ("experiment name with shell characters", {"experiments": {"x;rm -rf ~": {}}}, "x;rm -rf ~"),
    ("experiment name ..", {"experiments": {"..": {}}}, ".."),
    ("no experiments", {"experiments": {}}, "experiments"),
    ("unknown sampler", {"sampling": {"sampler": "euler"}}, "'euler' is not one of"),
    ("unknown extractor", {"evaluation": {"extractor": "clip"}}, "'clip' is not one of"),
    ("default steps beyond num_timesteps", {"sampling": {"num_samples": 16, "sampler": "ddim"}},
     "experiment 'base': sampling.steps (50) is larger than its num_timesteps (20)"),
    ("DPM-Solver steps beyond num_timesteps", {"sampling": {"sampler": "dpm_solver", "steps": 21}},
     "experiment 'base': sampling.steps (21) is larger than its num_timesteps (20): sampler dpm_solver takes"),
    ("the old name ddim_steps", {"sampling": {"sampler": "ddim", "ddim_steps": 5}},
     "sampling.ddim_steps is now sampling.steps"),
    ("eta with DPM-Solver", {"sampling": {"sampler": "dpm_solver", "steps": 5, "eta": 0.5}},
     "sampling.eta (0.5) applies to the samplers ddim only, not 'dpm_solver'"),
    ("unknown loss weighting", {"defaults": {"loss_weighting": "snr"}}, "'snr' is not one of ['uniform', 'min_snr']"),
    ("min_snr_gamma not above 0", {"defaults": {"loss_weighting": "min_snr", "min_snr_gamma": 0}},
     "0 is less than or equal to the minimum of 0"),
    ("unknown prediction", {"experiments": {"base": {"prediction": "score"}}}, "'score' is not one of ['eps', 'v', 'x0']"),
    ("batch_size beyond the dataset", {"defaults": {"batch_size": 1798}},
     "experiment 'base': batch_size (1798) is larger than the dataset (digits, 1797 images): use 1..1797"),
    ("hidden_size in an experiment", {"experiments": {"base": {"hidden_size": 12}}},
     "experiment 'base': hidden_size must be a positive multiple of 8 for architecture 'course'"),
    ("image_size for digits", {"dataset": {"name": "digits", "image_size": 16}},
     "dataset.image_size applies only to dataset 'folder'; digits is always 1797 images of 1x8x8"),
    ("more GPUs than --resources gives", {"experiments": {"base": {"gpus": 2}}},
     "experiment 'base' trains on gpus: 2 but --resources gpu=1 lets a job use 1"),
]
# command-line arguments a bad config runs with
BAD_CONFIG_ARGS = {"more GPUs than --resources gives": ("--resources", "gpu=1")}


def bad_config(change: dict) -> dict:
    """The tiny config with `change` applied; keys under "defaults" update the tiny defaults."""
    return tiny_config(**{k: v if k != "defaults" else {**tiny_config()["defaults"], **v} for k, v in change.items()})


@pytest.fixture(scope="module")
def bad_config_runs(tmp_path_factory):
    """snakemake on every bad config, all started at once: each run is only the start-up and the checks."""
    started = {}
    for name, change, _ in BAD_CONFIGS:
        workdir = tmp_path_factory.mktemp("bad")
        started[name] = workdir, start_snakemake(workdir, *BAD_CONFIG_ARGS.get(name, ()), config=bad_config(change))
    return {name: (workdir, finish(process, timeout=300)) for name, (workdir, process) in started.items()}


@pytest.mark.parametrize("name, messages", [(c[0], c[2]) for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_fails_before_any_job(bad_config_runs, name, messages):
    workdir, result = bad_config_runs[name]
    assert result.returncode != 0
    for message in [messages] if isinstance(messages, str) else messages:
        assert message in result.output, result.output
    assert not (workdir / "results").exists() and not (workdir / "data").exists()


def planned_samples(output: str) -> set[tuple[str, int]]:
    """The (run, epoch) of every sample job a dry run plans."""
    return {(run, int(epoch)) for run, epoch in re.findall(r"wildcards: run=(\S+), epoch=(\d+), variant=", output)}


def metric_rows(workdir, table: str = "metrics.csv") -> list[tuple[str, int]]:
    with open(workdir / "results" / table, newline="") as f:
        return sorted((row["experiment"], int(row["epoch"])) for row in csv.DictReader(f))


def test_a_last_epoch_that_is_not_a_sample_epoch_is_checkpointed_sampled_and_scored(run_copy):
    """base raised from 2 to 3 epochs, sample_epochs still [1, 2]: the dry run says so, its epoch-3 model is
    published (checkpoints/last.pt, epoch_3.pt) and sampled and scored with all num_samples, in one run."""
    config = tiny_config(experiments={"base": {"epochs": 3}, "lr_high": {"lr": 3.0e-3}})
    planned = snakemake(run_copy, "--dry-run", config=config)
    assert planned.returncode == 0, planned.output
    assert ("run base: the last epoch (3) is not one of sample_epochs [1, 2]; it is checkpointed (checkpoints/last.pt), "
            "sampled and scored as well") in planned.output, planned.output
    assert planned_samples(planned.output) == {("base", 3)}, planned.output
    result = snakemake(run_copy, config=config)
    assert result.returncode == 0, result.output
    checkpoints = run_copy / "results" / "base" / "checkpoints"
    assert load_checkpoint(checkpoints / "last.pt")["epoch"] == load_checkpoint(checkpoints / "epoch_3.pt")["epoch"] == 3
    assert np.load(run_copy / "results" / "base" / "samples" / "epoch_3.npy").shape[0] == 16
    assert metric_rows(run_copy) == [("base", 1), ("base", 2), ("base", 3), ("lr_high", 1), ("lr_high", 2)]
    assert "Nothing to be done" in snakemake(run_copy, "--dry-run", config=config).output


@pytest.fixture(scope="module")
def extended_run(tiny_run, tmp_path_factory):
    """The tiny run with base extended from epochs 2 and sample_epochs [1, 2] to 3 and [1, 2, 3] (lr_high left out),
    with the mtimes of its epoch-2 samples and metrics from before."""
    workdir = tmp_path_factory.mktemp("extended") / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results" / "base").glob("[ms]*/epoch_2*")}  # samples, metrics
    result = snakemake(workdir, config=tiny_config(experiments={"base": {"epochs": 3}}, sample_epochs=[1, 2, 3]))
    assert result.returncode == 0, result.output
    return workdir, before


def test_extending_a_run_keeps_the_samples_and_fid_of_its_former_last_epoch(extended_run):
    """Epoch 2, scored with all 16 samples as the last epoch, is not drawn again with num_samples_early (8) once
    epoch 3 is the last: now or in a later run."""
    workdir, before = extended_run
    assert {p: p.stat().st_mtime_ns for p in before} == before
    with open(workdir / "results" / "metrics.csv", newline="") as f:
        counts = {int(row["epoch"]): int(row["num_samples"]) for row in csv.DictReader(f) if row["experiment"] == "base"}
    assert counts == {1: 8, 2: 16, 3: 16}
    config = tiny_config(experiments={"base": {"epochs": 3}}, sample_epochs=[1, 2, 3])
    planned = snakemake(workdir, "--dry-run", config=config)
    assert "Nothing to be done" in planned.output, planned.output


def test_lowering_epochs_settles_in_one_run(extended_run, tmp_path):
    """base lowered from 3 epochs back to 2: the dry run shows every job, and one run leaves no epoch-3 rows in
    the tables, with nothing left to do."""
    workdir = tmp_path / "lowered"
    shutil.copytree(extended_run[0], workdir, symlinks=True)
    config = tiny_config(experiments={"base": {}})
    planned = snakemake(workdir, "--dry-run", config=config)
    assert planned.returncode == 0, planned.output
    assert "run base: epochs 3 -> 2: keeps its first 2 epochs" in planned.output, planned.output
    assert {"train", "aggregate_metrics", "summarize"} <= set(planned_rules(planned.output)), planned.output
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.output
    assert sorted(planned_rules(result.output)) == sorted(planned_rules(planned.output))
    assert metric_rows(workdir) == metric_rows(workdir, "summary.csv") == [("base", 1), ("base", 2)]
    assert "Nothing to be done" in snakemake(workdir, "--dry-run", config=config).output
