"""The workflow's half of the config (ddpm.experiments): experiments, sweeps, seeds and the checks that need the dataset."""

import json
import re

import numpy as np
import pytest
import yaml

from ddpm.config import TrainConfig
from ddpm.dataset_info import DatasetInfo
from ddpm.experiments import (
    check_evaluation,
    check_renamed_fields,
    check_numbers_read_as_text,
    check_experiment_name,
    check_gpus,
    check_sampling,
    expand_runs,
    experiment_configs,
    guide_run,
    sampling_variants,
    experiment_runs,
    identical_runs,
    sample_settings,
    draw_index,
    draw_suffixes,
    loss_objective,
    yaml_config_overrides,
)
from ddpm.reruns import drawn_counts, epoch_changes, kept_in_full, last_epoch_notes, recorded_configs, trains_on

DIGITS = DatasetInfo("digits", 1797, 1, 8, num_classes=10)


@pytest.mark.parametrize("name", ["a/b", "..", "a b", "x;rm -rf", "$(id)", ".hidden", "", "a..b", "é"])
def test_experiment_names_that_are_not_safe_paths(name):
    with pytest.raises(ValueError, match="is not allowed"):
        check_experiment_name(name)


@pytest.mark.parametrize("name", ["baseline", "lr_1e-3", "EMA.off", "v2"])
def test_good_experiment_names(name):
    assert check_experiment_name(name) == name


def workflow_config(**changes) -> dict:
    config = {"defaults": {"epochs": 2, "batch_size": 64}, "experiments": {"base": None}, "sample_epochs": [1, 2]}
    return {**config, **changes}


def test_experiment_configs_merge_defaults_and_overrides_in_config_order():
    configs = experiment_configs(workflow_config(experiments={"b": {"lr": 1e-3}, "a": None}), DIGITS)
    assert list(configs) == ["b", "a"]
    assert (configs["b"].lr, configs["a"].lr, configs["a"].batch_size) == (1e-3, TrainConfig.lr, 64)
    assert configs["a"].checkpoint_epochs == [1, 2]


@pytest.mark.parametrize("experiment, message", [
    ({"batch_size": 1798}, r"experiment 'base': batch_size \(1798\) is larger than the dataset \(digits, 1797 images\): "
                           r"use 1..1797"),
    ({"hidden_size": 12}, "experiment 'base': hidden_size must be a positive multiple of 8 for architecture 'course'"),
    ({"ema_decay": 1}, r"experiment 'base': ema_decay must be in \(0, 1\)"),
])
def test_experiment_errors_name_the_experiment_and_the_field(experiment, message):
    with pytest.raises(ValueError, match=message):
        experiment_configs(workflow_config(experiments={"base": experiment}), DIGITS)


def test_ddpm_architecture_is_checked_against_the_real_image_size():
    ddpm = {"architecture": "ddpm", "hidden_size": 32, "channel_mult": [1, 2], "attention_resolutions": [4]}
    assert experiment_configs(workflow_config(experiments={"base": ddpm}), DIGITS)["base"].architecture == "ddpm"
    with pytest.raises(ValueError, match="experiment 'base': channel_mult has 4 levels"):
        experiment_configs(workflow_config(experiments={"base": {**ddpm, "channel_mult": [1, 2, 2, 2]}}), DIGITS)
    with pytest.raises(ValueError, match="experiment 'base': hidden_size must be a positive multiple of 32"):
        experiment_configs(workflow_config(experiments={"base": {**ddpm, "hidden_size": 48}}), DIGITS)


def test_num_reference_cannot_exceed_the_dataset():
    check_evaluation(DIGITS, {"extractor": "classifier", "num_reference": 1797})
    check_evaluation(DIGITS, {"extractor": "classifier", "num_reference": None})
    with pytest.raises(ValueError, match=r"evaluation.num_reference \(1798\) is larger than the dataset \(digits, "
                                         r"1797 images\): use 2..1797, or null"):
        check_evaluation(DIGITS, {"extractor": "classifier", "num_reference": 1798})


SAMPLING = {"num_samples": 8, "num_samples_early": None, "grid_size": 8, "sampler": "ddim", "steps": 20, "eta": 0.0,
            "timestep_spacing": "auto", "guidance": "none", "guidance_scale": 1.0, "batch_size": 8, "seed": 0,
            "draws": 1}


def check_workflow_sampling(sampling: dict | None = None, experiments: dict | None = None,
                            sampling_sweep: dict | None = None) -> dict:
    """check_sampling on a workflow config of two experiments, T = 100 and T = 20 (or `experiments`); its runs."""
    config = {"defaults": {"epochs": 4}, "sample_epochs": [2],
              "experiments": experiments or {"long": {"num_timesteps": 100}, "short": {"num_timesteps": 20}},
              "sampling": {**SAMPLING, **(sampling or {})}, "sampling_sweep": sampling_sweep}
    runs = expand_runs(config, DIGITS)
    check_sampling(config["sampling"], runs, sampling_variants(config))
    return runs


def test_ddim_steps_cannot_exceed_an_experiments_timesteps():
    check_workflow_sampling({"sampler": "ddim", "steps": 20})
    check_workflow_sampling({"sampler": "ancestral", "steps": 50})
    with pytest.raises(ValueError, match=r"experiment 'short': sampling.steps \(50\) is larger than its num_timesteps "
                                         r"\(20\): sampler ddim takes 1..num_timesteps steps"):
        check_workflow_sampling({"sampler": "ddim", "steps": 50})
    with pytest.raises(ValueError, match=r"experiment 'short': sampling.steps \(50\) .* sampler dpm_solver takes"):
        check_workflow_sampling({"sampler": "dpm_solver", "steps": 50})
    with pytest.raises(ValueError, match=r"sampling.eta \(0.5\) applies to the samplers ddim only, not 'dpm_solver'"):
        check_workflow_sampling({"sampler": "dpm_solver", "eta": 0.5})
    with pytest.raises(ValueError, match=r"sampling.sampler must be one of \['ancestral', 'ddim', 'dpm_solver', "
                                         r"'dpm_solver_sde'\], got 'euler'"):
        check_workflow_sampling({"sampler": "euler"})
    with pytest.raises(ValueError, match=r"sampling.num_samples_early \(16\) is larger than sampling.num_samples \(8\)"):
        check_workflow_sampling({"sampler": "ancestral", "num_samples_early": 16})


@pytest.mark.parametrize("sampling, experiments, sweep, message", [
    ({"sampler": "ancestral", "timestep_spacing": "trailing"}, None, None,
     r"experiment 'long': sampling.timestep_spacing \(trailing\) applies to the samplers ddim, dpm_solver, "
     r"dpm_solver_sde; sampler ancestral visits every timestep"),
    ({"guidance": "cfg", "guidance_scale": 2.0}, None, None,
     r"experiment 'long': sampling.guidance cfg \(classifier-free guidance\) needs a class-conditional experiment"),
    ({}, {"cond": {"class_conditional": True}, "plain": {"sampling": {"guidance": "cfg"}}}, None,
     r"experiment 'plain': sampling.guidance cfg"),
    ({"guidance": "auto"}, None, None, r"sampling.guidance auto needs sampling.guide"),
    ({"guidance": "auto", "guide": {"experiment": "lng", "epoch": 2}}, None, None,
     r"sampling.guide.experiment 'lng' is not an experiment; experiments: long, short"),
    ({"guidance": "auto", "guide": {"epoch": 3}}, None, None,
     r"sampling.guide.epoch \(3\) is not an epoch at which 'long' is checkpointed: use one of \[2, 4\]"),
    ({"guidance": "auto", "guide": {"experiment": "short", "epoch": 2}}, None, None,
     r"experiment 'long': sampling.guide: 'short' has num_timesteps 20 and 'long' 100"),
    ({}, {"cond": {"class_conditional": True,
                   "sampling": {"guidance": "auto", "guide": {"experiment": "plain", "epoch": 2}}}, "plain": {}}, None,
     r"experiment 'cond': sampling.guide: 'plain' has class_conditional False and 'cond' True"),
    ({"sampler": "dpm_solver"}, None, {"eta": [0.0, 0.5]},
     r"experiment 'long' with sampling_sweep eta=0.5: sampling.eta \(0.5\) applies to the samplers ddim only"),
])
def test_sampling_that_cannot_be_done_is_refused_naming_the_experiment_and_field(sampling, experiments, sweep, message):
    with pytest.raises(ValueError, match=message):
        check_workflow_sampling(sampling, experiments, sweep)


def test_an_experiment_guided_by_its_own_earlier_epoch_or_another_experiment():
    runs = check_workflow_sampling({"guidance": "auto", "guidance_scale": 2.0, "guide": {"epoch": 2}})
    assert guide_run(runs["long"].sampling, runs["long"], runs).name == "long"
    experiments = {"big": {}, "small": {"hidden_size": 32, "sampling": {"guidance": "none"}}}
    runs = check_workflow_sampling({"guidance": "auto", "guidance_scale": 2.0, "guide": {"experiment": "small",
                                                                                          "epoch": 4}}, experiments)
    assert guide_run(runs["big"].sampling, runs["big"], runs).name == "small"
    assert runs["small"].sampling["guidance"] == "none" and runs["big"].sampling["guidance"] == "auto"


def test_a_guide_is_the_run_of_the_same_seed():
    config = {"defaults": {"epochs": 2}, "sample_epochs": [1], "seeds": [0, 1],
              "experiments": {"main": {}, "small": {"hidden_size": 32}},
              "sampling": {**SAMPLING, "guidance": "auto", "guidance_scale": 2.0,
                           "guide": {"experiment": "small", "epoch": 1}}}
    runs = expand_runs(config, DIGITS)
    assert guide_run(runs["main.seed-1"].sampling, runs["main.seed-1"], runs).name == "small.seed-1"


def test_sampling_variants_cross_the_sweep_and_name_their_files_and_columns():
    variants = sampling_variants({"sampling_sweep": {"guidance_scale": [1.0, 2.5], "seed": [0, 3]}})
    assert list(variants) == [".guidance_scale-1.0.seed-0", ".guidance_scale-1.0.seed-3",
                              ".guidance_scale-2.5.seed-0", ".guidance_scale-2.5.seed-3"]
    variant = variants[".guidance_scale-2.5.seed-3"]
    assert variant.applied_to({"seed": 0, "guidance": "cfg"}) == {"seed": 3, "guidance": "cfg", "guidance_scale": 2.5}
    assert variant.columns() == {"guidance_scale": 2.5, "sampling_seed": 3}
    assert list(sampling_variants({})) == list(sampling_variants({"sampling_sweep": None})) == [""]


def test_defaults_cannot_hold_an_experiments_sampling():
    with pytest.raises(ValueError, match="defaults.sampling: set the sampling of every experiment in the top-level"):
        expand_runs({"defaults": {"sampling": {"guidance": "cfg"}}, "sample_epochs": [1],
                     "experiments": {"a": {}}, "sampling": SAMPLING}, DIGITS)


@pytest.mark.parametrize("config, message", [
    ({"defaults": {"lr": "1e-3"}}, "defaults.lr is '1e-3', which YAML reads as text, not a number: write 1.0e-3"),
    ({"sweep": {"lr": [1.0e-3, "2E+4"]}}, "sweep.lr is '2E+4', which YAML reads as text, not a number: write 2.0e+4"),
])
def test_a_number_yaml_reads_as_text_is_refused_with_how_to_write_it(config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_numbers_read_as_text(config)
    check_numbers_read_as_text({"dataset": {"path": "1e3"}, "defaults": {"lr": 1.0e-3}, "experiments": {"a": None}})


def test_runs_that_would_train_the_same_model_are_found():
    config = workflow_config(experiments={"adam": {}, "adamw": {"optimizer": "adamw"}, "saved_often": {"state_every": 7},
                                          "decayed": {"optimizer": "adamw", "weight_decay": 0.01}})
    runs = expand_runs(config, DIGITS)
    assert identical_runs(runs) == [["adam", "saved_often"]]  # adamw without weight decay is adam, but not the same code
    assert identical_runs(expand_runs({**config, "seeds": [0, 1]}, DIGITS)) == \
        [["adam.seed-0", "saved_often.seed-0"], ["adam.seed-1", "saved_often.seed-1"]]


def test_a_finished_run_is_told_apart_by_its_recorded_config(tmp_path):
    runs = expand_runs(workflow_config(experiments={"base": {}, "cosine": {"lr_schedule": "cosine"}}), DIGITS)
    for name, run in runs.items():
        recorded = {**run.config.to_dict(), "epochs": 1, "checkpoint_epochs": [1]}  # a 1-epoch run of it, finished
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump({"train": recorded}))
        (tmp_path / "resume" / name / "checkpoints").mkdir(parents=True)
        (tmp_path / "resume" / name / "checkpoints" / "epoch_1.pt").touch()  # its final state's
    assert runs["base"].config.epochs == runs["cosine"].config.epochs == 2
    recorded = recorded_configs(runs, tmp_path)
    assert epoch_changes(runs, recorded, tmp_path / "resume") == [
        "run base: epochs 1 -> 2: trains on from its final state at epoch 1",
        "run cosine: epochs 1 -> 2: trains again from step 0, as lr_schedule cosine depends on the number of epochs"]
    assert trains_on(recorded["base"], runs["base"].config) and not trains_on(recorded["cosine"], runs["cosine"].config)
    (tmp_path / "base" / "config.yaml").write_text(yaml.safe_dump({"train": {"num_workers": 4}}))  # not this version's
    recorded = recorded_configs(runs, tmp_path)
    assert recorded["base"] is None and not trains_on(recorded["base"], runs["base"].config)
    assert epoch_changes({"base": runs["base"]}, recorded, tmp_path / "resume") == []


def test_fewer_epochs_under_the_cosine_schedule_are_said_to_train_again(tmp_path):
    """A recorded cosine run of 4 epochs with a checkpoint at epoch 4, asked for 2: trains again (no error from
    a config whose checkpoint epochs lie beyond its epochs)."""
    runs = expand_runs(workflow_config(experiments={"cosine": {"lr_schedule": "cosine"}}), DIGITS)
    recorded = {**runs["cosine"].config.to_dict(), "epochs": 4, "checkpoint_epochs": [1, 2, 4]}
    (tmp_path / "cosine").mkdir()
    (tmp_path / "cosine" / "config.yaml").write_text(yaml.safe_dump({"train": recorded}))
    assert epoch_changes(runs, recorded_configs(runs, tmp_path), tmp_path / "resume") == [
        "run cosine: epochs 4 -> 2: trains again from step 0, as lr_schedule cosine depends on the number of epochs"]


def test_sample_settings_hold_only_what_changes_the_samples():
    sampling = {"num_samples": 64, "num_samples_early": None, "grid_size": 16, "sampler": "ancestral", "steps": 50,
                "eta": 0.5, "batch_size": 32, "seed": 1}
    expected = {"batch_size": 32, "num_samples": 64, "sampler": "ancestral", "seed": 1}
    assert sample_settings(sampling, 1, 5) == sample_settings(sampling, 5, 5) == expected
    ddim = sample_settings({**sampling, "sampler": "ddim"}, 5, 5)
    assert ddim["steps"] == 50 and ddim["eta"] == 0.5
    assert sample_settings({**sampling, "sampler": "dpm_solver"}, 5, 5) == {**expected, "sampler": "dpm_solver", "steps": 50}
    # the timestep spacing and guidance only where they are set: today's params stay as they were
    assert sample_settings({**sampling, "timestep_spacing": "auto", "guidance": "none", "guidance_scale": 1.0}, 5, 5) \
        == expected
    spaced = sample_settings({**sampling, "sampler": "ddim", "timestep_spacing": "trailing"}, 5, 5)
    assert spaced["timestep_spacing"] == "trailing"
    guided = sample_settings({**sampling, "guidance": "auto", "guidance_scale": 2.0, "guide": {"epoch": 1}}, 5, 5)
    assert guided == {**expected, "guidance": "auto", "guidance_scale": 2.0, "guide": {"epoch": 1}}
    assert list(guided) == sorted(guided)


def test_fewer_samples_before_the_last_epoch():
    sampling = {"num_samples": 64, "num_samples_early": 8, "grid_size": 16, "sampler": "ancestral", "batch_size": 32,
                "seed": 1}
    assert [sample_settings(sampling, epoch, 5)["num_samples"] for epoch in (1, 4, 5)] == [8, 8, 64]


def test_each_draw_has_its_own_sampling_seed_and_file():
    sampling = {"num_samples": 64, "num_samples_early": None, "sampler": "ancestral", "batch_size": 32, "seed": 5,
                "draws": 3}
    assert draw_suffixes(sampling) == ["", "_draw1", "_draw2"]
    assert [sample_settings(sampling, 5, 5, draw_index(suffix))["seed"] for suffix in draw_suffixes(sampling)] == [5, 6, 7]
    assert draw_suffixes({**sampling, "draws": 1}) == [""]


def test_gpus_beyond_the_given_resources_are_refused():
    check_gpus({"a": 2, "b": 0}, None)
    check_gpus({"a": 2, "b": 0}, 2)
    with pytest.raises(ValueError, match=r"experiment 'a' trains on gpus: 2 but --resources gpu=1 lets a job use 1"):
        check_gpus({"a": 2, "b": 0}, 1)


def test_config_overrides_are_read_as_yaml():
    assert yaml_config_overrides(["sample_epochs=[10, 30]", "sampling={grid_size: 4}", "name=x", "lr=2e-3",
                                  "tensorboard=true"]) == \
        {"sample_epochs": [10, 30], "sampling": {"grid_size": 4}, "tensorboard": True}
    assert yaml_config_overrides(["sweep={}", "seeds=null"]) == {"sweep": None, "seeds": None}  # switched off
    assert yaml_config_overrides(["sweep={lr: [0.1]}", "seeds=[]"]) == {"sweep": {"lr": [0.1]}, "seeds": None}


def sweep_config(**changes) -> dict:
    """Two experiments, one of which sets its own lr; top-level `seeds` and `sweep` as given."""
    config = workflow_config(experiments={"base": {}, "fast": {"lr": 1e-3, "seed": 7}})
    return {**config, **changes}


def test_without_seeds_and_sweep_each_run_is_an_experiment_with_its_own_seed():
    runs = expand_runs(sweep_config(), DIGITS)
    assert list(runs) == ["base", "fast"]
    assert [(r.experiment, r.parent, r.seed, r.swept) for r in runs.values()] == [("base", "base", 0, {}),
                                                                                ("fast", "fast", 7, {})]
    assert {name: run.config for name, run in runs.items()} == experiment_configs(sweep_config(), DIGITS)


def test_experiments_cross_every_sweep_combination_at_every_seed():
    runs = expand_runs(sweep_config(seeds=[0, 3], sweep={"lr": [1e-4, 5e-4], "batch_size": [32, 64]}), DIGITS)
    assert len(runs) == 2 * 2 * 2 * 2
    run = runs["fast.lr-0.0005.batch_size-32.seed-3"]
    assert (run.experiment, run.parent, run.seed) == ("fast.lr-0.0005.batch_size-32", "fast", 3)
    assert run.swept == {"lr": 5e-4, "batch_size": 32}
    assert (run.config.lr, run.config.batch_size, run.config.seed) == (5e-4, 32, 3)  # the sweep replaces fast's lr
    assert run.config.checkpoint_epochs == [1, 2]
    for run in runs.values():
        assert run.name == f"{run.experiment}.seed-{run.seed}"
        assert run.config.to_dict() == {**TrainConfig.from_dict({**sweep_config()["defaults"], **run.swept,
                                                                 "seed": run.seed, "checkpoint_epochs": [1, 2]}).to_dict()}
    assert list(experiment_runs(runs)["base.lr-0.0001.batch_size-64"]) == [
        runs["base.lr-0.0001.batch_size-64.seed-0"], runs["base.lr-0.0001.batch_size-64.seed-3"]]


def test_a_sweep_without_seeds_keeps_each_experiments_seed():
    runs = expand_runs(sweep_config(sweep={"ema_decay": [None, 0.9]}), DIGITS)
    assert list(runs) == ["base.ema_decay-null", "base.ema_decay-0.9", "fast.ema_decay-null", "fast.ema_decay-0.9"]
    assert {r.seed for r in runs.values() if r.parent == "fast"} == {7}


def test_adding_a_seed_or_changing_a_sweep_value_leaves_the_other_runs_as_they_were():
    before = expand_runs(sweep_config(seeds=[0, 1], sweep={"lr": [1e-4, 5e-4]}), DIGITS)
    more_seeds = expand_runs(sweep_config(seeds=[0, 1, 2], sweep={"lr": [1e-4, 5e-4]}), DIGITS)
    assert {name: run for name, run in more_seeds.items() if run.seed != 2} == before
    changed = expand_runs(sweep_config(seeds=[0, 1], sweep={"lr": [1e-4, 2e-4]}), DIGITS)
    assert {n for n in changed if n not in before} == {f"{e}.lr-0.0002.seed-{s}" for e in ("base", "fast") for s in (0, 1)}
    assert all(changed[name] == run for name, run in before.items() if name in changed)


def test_run_names_spell_every_kind_of_value_as_a_safe_path():
    sweep = {"grad_clip": [None, 1e20, 0.5], "flip": [True, False], "lr": [1e-05]}
    runs = expand_runs(sweep_config(experiments={"base": {}}, sweep=sweep), DIGITS)
    assert "base.grad_clip-1e20.flip-true.lr-1e-05" in runs and "base.grad_clip-null.flip-false.lr-1e-05" in runs
    assert all(check_experiment_name(name) == name for name in runs)


@pytest.mark.parametrize("changes, message", [
    ({"sweep": {"learning_rate": [0.1]}}, r"sweep field 'learning_rate' is not an experiment field; allowed: \[.*'lr'"),
    ({"sweep": {"seed": [0, 1]}}, "list the seeds under `seeds:`"),
    ({"sweep": {"lr": []}}, r"sweep.lr must be a non-empty list of values, got \[\]"),
    ({"sweep": {"lr": 0.1}}, "sweep.lr must be a non-empty list of values, got 0.1"),
    ({"sweep": {"lr": [0.1, 0.1]}}, "sweep.lr lists 0.1 more than once"),
    ({"sweep": {"batch_size": [32, "many"]}}, "sweep batch_size='many': experiment 'base': batch_size must be an integer"),
    ({"sweep": {"flip": ["yes"]}}, "sweep flip='yes': experiment 'base': flip must be true or false, got 'yes'"),
    ({"sweep": {"epochs": [1, 3]}}, r"sweep epochs=1: experiment 'base': sample_epochs \[2\] are beyond its epochs \(1\)"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"seeds": [0, -1]}, "each of seeds must be an integer >= 0, got -1"),
    ({"seeds": [1, 1]}, r"seeds lists a seed more than once: \[1, 1\]"),
    ({"sweep": {"lr": [1e-3]}, "experiments": {"a": {}, "a.lr-0.001": {}}},
     "the name 'a.lr-0.001' would stand for both experiment 'a' with lr=0.001 and experiment 'a.lr-0.001'"),
    ({"seeds": [1], "experiments": {"a.seed-1": {}, "a": {}}},
     "the name 'a.seed-1' would stand for both experiment 'a.seed-1' and experiment 'a' at seed 1"),
    ({"experiments": {"plots": {}}}, r"run name 'plots' is taken by the workflow's results/plots"),
])
def test_bad_seeds_and_sweeps_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        expand_runs(sweep_config(**changes), DIGITS)


def test_tensorboard_without_the_package_is_refused(monkeypatch):
    import importlib.util

    from ddpm.experiments import check_tensorboard

    check_tensorboard(True)  # installed with the test extra
    check_tensorboard(False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r'tensorboard: true needs the tensorboard package: pip install -e "\.\[tensorboard\]"'):
        check_tensorboard(True)
    check_tensorboard(False)


def test_labels_show_the_paper_unets_fields_only_where_they_apply():
    from ddpm.experiments import experiment_labels

    configs = experiment_configs(workflow_config(experiments={
        "course": {}, "ddpm": {"architecture": "ddpm", "hidden_size": 32, "channel_mult": [1, 2],
                               "attention_resolutions": [4], "dropout": 0.0}}), DIGITS)
    labels = experiment_labels(configs)
    assert labels["course"] == "course (architecture=course, hidden_size=128)"
    assert labels["ddpm"] == ("ddpm (architecture=ddpm, hidden_size=32, channel_mult=[1, 2], "
                              "attention_resolutions=[4], dropout=0.0)")


@pytest.mark.parametrize("old, new", [("ddim_steps", "steps"), ("ddim_eta", "eta")])
def test_the_old_sampling_names_are_refused_naming_the_new(old, new):
    check_renamed_fields({"sampling": {"steps": 50, "eta": 0.5}})
    check_renamed_fields({"sampling": None})
    with pytest.raises(ValueError, match=rf"^sampling.{old} is now sampling.{new} "):
        check_renamed_fields({"sampling": {old: 1}})


def test_the_loss_objective_names_the_target_and_the_weighting():
    assert loss_objective(TrainConfig()) == "MSE on the noise"
    assert loss_objective(TrainConfig(prediction="x0", loss_weighting="min_snr", min_snr_gamma=5.0)) == \
        "MSE on x_0, Min-SNR-5 weights"
    assert loss_objective(TrainConfig(prediction="v")) == "MSE on v"


def test_each_run_is_checkpointed_at_its_last_epoch_too_and_the_dry_run_says_where_that_is_no_sample_epoch():
    runs = expand_runs(workflow_config(sweep={"epochs": [2, 4]}, seeds=[0, 1]), DIGITS)
    assert [run.config.checkpoint_epochs for run in runs.values()] == [[1, 2], [1, 2], [1, 2, 4], [1, 2, 4]]
    assert last_epoch_notes(runs, [1, 2]) == [
        "runs base.epochs-4.seed-0, base.epochs-4.seed-1: the last epoch (4) is not one of sample_epochs [1, 2]; it is "
        "checkpointed (checkpoints/last.pt), sampled and scored as well"]
    assert last_epoch_notes(expand_runs(workflow_config(), DIGITS), [1, 2]) == []


def test_an_epoch_drawn_with_all_num_samples_keeps_them(tmp_path):
    """base extended from 2 to 4 epochs: epoch 2, scored with num_samples as its last epoch, keeps them; epoch 1
    (scored with num_samples_early) and epoch 3 (never drawn) get num_samples_early. The count comes from the first
    draw, or from the metrics where there is none."""
    runs = expand_runs(workflow_config(defaults={"epochs": 4, "batch_size": 64}, sample_epochs=[1, 2, 3]), DIGITS)
    sampling = {"num_samples": 16, "num_samples_early": 8, "sampler": "ancestral", "batch_size": 8, "seed": 0}
    (tmp_path / "base" / "metrics").mkdir(parents=True)
    (tmp_path / "base" / "samples").mkdir()
    (tmp_path / "base" / "metrics" / "epoch_1.json").write_text(json.dumps({"num_samples": 8}))
    np.save(tmp_path / "base" / "samples" / "epoch_2.npy", np.zeros((16, 1, 8, 8), dtype=np.uint8))
    drawn = drawn_counts(runs, tmp_path)
    assert drawn == {"base": {1: 8, 2: 16}}
    kept = kept_in_full(runs, sampling, drawn)
    assert kept == {"base": [2]}
    assert [sample_settings(sampling, epoch, 4, kept=kept["base"])["num_samples"] for epoch in (1, 2, 3, 4)] == \
        [8, 16, 8, 16]
    assert kept_in_full(runs, {**sampling, "num_samples": 32}, drawn) == {"base": []}  # drawn anew in any case


def test_a_final_state_past_a_new_checkpoint_epoch_is_said_to_train_again(tmp_path):
    """A run that finished 4 epochs with checkpoints at 1, 2 and 4, asked for 3 (which it kept no checkpoint of),
    or for 2 (which it did)."""
    config = workflow_config(defaults={"epochs": 4, "batch_size": 64})
    before = expand_runs(config, DIGITS)["base"].config
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.yaml").write_text(yaml.safe_dump({"train": before.to_dict()}))
    (tmp_path / "resume" / "base" / "checkpoints").mkdir(parents=True)
    for epoch in before.checkpoint_epochs:
        (tmp_path / "resume" / "base" / "checkpoints" / f"epoch_{epoch}.pt").touch()
    for epochs, message in [(3, "run base: epochs 4 -> 3: trains again from step 0, as its final state is past "
                                "epochs [3], of which it kept no checkpoint"),
                            (2, "run base: epochs 4 -> 2: keeps its first 2 epochs")]:
        runs = expand_runs({**config, "defaults": {"epochs": epochs, "batch_size": 64}}, DIGITS)
        assert epoch_changes(runs, recorded_configs(runs, tmp_path), tmp_path / "resume") == [message]
