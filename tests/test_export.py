"""ddpm-export: a checkpoint of the paper UNet as a diffusers DDPMPipeline folder, through the command line."""

import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from ddpm.checkpoint import save_checkpoint  # noqa: E402
from ddpm.config import TrainConfig  # noqa: E402
from ddpm.export import main  # noqa: E402
from ddpm.models import build_model  # noqa: E402

TINY = {"architecture": "ddpm", "hidden_size": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attention_resolutions": [4], "dropout": 0.0, "schedule": "cosine", "prediction": "x0"}


def write_checkpoint(path, num_classes=0, **fields):
    """An epoch checkpoint as training saves it, its EMA weights random (not the initialisation's zeros, which would
    hide a wrong mapping) and its training weights another draw."""
    config = TrainConfig(**{**TINY, "class_conditional": num_classes > 0, **fields})
    model, ema = (build_model(config, 3, 8, num_classes) for _ in range(2))
    for parameter in ema.parameters():
        parameter.data.normal_(0, 0.2)
    save_checkpoint({"config": config.to_dict(), "channels": 3, "image_size": 8, "num_classes": num_classes,
                     "epoch": 1, "step": 1, "model": model.state_dict(), "ema": ema.state_dict()}, path)
    return ema.eval()


def test_the_exported_pipeline_computes_the_networks_output_at_each_timestep(tmp_path):
    """diffusers feeds the UNet its index i = t - 1; the export folds the shift of the time embedding into the weights,
    so the outputs agree to float32 rounding (the Linear vs 1x1-conv products and the folded rotation sum in another
    order: 1e-5 of outputs of size about 0.5)."""
    model = write_checkpoint(tmp_path / "epoch_1.pt")
    main([str(tmp_path / "epoch_1.pt"), "--format", "diffusers", "--out", str(tmp_path / "out")])
    pipeline = diffusers.DDPMPipeline.from_pretrained(tmp_path / "out")
    x, t = torch.randn(4, 3, 8, 8), torch.tensor([1, 2, 500, 1000])
    with torch.no_grad():
        ours = model.eps_model(x, t / 1000)
        theirs = pipeline.unet(x, t - 1).sample
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    assert ours.abs().mean() > 0.1


def test_the_exported_scheduler_is_the_runs_diffusion_and_one_step_matches(tmp_path):
    """Betas, T, target, variance and clip are the run's; one DDIM step of the exported pipeline predicts the x_0 that
    this package predicts at the same x_t (atol 1e-4: float32 rounding of the network, divided by
    sqrt(alpha_bar_t) ~ 0.7 at t = 300)."""
    model = write_checkpoint(tmp_path / "epoch_1.pt", schedule="linear", prediction="eps")
    main([str(tmp_path / "epoch_1.pt"), "--out", str(tmp_path / "out")])
    pipeline = diffusers.DDPMPipeline.from_pretrained(tmp_path / "out")
    config = pipeline.scheduler.config
    assert (config.num_train_timesteps, config.prediction_type, config.variance_type, config.clip_sample,
            config.beta_schedule) == (1000, "epsilon", "fixed_large", True, "linear")
    torch.testing.assert_close(pipeline.scheduler.betas, model.alphas.new_ones(1000) - model.alphas[1:], atol=1e-7,
                               rtol=0)
    ddim = diffusers.DDIMScheduler.from_config(config)
    ddim.set_timesteps(50)
    x, index = torch.randn(2, 3, 8, 8), 299
    with torch.no_grad():
        step = ddim.step(pipeline.unet(x, index).sample, index, x, use_clipped_model_output=True)
        _, x0 = model.eps_and_x0(x, index + 1, model.model_output(x, index + 1))
    torch.testing.assert_close(step.pred_original_sample, x0, atol=1e-4, rtol=0)


def test_a_class_conditional_network_exports_with_its_null_label(tmp_path):
    model = write_checkpoint(tmp_path / "epoch_1.pt", num_classes=3)
    main([str(tmp_path / "epoch_1.pt"), "--out", str(tmp_path / "out")])
    unet = diffusers.UNet2DModel.from_pretrained(tmp_path / "out" / "unet")
    assert unet.config.num_class_embeds == 4
    x, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])  # 3: the null label
    with torch.no_grad():
        torch.testing.assert_close(unet(x, torch.full((4,), 99), class_labels=labels).sample,
                                   model.eps_model(x, torch.full((4,), 0.1), labels), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fields, names", [({"architecture": "course"}, "architecture"),
                                           ({"num_timesteps": 500}, "num_timesteps")])
def test_what_diffusers_cannot_reproduce_is_refused_in_one_line(tmp_path, capsys, fields, names):
    write_checkpoint(tmp_path / "epoch_1.pt", **fields)
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "epoch_1.pt"), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 2 and f"error: {names}:" in error
    assert not (tmp_path / "out").exists()


def test_without_diffusers_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    write_checkpoint(tmp_path / "epoch_1.pt")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers raises ImportError
    with pytest.raises(SystemExit):
        main([str(tmp_path / "epoch_1.pt"), "--out", str(tmp_path / "out")])
    assert 'pip install -e ".[diffusers]"' in capsys.readouterr().err
