"""The config of one run (ddpm.config.TrainConfig), the schema, and their agreement with the README."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from ddpm.checks import check_workflow_config
from ddpm.config import TrainConfig
from tests.workflow import finish, start_snakemake

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
    ({"class_conditional": 1}, "class_conditional must be true or false, got 1"),
    ({"label_dropout": 1.0}, r"label_dropout must be in \[0, 1\), got 1.0"),
    ({"label_dropout": -0.1}, r"label_dropout must be in \[0, 1\), got -0.1"),
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
    assert TrainConfig(gpus=2, state_every=7, keep_states=5, checkpoint_epochs=[3]).fingerprint() == base.fingerprint()
    for change in ({"lr": 1e-3}, {"schedule": "cosine"}, {"architecture": "ddpm"},
                   {"architecture": "ddpm", "dropout": 0.0}):
        assert TrainConfig(**change).fingerprint() != base.fingerprint(), change


@pytest.mark.parametrize("base, same", [
    ({}, {"state_every": 7, "keep_states": 5, "checkpoint_epochs": [1, 3]}),  # how the run is saved
    ({}, {"dropout": 0.0, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [8]}),  # course UNet
    ({"schedule": "cosine"}, {"beta1": 1e-3, "beta2": 0.05}),  # cosine schedule
    ({"optimizer": "adam"}, {"momentum": 0.5}),
    ({}, {"label_dropout": 0.3}),  # unconditional
])
def test_the_training_identity_leaves_out_what_cannot_change_the_run(base, same):
    assert TrainConfig(**base, **same).training_identity() == TrainConfig(**base).training_identity()


@pytest.mark.parametrize("base, change", [
    ({}, {"gpus": 2}), ({"architecture": "ddpm"}, {"dropout": 0.0}), ({}, {"beta1": 1e-3}),
    ({"optimizer": "sgd"}, {"momentum": 0.5}), ({}, {"lr": 1e-3}),
    ({}, {"class_conditional": True}), ({"class_conditional": True}, {"label_dropout": 0.3}),
])
def test_the_training_identity_keeps_what_changes_the_run(base, change):
    assert TrainConfig(**base, **change).training_identity() != TrainConfig(**base).training_identity()


def tiny(**changes) -> dict:
    """tests/data/tiny.yaml with top-level sections replaced."""
    return {**yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text()), **changes}


@pytest.mark.parametrize("config", [tiny(), tiny(experiments={"base": None, "other": {"lr": 1e-3}}),
                                    yaml.safe_load((ROOT / "config" / "config.yaml").read_text()),
                                    yaml.safe_load((ROOT / "config" / "cifar10.yaml").read_text())])
def test_schema_accepts_the_shipped_configs_and_empty_experiments(config):
    check_workflow_config(config, SCHEMA)


def test_schema_defaults_are_filled_in():
    config = tiny(sampling={"sampler": "ddim"})
    del config["evaluation"]
    check_workflow_config(config, SCHEMA)
    assert config["tensorboard"] is False and config["evaluation"] == {"extractor": "classifier", "num_reference": None}
    assert (config["sampling"]["sampler"], config["sampling"]["steps"], config["sampling"]["eta"]) == ("ddim", 50, 0)


def schema_errors(config: dict) -> list[str]:
    """The lines of the error check_workflow_config raises for `config`."""
    with pytest.raises(ValueError) as error:
        check_workflow_config(config, SCHEMA)
    return str(error.value).splitlines()


# the fields an experiment (or defaults) may have, as the error lists them
# (and an experiment's own `sampling`, over the sampling section)
HYPERPARAMETERS = ", ".join(sorted([*(f.name for f in dataclasses.fields(TrainConfig) if f.name != "checkpoint_epochs"),
                                    "sampling"]))


@pytest.mark.parametrize("change, line", [
    ({"experiments": {"ddpm": {"hiden_size": 16}}},
     f"experiments.ddpm.hiden_size is not a known field (did you mean hidden_size?); allowed: {HYPERPARAMETERS}"),
    ({"defaults": {"num_workers": 0}}, f"defaults.num_workers is not a known field; allowed: {HYPERPARAMETERS}"),
    ({"sample_epoch": [1]}, "sample_epoch is not a known field (did you mean sample_epochs?); allowed: dataset, "
                            "defaults, evaluation, experiments, sample_epochs, sampling, sampling_sweep, seeds, sweep, "
                            "tensorboard"),
    ({"evaluation": {"extractr": "inception"}}, "evaluation.extractr is not a known field (did you mean extractor?); "
                                                "allowed: extractor, num_reference"),
    ({"experiments": {"base": {"ema_decay": 1}}}, "experiments.base.ema_decay: 1 is greater than or equal to the "
                                                  "maximum of 1"),
    ({"experiments": {"base": {"architecture": "resnet"}}},
     "experiments.base.architecture: 'resnet' is not one of ['course', 'ddpm']"),
    ({"defaults": {"schedule": "cosin"}},
     "defaults.schedule: 'cosin' is not one of ['linear', 'cosine'] (did you mean cosine?)"),
    ({"defaults": {"lr_schedule": "step"}}, "defaults.lr_schedule: 'step' is not one of ['constant', 'cosine']"),
    ({"defaults": {"batch_size": "many"}}, "defaults.batch_size: 'many' is not of type 'integer'"),
    ({"sampling": {"num_samples": 1}}, "sampling.num_samples: 1 is less than the minimum of 2"),
    ({"sampling": {"eta": 1.5}}, "sampling.eta: 1.5 is greater than the maximum of 1"),
    ({"sample_epochs": [1, "2"]}, "sample_epochs[1]: '2' is not of type 'integer'"),
    ({"dataset": {"name": "folder", "path": "images"}}, "dataset: 'image_size' is a required property"),
    ({"seeds": [0, 0]}, "seeds: [0, 0] has non-unique elements"),
    ({"seeds": [-1]}, "seeds[0]: -1 is less than the minimum of 0"),
    ({"seeds": []}, "seeds: [] should be non-empty"),
    ({"sweep": {"lr": 0.1}}, "sweep.lr: 0.1 is not of type 'array'"),
    ({"sweep": [0.1]}, "sweep: [0.1] is not of type 'object', 'null'"),
])
def test_each_schema_error_is_one_line_naming_the_field_and_what_is_allowed(change, line):
    assert schema_errors(tiny(**change)) == [line]


def test_every_problem_is_one_line_in_the_order_of_the_fields():
    config = tiny(defaults={"learning_rat": 0.1, "optimizer": "adamm"}, sampling={"eta": -1}, typo=1)
    assert [line.split(" ")[0] for line in schema_errors(config)] == \
        ["defaults.learning_rat", "defaults.optimizer:", "sampling.eta:", "typo"]
    assert "(did you mean adam?)" in schema_errors(config)[1]


def test_the_schema_accepts_seeds_and_a_sweep():
    check_workflow_config(tiny(seeds=[0, 1], sweep={"lr": [1e-4, 2e-4], "batch_size": [64]}), SCHEMA)


@pytest.mark.parametrize("change, line", [
    ({"experiments": {"base": {"hiden_size": 16}}}, "experiments.base.hiden_size is not a known field (did you "
                                                    "mean hidden_size?); allowed: "),
    ({"sample_epoch": [1]}, "sample_epoch is not a known field (did you mean sample_epochs?); allowed: "),
])
def test_a_misspelled_field_stops_the_workflow_with_one_line(tmp_path, change, line):
    """Through snakemake itself: the error is the one line (after snakemake's header and the two lines of where it
    was raised), not Snakemake's schema dump of over a hundred lines, and no job starts."""
    result = finish(start_snakemake(tmp_path, "--dry-run", config=tiny(**change)), timeout=120)
    assert result.returncode != 0
    lines = result.output.splitlines()
    problems = [text for text in lines if "not a known field" in text]
    assert len(problems) == 1 and problems[0].startswith(line), result.output
    assert len(lines) <= 7, result.output
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def schema_enum(schema: dict, prop: dict) -> list | None:
    """A schema property's allowed values, following a local $ref."""
    if "$ref" in prop:
        prop = schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]]
    return prop.get("enum")


def readme_field_defaults() -> dict:
    """The README's experiment-field table as {field: default}; a row may name several fields, with one default for
    all of them or one each."""

    def value(text: str):
        parsed = yaml.safe_load(text)
        if isinstance(parsed, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(parsed)
            except ValueError:
                return parsed
        return parsed

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| field | default | meaning |") + 2
    defaults = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        names_cell, default_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = [name.strip("` ") for name in names_cell.split(",")]
        values = [default_cell] * len(names) if len(names) > 1 and "," not in default_cell else \
            ([default_cell] if len(names) == 1 else [v.strip() for v in default_cell.split(",")])
        assert len(values) == len(names), line
        defaults.update({name: value(v) for name, v in zip(names, values)})
    return defaults


def test_the_dataclass_the_schema_and_the_readme_define_the_same_fields():
    """TrainConfig is the one definition of a training field; the schema and the README's table must agree with it
    on the names, the defaults and the allowed values."""
    from ddpm.checks import DATASETS, EXTRACTORS, SAMPLERS
    from ddpm.config import CHOICES

    schema = yaml.safe_load(Path(SCHEMA).read_text())
    properties = {name: prop for name, prop in schema["$defs"]["hyperparameters"]["properties"].items()
                  if name != "sampling"}  # an experiment's own sampling section
    defaults = {k: v for k, v in TrainConfig().to_dict().items() if k != "checkpoint_epochs"}  # set by sample_epochs
    assert sorted(properties) == sorted(defaults)
    assert {name: schema_enum(schema, prop) for name, prop in properties.items() if schema_enum(schema, prop)} == \
        {name: list(allowed) for name, allowed in CHOICES.items()}
    sections = schema["properties"]
    assert sections["dataset"]["properties"]["name"]["enum"] == list(DATASETS)
    assert sections["sampling"]["properties"]["sampler"]["enum"] == list(SAMPLERS)
    assert sections["evaluation"]["properties"]["extractor"]["enum"] == list(EXTRACTORS)
    check_workflow_config(tiny(defaults=defaults), SCHEMA)  # every default is a value the schema accepts
    assert readme_field_defaults() == defaults
