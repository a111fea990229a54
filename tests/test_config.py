import pytest

from ddpm.config import TrainConfig, check_experiment_name


def test_defaults_are_the_course_model():
    config = TrainConfig()
    assert (config.hidden_size, config.num_timesteps, config.beta1, config.beta2) == (128, 1000, 1e-4, 0.02)


@pytest.mark.parametrize("values, message", [
    ({"optimizer": "rmsprop"}, r"optimizer must be one of \['adam', 'adamw', 'sgd'\], got 'rmsprop'"),
    ({"device": "tpu"}, r"device must be one of \['auto', 'cpu', 'cuda'\]"),
    ({"amp": "fp16"}, r"amp must be one of \['auto', 'on', 'off'\]"),
    ({"hidden_size": 20}, "hidden_size must be a positive multiple of 8"),
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


def test_fingerprint_ignores_execution_only_fields():
    base = TrainConfig()
    assert TrainConfig(num_workers=4, state_every=7).fingerprint() == base.fingerprint()
    assert TrainConfig(lr=1e-3).fingerprint() != base.fingerprint()


@pytest.mark.parametrize("name", ["a/b", "..", "a b", "x;rm -rf", "$(id)", ".hidden", "", "a..b", "é"])
def test_experiment_names_that_are_not_safe_paths(name):
    with pytest.raises(ValueError, match="is not allowed"):
        check_experiment_name(name)


@pytest.mark.parametrize("name", ["baseline", "lr_1e-3", "EMA.off", "v2"])
def test_good_experiment_names(name):
    assert check_experiment_name(name) == name
