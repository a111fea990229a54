import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from ddpm.config import (
    DatasetInfo,
    TrainConfig,
    check_dataset,
    check_evaluation,
    check_experiment_name,
    check_gpus,
    check_sampling,
    expand_runs,
    experiment_configs,
    experiment_runs,
    sample_settings,
    yaml_config_overrides,
)

DIGITS = DatasetInfo("digits", 1797, 1, 8)
ROOT = Path(__file__).resolve().parent.parent
SCHEMA = str(ROOT / "config" / "schema.yaml")


def test_defaults_are_the_course_model():
    config = TrainConfig()
    assert (config.architecture, config.hidden_size, config.num_timesteps) == ("course", 128, 1000)
    assert (config.schedule, config.beta1, config.beta2) == ("linear", 1e-4, 0.02)


def test_ddpm_architecture_defaults_are_the_papers_cifar10_model():
    config = TrainConfig(architecture="ddpm")
    assert (config.channel_mult, config.num_res_blocks, config.attention_resolutions, config.dropout) == \
        ([1, 2, 2, 2], 2, [16], 0.1)


@pytest.mark.parametrize("values, message", [
    ({"optimizer": "rmsprop"}, r"optimizer must be one of \['adam', 'adamw', 'sgd'\], got 'rmsprop'"),
    ({"device": "tpu"}, r"device must be one of \['auto', 'cpu', 'cuda'\]"),
    ({"amp": "fp16"}, r"amp must be one of \['auto', 'on', 'off'\]"),
    ({"hidden_size": 20}, "hidden_size must be a positive multiple of 8 for architecture 'course'"),
    ({"hidden_size": 0, "architecture": "ddpm"}, "hidden_size must be an integer >= 1"),
    ({"architecture": "resnet"}, r"architecture must be one of \['course', 'ddpm'\], got 'resnet'"),
    ({"schedule": "quadratic"}, r"schedule must be one of \['linear', 'cosine'\], got 'quadratic'"),
    ({"lr_schedule": "step"}, r"lr_schedule must be one of \['constant', 'cosine'\], got 'step'"),
    ({"batch_size": 10, "gpus": 4}, r"batch_size \(10\) must be divisible by gpus \(4\)"),
    ({"lr": -1e-3}, "lr must be a number > 0"),
    ({"lr": "fast"}, "lr must be a number > 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"epochs": 2.5}, "epochs must be an integer >= 1"),
    ({"seed": True}, "seed must be an integer >= 0"),
    ({"beta1": 0.1, "beta2": 0.01}, "0 < beta1 < beta2 < 1"),
    ({"weight_decay": -1}, "weight_decay must be >= 0"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"grad_clip": 0}, "grad_clip must be a number > 0"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \(0, 1\) or null"),
    ({"epochs": 5, "checkpoint_epochs": [1, 6]}, r"checkpoint epochs \[6\] are outside 1..epochs \(epochs = 5\)"),
])
def test_bad_values_name_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


def test_unknown_keys_are_listed():
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_num_workers_is_no_longer_a_field():
    with pytest.raises(ValueError, match=r"unknown config keys \['num_workers'\]"):
        TrainConfig.from_dict({"num_workers": 0})


def test_the_course_width_rule_is_not_imposed_on_the_ddpm_architecture():
    assert TrainConfig(architecture="ddpm", hidden_size=96).hidden_size == 96


def test_fingerprint_ignores_execution_only_fields():
    base = TrainConfig()
    assert TrainConfig(gpus=2, state_every=7, keep_states=5).fingerprint() == base.fingerprint()
    for change in ({"lr": 1e-3}, {"schedule": "cosine"}, {"architecture": "ddpm"}, {"dropout": 0.0}):
        assert TrainConfig(**change).fingerprint() != base.fingerprint(), change


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


@pytest.mark.parametrize("name, shape", [("digits", (1797, 1, 8)), ("cifar10", (50_000, 3, 32))])
def test_builtin_datasets_are_known_before_download(name, shape):
    dataset = check_dataset(name)
    assert (dataset.num_images, dataset.channels, dataset.image_size) == shape
    assert dataset.to_dict() == {"name": name, "channels": shape[1], "image_size": shape[2]}
    assert dataset.files_digest() == ""


@pytest.mark.parametrize("field, value", [("image_size", 16), ("channels", 3), ("path", "images")])
def test_folder_fields_are_refused_for_builtin_datasets(field, value):
    with pytest.raises(ValueError, match=f"dataset.{field} applies only to dataset 'folder'; digits is always "
                                         "1797 images of 1x8x8"):
        check_dataset("digits", **{field: value})


def write_folder(folder, count: int, start: int = 0) -> None:
    (folder / "nested").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = np.full((12, 12, 3), i, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / ("nested" if i % 2 else "") / f"img{i}.png")


def test_folder_dataset_records_its_shape_and_count(tmp_path):
    write_folder(tmp_path, 5)
    dataset = check_dataset("folder", path=str(tmp_path), image_size=16)
    assert (dataset.num_images, dataset.channels, dataset.image_size) == (5, 3, 16)
    assert dataset.to_dict() == {"name": "folder", "channels": 3, "image_size": 16, "path": str(tmp_path)}
    assert check_dataset("folder", path=str(tmp_path), image_size=16, channels=1).channels == 1


def test_folder_digest_changes_with_the_files_and_only_then(tmp_path):
    write_folder(tmp_path, 4)
    digest = check_dataset("folder", path=str(tmp_path), image_size=8).files_digest()
    assert check_dataset("folder", path=str(tmp_path), image_size=8).files_digest() == digest
    write_folder(tmp_path, 1, start=4)
    added = check_dataset("folder", path=str(tmp_path), image_size=8).files_digest()
    assert added != digest
    image = tmp_path / "img0.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1_000_000_000))
    assert check_dataset("folder", path=str(tmp_path), image_size=8).files_digest() != added


def test_num_reference_cannot_exceed_the_dataset():
    check_evaluation(DIGITS, {"extractor": "classifier", "num_reference": 1797})
    check_evaluation(DIGITS, {"extractor": "classifier", "num_reference": None})
    with pytest.raises(ValueError, match=r"evaluation.num_reference \(1798\) is larger than the dataset \(digits, "
                                         r"1797 images\): use 2..1797, or null"):
        check_evaluation(DIGITS, {"extractor": "classifier", "num_reference": 1798})


def test_ddim_steps_cannot_exceed_an_experiments_timesteps():
    experiments = {"long": TrainConfig(num_timesteps=100), "short": TrainConfig(num_timesteps=20)}
    check_sampling({"sampler": "ddim", "ddim_steps": 20}, experiments)
    check_sampling({"sampler": "ancestral", "ddim_steps": 50}, experiments)
    with pytest.raises(ValueError, match=r"sampling.ddim_steps \(50\) is larger than the num_timesteps \(20\) "
                                         r"of experiment 'short': .* use at most 20, or sampler: ancestral"):
        check_sampling({"sampler": "ddim", "ddim_steps": 50}, experiments)


def test_sample_settings_hold_only_what_changes_the_samples():
    sampling = {"num_samples": 64, "num_samples_early": None, "grid_size": 16, "sampler": "ancestral", "ddim_steps": 50,
                "ddim_eta": 0.5, "batch_size": 32, "seed": 1}
    expected = {"batch_size": 32, "num_samples": 64, "sampler": "ancestral", "seed": 1}
    assert sample_settings(sampling, 1, 5) == sample_settings(sampling, 5, 5) == expected
    ddim = sample_settings({**sampling, "sampler": "ddim"}, 5, 5)
    assert ddim["ddim_steps"] == 50 and ddim["ddim_eta"] == 0.5


def test_fewer_samples_before_the_last_epoch():
    sampling = {"num_samples": 64, "num_samples_early": 8, "grid_size": 16, "sampler": "ancestral", "batch_size": 32,
                "seed": 1}
    assert [sample_settings(sampling, epoch, 5)["num_samples"] for epoch in (1, 4, 5)] == [8, 8, 64]


def test_gpus_beyond_the_given_resources_are_refused():
    check_gpus({"a": 2, "b": 0}, None)
    check_gpus({"a": 2, "b": 0}, 2)
    with pytest.raises(ValueError, match=r"experiment 'a' trains on gpus: 2 but --resources gpu=1 lets a job use 1"):
        check_gpus({"a": 2, "b": 0}, 1)


def test_config_overrides_are_read_as_yaml():
    assert yaml_config_overrides(["sample_epochs=[10, 30]", "sampling={grid_size: 4}", "name=x", "lr=2e-3",
                                  "tensorboard=true"]) == \
        {"sample_epochs": [10, 30], "sampling": {"grid_size": 4}, "tensorboard": True}


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


def tiny(**changes) -> dict:
    """tests/data/tiny.yaml with top-level sections replaced."""
    return {**yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text()), **changes}


@pytest.mark.parametrize("config", [tiny(), tiny(experiments={"base": None, "other": {"lr": 1e-3}}),
                                    yaml.safe_load((ROOT / "config" / "config.yaml").read_text()),
                                    yaml.safe_load((ROOT / "config" / "cifar10.yaml").read_text())])
def test_schema_accepts_the_shipped_configs_and_empty_experiments(config):
    validate(config, SCHEMA)


@pytest.mark.parametrize("change, messages", [
    ({"experiments": {"base": {"ema_decay": 1}}},
     ["1 is greater than or equal to the maximum of 1", "On instance['experiments']['base']['ema_decay']"]),
    ({"experiments": {"base": {"learning_rate": 0.1}}},
     ["'learning_rate' was unexpected", "On instance['experiments']['base']"]),
    ({"experiments": {"base": {"architecture": "resnet"}}},
     ["'resnet' is not one of ['course', 'ddpm']", "On instance['experiments']['base']['architecture']"]),
    ({"defaults": {"num_workers": 0}}, ["'num_workers' was unexpected", "On instance['defaults']"]),
    ({"defaults": {"schedule": "quadratic"}}, ["'quadratic' is not one of ['linear', 'cosine']"]),
    ({"sampling": {"num_samples": 1}}, ["1 is less than the minimum of 2", "On instance['sampling']['num_samples']"]),
    ({"sampling": {"ddim_eta": 1.5}}, ["1.5 is greater than the maximum of 1", "On instance['sampling']['ddim_eta']"]),
    ({"defaults": {"lr_schedule": "step"}}, ["'step' is not one of ['constant', 'cosine']",
                                             "On instance['defaults']['lr_schedule']"]),
])
def test_schema_errors_name_the_section_the_field_and_what_is_allowed(change, messages):
    with pytest.raises(WorkflowError) as error:
        validate(tiny(**change), SCHEMA)
    for message in messages:
        assert message in str(error.value), str(error.value)


@pytest.mark.parametrize("change, message", [
    ({"seeds": [0, 0]}, "[0, 0] has non-unique elements"),
    ({"seeds": [-1]}, "-1 is less than the minimum of 0"),
    ({"seeds": []}, "[] should be non-empty"),
    ({"sweep": {"lr": 0.1}}, "0.1 is not of type 'array'"),
    ({"sweep": [0.1]}, "[0.1] is not of type 'object'"),
])
def test_schema_checks_the_shape_of_seeds_and_sweep(change, message):
    with pytest.raises(WorkflowError, match=re.escape(message)):
        validate(tiny(**change), SCHEMA)
    validate(tiny(seeds=[0, 1], sweep={"lr": [1e-4, 2e-4], "batch_size": [64]}), SCHEMA)


def test_tensorboard_without_the_package_is_refused(monkeypatch):
    import importlib.util

    from ddpm.config import check_tensorboard

    check_tensorboard(True)  # installed with the test extra
    check_tensorboard(False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r'tensorboard: true needs the tensorboard package: pip install -e "\.\[tensorboard\]"'):
        check_tensorboard(True)
    check_tensorboard(False)


def test_labels_show_the_paper_unets_fields_only_where_they_apply():
    from ddpm.config import experiment_labels

    configs = experiment_configs(workflow_config(experiments={
        "course": {}, "ddpm": {"architecture": "ddpm", "hidden_size": 32, "channel_mult": [1, 2],
                               "attention_resolutions": [4], "dropout": 0.0}}), DIGITS)
    labels = experiment_labels(configs)
    assert labels["course"] == "course (architecture=course, hidden_size=128)"
    assert labels["ddpm"] == ("ddpm (architecture=ddpm, hidden_size=32, channel_mult=[1, 2], "
                              "attention_resolutions=[4], dropout=0.0)")
