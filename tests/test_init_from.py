"""init_from: training starts from a checkpoint's weights or a diffusers UNet2DModel's, through ddpm-train."""

import json

import numpy as np
import pytest
import torch

from ddpm.checkpoint import load_checkpoint, save_checkpoint
from ddpm.config import TrainConfig, check_init_from
from ddpm.launch import main
from ddpm.models import build_model

TINY = {"architecture": "ddpm", "hidden_size": 32, "channel_mult": [1], "num_res_blocks": 1,
        "attention_resolutions": [8], "dropout": 0.0, "batch_size": 32, "epochs": 1, "device": "cpu",
        "ema_decay": 0.9, "lr": 1e-3}


@pytest.fixture
def data(tmp_path, digits):
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "images.npy", digits[:64].numpy())
    return folder


def source_checkpoint(path, **fields):
    """An epoch checkpoint with random EMA weights (and other training weights)."""
    config = TrainConfig(**{**TINY, **fields})
    model, ema = build_model(config, 1, 8), build_model(config, 1, 8)
    for parameter in ema.parameters():
        parameter.data.normal_(0, 0.05)
    save_checkpoint({"config": config.to_dict(), "channels": 1, "image_size": 8, "num_classes": 0, "epoch": 1,
                     "step": 2, "model": model.state_dict(), "ema": ema.state_dict()}, path)
    return ema.state_dict()


def train(tmp_path, data, name, init_from=None, **fields):
    """ddpm-train with TINY (and `fields`) into tmp_path/name; the last epoch's checkpoint."""
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({**TINY, **fields}))
    arguments = ["--config", str(config), "--data", str(data), "--run-dir", str(tmp_path / name),
                 "--state-dir", str(tmp_path / "states" / name)]
    main(arguments + (["--init-from", str(init_from)] if init_from is not None else []))
    return load_checkpoint(tmp_path / name / "checkpoints" / f"epoch_{fields.get('epochs', 1)}.pt")


def test_training_starts_from_the_checkpoints_ema_weights(tmp_path, data, capsys):
    """With an lr of 1e-12 the two Adam steps move no weight by more than 1e-11: what training saved is where it
    started, the source's EMA weights (its training weights are another draw)."""
    start = source_checkpoint(tmp_path / "source.pt")
    trained = train(tmp_path, data, "run", init_from=tmp_path / "source.pt", lr=1e-12)
    assert "starting from the weights of" in capsys.readouterr().out
    for weights in (trained["model"], trained["ema"]):
        for name, tensor in start.items():
            torch.testing.assert_close(weights[name], tensor, atol=1e-9, rtol=0)
    assert trained["config"]["init_from"] == str(tmp_path / "source.pt")


def test_a_resumed_run_keeps_its_own_weights_and_new_weights_are_another_run(tmp_path, data, capsys):
    """One epoch then one more (the final state goes on, the init weights not loaded again) is the two-epoch run bit
    for bit; other contents under the same path make the resume state another run's."""
    source_checkpoint(tmp_path / "source.pt")
    straight = train(tmp_path, data, "straight", init_from=tmp_path / "source.pt", epochs=2)
    train(tmp_path, data, "split", init_from=tmp_path / "source.pt")
    capsys.readouterr()
    extended = train(tmp_path, data, "split", init_from=tmp_path / "source.pt", epochs=2)
    assert "starting from the weights" not in capsys.readouterr().out
    for name, tensor in straight["model"].items():
        assert torch.equal(extended["model"][name], tensor), name
    source_checkpoint(tmp_path / "source.pt", hidden_size=32)  # other random weights, the same path
    train(tmp_path, data, "split", init_from=tmp_path / "source.pt", epochs=2)
    out = capsys.readouterr().out
    assert "belongs to another config or dataset" in out and "starting from the weights" in out


def test_a_shape_mismatch_stops_before_any_step_naming_the_field_and_tensor(tmp_path, data, capsys):
    source_checkpoint(tmp_path / "source.pt", hidden_size=64)
    with pytest.raises(SystemExit) as stopped:
        train(tmp_path, data, "run", init_from=tmp_path / "source.pt")
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 2
    assert "init_from: tensor eps_model.time_mlp.0.weight has shape (256, 64)" in error and "(128, 32)" in error
    assert not (tmp_path / "states" / "run" / "losses.csv").exists()


def test_training_starts_from_a_diffusers_unet_folder(tmp_path, data, capsys):
    """A UNet2DModel made here in the google layout (padding 0, eps 1e-6, attention at 8x8), saved as diffusers
    saves it: its weights start the run, the time index shifted to this package's, its other settings named."""
    diffusers = pytest.importorskip("diffusers")
    from ddpm.export import from_diffusers, unet_config

    network = build_model(TrainConfig(**TINY), 1, 8).eps_model
    settings = {**unet_config(network, 0.0), "downsample_padding": 0, "norm_eps": 1e-6}
    unet = diffusers.UNet2DModel(**settings)
    for parameter in unet.parameters():
        parameter.data.normal_(0, 0.05)
    unet.save_pretrained(tmp_path / "google")
    trained = train(tmp_path, data, "run", init_from=tmp_path / "google", lr=1e-12)
    out = capsys.readouterr().out
    assert "norm_eps 1e-06 becomes this network's 1e-05" in out and "downsample_padding 0" in out
    for name, tensor in from_diffusers(unet.state_dict(), network).items():
        torch.testing.assert_close(trained["model"][f"eps_model.{name}"], tensor, atol=1e-9, rtol=0)


def test_the_workflow_check_names_the_experiment_and_the_field(tmp_path):
    check_init_from("base", None)
    for path in (tmp_path / "missing.pt", tmp_path):  # nothing there; a folder without a UNet2DModel
        with pytest.raises(ValueError, match=r"^experiment 'base': init_from: .* is neither a checkpoint file nor a "
                                             r"diffusers folder"):
            check_init_from("base", str(path))


def test_init_from_is_part_of_the_training_identity_only_when_set():
    assert "init_from" not in TrainConfig().training_identity()
    assert TrainConfig(init_from="a.pt").training_identity()["init_from"] == "a.pt"
    assert TrainConfig(init_from="a.pt").fingerprint() != TrainConfig().fingerprint()
