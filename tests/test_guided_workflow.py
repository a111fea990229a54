"""Guidance and class-conditional runs end to end: real snakemake on a tiny config of a class-conditional experiment
under classifier-free guidance, an unconditional one guided by its own first epoch and an unguided class-conditional
one, with a sampling sweep over the guidance scale."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ddpm import sampling
from tests.test_workflow import planned_rules
from tests.workflow import snakemake, tiny_config

SCALES = (1.0, 2.0)
VARIANTS = tuple(f".guidance_scale-{scale}" for scale in SCALES)


def guided_config(**changes) -> dict:
    config = tiny_config(
        experiments={
            "cond": {"class_conditional": True, "sampling": {"guidance": "cfg"}},
            "auto": {"sampling": {"guidance": "auto", "guide": {"epoch": 1}}},
            "unguided": {"class_conditional": True, "sampling": {"guidance": "none"}},
        },
        sampling_sweep={"guidance_scale": list(SCALES)},
    )
    config["sampling"].update(draws=1, grid_size=20)
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def guided_run(tiny_run, tmp_path_factory):
    """The guided config run to the end, on the tiny run's prepared data, classifier and reference statistics (the
    same dataset and evaluation), copied with their times so that nothing of them is made again."""
    workdir = tmp_path_factory.mktemp("guided_run")
    shutil.copytree(tiny_run / "data", workdir / "data")
    shutil.copytree(tiny_run / "results" / "reference", workdir / "results" / "reference")
    result = snakemake(workdir, config=guided_config())
    assert result.returncode == 0, result.output
    assert not (workdir / "results" / "logs" / "reference").exists()  # no classifier or statistics made again
    return workdir


def test_class_conditional_samples_are_class_balanced_and_scored_for_their_labels(guided_run):
    samples = guided_run / "results" / "cond" / "samples"
    for variant in VARIANTS:
        labels = np.load(samples / f"epoch_2{variant}_labels.npy")
        assert labels.tolist() == [i % 10 for i in range(16)]  # sample i has label i mod K
        assert np.load(samples / f"epoch_2{variant}.npy").shape == (16, 1, 8, 8)
    with Image.open(samples / f"epoch_2{VARIANTS[0]}.png") as grid:
        assert round(grid.width / grid.height * 2) == 10  # 20 cells, 10 a row: 2 rows, each column one class
    assert not list((guided_run / "results" / "auto" / "samples").glob("*_labels.npy"))
    with open(guided_run / "results" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["experiment"], r["epoch"], r["guidance_scale"]) for r in rows} == {
        (e, str(epoch), str(scale)) for e in ("cond", "auto", "unguided") for epoch in (1, 2) for scale in SCALES}
    for row in rows:
        accuracy = row["class_accuracy"]
        assert (0 <= float(accuracy) <= 1) if row["experiment"] != "auto" else accuracy == ""


def test_the_guides_checkpoint_feeds_the_sample_job_and_guidance_changes_the_samples(guided_run):
    samples = guided_run / "results" / "auto" / "samples"
    unguided, guided = (np.load(samples / f"epoch_2{variant}.npy") for variant in VARIANTS)
    assert not np.array_equal(unguided, guided)
    target = "results/auto/samples/epoch_2.guidance_scale-2.0.npy"
    result = snakemake(guided_run, "-n", "--forcerun", target, "--until", target, config=guided_config())
    assert result.returncode == 0, result.output
    job = result.output[result.output.index("rule sample:"):]
    assert job.splitlines()[1].split() == ["input:", "results/auto/checkpoints/epoch_1.pt,",
                                           "results/auto/checkpoints/epoch_2.pt"]


def test_the_summary_and_plot_show_each_guidance_scale(guided_run):
    with open(guided_run / "results" / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert {(r["experiment"], r["guidance_scale"]) for r in summary if r["epoch"] == "2"} == {
        (e, str(scale)) for e in ("cond", "auto", "unguided") for scale in SCALES}
    with Image.open(guided_run / "results" / "plots" / "sampling_sweep.png") as image:
        assert image.format == "PNG"
    metric = json.loads((guided_run / "results" / "cond" / "metrics" / "epoch_2.guidance_scale-2.0.json").read_text())
    assert metric["guidance_scale"] == 2.0 and "class_accuracy" in metric


def test_a_new_sampling_sweep_on_trained_runs_trains_nothing(guided_run):
    config = guided_config(sampling_sweep={"guidance_scale": [1.0, 1.5, 3.0]})
    result = snakemake(guided_run, "-n", config=config)
    assert result.returncode == 0, result.output
    rules = planned_rules(result.output)
    assert "train" not in rules and "evaluate" in rules
    assert rules.count("sample") + rules.count("sample_with_labels") == 3 * 2 * 2  # runs x epochs x new scales


def test_a_sampling_variant_that_draws_what_an_earlier_one_drew_copies_its_samples(guided_run):
    """guidance_scale does not apply to an unguided run: its second scale's sample job copies the first's samples
    and labels, and the scores of both are the same."""
    samples, logs = guided_run / "results" / "unguided" / "samples", guided_run / "results" / "logs" / "sample"
    for ending in (".npy", "_labels.npy"):
        first, second = (np.load(samples / f"epoch_2{variant}{ending}") for variant in VARIANTS)
        assert np.array_equal(first, second)
    copied = (logs / "unguided" / f"epoch_2{VARIANTS[1]}.log").read_text()
    assert f"the same samples as results/unguided/samples/epoch_2{VARIANTS[0]}.npy: copied" in copied
    assert "copied" not in (logs / "cond" / f"epoch_2{VARIANTS[1]}.log").read_text()
    first, second = (json.loads((guided_run / "results" / "unguided" / "metrics" / f"epoch_2{variant}.json").read_text())
                     for variant in VARIANTS)
    assert first.pop("guidance_scale") == 1.0 and second.pop("guidance_scale") == 2.0
    assert first == second


@pytest.mark.parametrize("change, message", [
    ({"experiments": {"plain": {"sampling": {"guidance": "cfg"}}}},
     "experiment 'plain' with sampling_sweep guidance_scale=1.0: sampling.guidance cfg (classifier-free guidance) "
     "needs a class-conditional experiment"),
    ({"sampling_sweep": {"eta": [0.0, 0.5]}, "experiments": {"a": {"sampling": {"sampler": "dpm_solver"}}}},
     "experiment 'a' with sampling_sweep eta=0.5: sampling.eta (0.5) applies to the samplers ddim only"),
    ({"sampling_sweep": {"guidance_scale": [1.0]},
      "experiments": {"a": {"sampling": {"guidance": "auto", "guide": {"experiment": "b", "epoch": 1}}},
                      "b": {"schedule": "cosine"}}},
     "sampling.guide: 'b' has schedule 'cosine' and 'a' 'linear'"),
])
def test_guidance_that_cannot_be_done_is_refused_before_any_job(tmp_path, change, message):
    result = snakemake(tmp_path, "-n", config=guided_config(**change))
    assert result.returncode != 0 and message in result.output, result.output
    assert not (tmp_path / "results").exists()


def test_the_command_line_draws_guided_samples_of_one_class_or_of_every_class(guided_run, tmp_path):
    checkpoints = guided_run / "results"
    conditional = checkpoints / "cond" / "checkpoints" / "epoch_2.pt"
    common = ["--num-samples", "12", "--sampler", "ddim", "--steps", "5", "--batch-size", "16", "--device", "cpu"]
    sampling.main([str(conditional), *common, "--guidance", "cfg", "--guidance-scale", "3", "--label", "7",
                   "--out", str(tmp_path / "sevens.npy")])
    sevens = np.load(tmp_path / "sevens.npy")
    every_class = tmp_path / "all.npy"
    sampling.main([str(conditional), *common, "--guidance", "cfg", "--guidance-scale", "3", "--out", str(every_class)])
    assert sevens.shape == np.load(every_class).shape == (12, 1, 8, 8)
    assert not np.array_equal(sevens, np.load(every_class))
    # the sample job's draw at guidance scale 2: the same images from the command line
    workflow = np.load(checkpoints / "cond" / "samples" / "epoch_2.guidance_scale-2.0.npy")
    again = tmp_path / "again.npy"
    sampling.main([str(conditional), "--num-samples", "16", "--sampler", "ddim", "--steps", "5", "--batch-size", "16",
                   "--device", "cpu", "--guidance", "cfg", "--guidance-scale", "2", "--out", str(again)])
    assert np.array_equal(np.load(again), workflow)
    guided = tmp_path / "guided.npy"
    sampling.main([str(checkpoints / "auto" / "checkpoints" / "epoch_2.pt"), *common, "--guidance", "auto",
                   "--guide", str(checkpoints / "auto" / "checkpoints" / "epoch_1.pt"), "--guidance-scale", "2",
                   "--out", str(guided)])
    assert np.load(guided).shape == (12, 1, 8, 8)
