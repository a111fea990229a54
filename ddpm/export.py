"""The paper UNet to and from Hugging Face diffusers: `ddpm-export` writes a checkpoint as a folder that
`diffusers.DDPMPipeline.from_pretrained` loads, and `initial_weights` reads the weights that `init_from` starts
training from (a checkpoint of this package, or a diffusers folder of a `UNet2DModel`).

    ddpm-export results/ddpm/checkpoints/epoch_40.pt --format diffusers --out exported/

The paper UNet (ddpm.ddpm_unet.DDPMUNet, Ho et al. 2020, Appendix B) has the layers of diffusers' `UNet2DModel` in the
`google/ddpm-cifar10-32` layout, so the bridge is a mapping of names (`diffusers_names`) and settings
(`unet_config`), with three changes of form: q, k and v are one fused 1x1 conv here and three Linear layers there,
the attention output a 1x1 conv here and a Linear there, and the time index. Here t = 1..T (alpha_bar_0 = 1, the
network fed t/T * 1000), in diffusers i = t - 1 = 0..T-1 (the network fed i): with T = 1000, the sinusoidal
embedding of t = i + 1 is a rotation of i's, [sin(w (i + 1)), cos(w (i + 1))] = R(w) [sin(w i), cos(w i)], which is
folded into the first layer of the time MLP (`_shift_time`), so that the exported network computes this one's
output exactly (up to float rounding; docs/interop.md measures what the unfolded mapping would cost).
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from ddpm.checkpoint import CheckpointError, load_checkpoint
from ddpm.checks import DDPM_GROUPS
from ddpm.config import InitFromError, TrainConfig, init_from_files
from ddpm.ddpm_unet import PAPER_TIMESTEPS, AttentionBlock, DDPMUNet, ResidualBlock
from ddpm.diffusion import DiffusionModel
from ddpm.models import build_model

FORMATS = ("diffusers",)
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}  # this package's -> diffusers'
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}  # the same formulas (Nichol & Dhariwal eq. 17)
NORM_EPS = 1e-5  # torch.nn.GroupNorm's, this network's; the released google configurations use 1e-6
DOWNSAMPLE_PADDING = 1  # this network's strided convs pad 1 on every side; the google configurations pad 0 (and
# right and bottom by one)
INSTALL_HINT = 'pip install -e ".[diffusers]"'
RESIDUAL_NAMES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "time_projection.1": "time_emb_proj",
                  "out_layers.0": "norm2", "out_layers.3": "conv2", "shortcut": "conv_shortcut"}
QKV = ("to_q", "to_k", "to_v")


def _diffusers():
    """The diffusers package, or one line naming the extra that installs it."""
    try:
        import diffusers
    except ImportError:
        raise ImportError(f"the diffusers format needs the diffusers package: {INSTALL_HINT}") from None
    return diffusers


def _module_names(unet: DDPMUNet) -> list[tuple[str, str]]:
    """(this network's module, UNet2DModel's module) for every module with weights, in the order of the forward."""
    pairs = [("time_mlp.0", "time_embedding.linear_1"), ("time_mlp.2", "time_embedding.linear_2")]
    if unet.num_classes:
        pairs.append(("class_embedding", "class_embedding"))
    pairs.append(("stem", "conv_in"))

    def block(ours: str, module: ResidualBlock, theirs: str, index: int) -> list[tuple[str, str]]:
        found = [(f"{ours}.{name}", f"{theirs}.resnets.{index}.{name_there}") for name, name_there in
                 RESIDUAL_NAMES.items() if name != "shortcut" or not isinstance(module.shortcut, torch.nn.Identity)]
        if isinstance(module.attention, AttentionBlock):
            found.append((f"{ours}.attention", f"{theirs}.attentions.{index}"))
        return found

    for level, blocks in enumerate(unet.down):
        for j, module in enumerate(blocks):
            pairs += block(f"down.{level}.{j}", module, f"down_blocks.{level}", j)
        if level < len(unet.downsample):
            pairs.append((f"downsample.{level}", f"down_blocks.{level}.downsamplers.0.conv"))
    pairs += block("middle.0", unet.middle[0], "mid_block", 0) + block("middle.1", unet.middle[1], "mid_block", 1)
    for level, blocks in enumerate(unet.up):
        for j, module in enumerate(blocks):
            pairs += block(f"up.{level}.{j}", module, f"up_blocks.{level}", j)
        if level < len(unet.upsample):
            pairs.append((f"upsample.{level}.1", f"up_blocks.{level}.upsamplers.0.conv"))
    return pairs + [("out.0", "conv_norm_out"), ("out.2", "conv_out")]


def diffusers_names(unet: DDPMUNet) -> dict[str, tuple[str, ...]]:
    """This network's state-dict key -> the UNet2DModel keys that hold it (three for the fused q, k, v)."""
    names = {}
    for ours, theirs in _module_names(unet):
        if ours.endswith("attention"):
            for kind in ("weight", "bias"):
                names[f"{ours}.norm.{kind}"] = (f"{theirs}.group_norm.{kind}",)
                names[f"{ours}.qkv.{kind}"] = tuple(f"{theirs}.{part}.{kind}" for part in QKV)
                names[f"{ours}.projection.{kind}"] = (f"{theirs}.to_out.0.{kind}",)
        else:
            for kind in ("weight", "bias"):
                names[f"{ours}.{kind}"] = (f"{theirs}.{kind}",)
    if unet.num_classes:
        del names["class_embedding.bias"]  # an nn.Embedding has none
    return names


def _shift_time(weight: torch.Tensor, steps: int) -> torch.Tensor:
    """The time MLP's first weight W (out, hidden) for an embedding of t + `steps` instead of t: W R(steps w), with
    R the rotation of each frequency's (sin, cos) pair (ddpm.ddpm_unet.sinusoidal_embedding), in float64."""
    half = weight.shape[1] // 2
    angle = steps * torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - 1))
    cos, sin = angle.cos(), angle.sin()
    a, b = weight[:, :half].double(), weight[:, half:].double()  # the columns of the sines and of the cosines
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=1).to(weight.dtype)


def to_diffusers(state: dict[str, torch.Tensor], unet: DDPMUNet) -> dict[str, torch.Tensor]:
    """This network's state dict (`unet.state_dict()` form) as UNet2DModel's: fed diffusers' index i = t - 1, it
    computes what this network computes at t."""
    converted = {}
    for ours, theirs in diffusers_names(unet).items():
        tensor = state[ours]
        if ours == "time_mlp.0.weight":
            tensor = _shift_time(tensor, 1)
        if len(theirs) == 3:
            converted.update(zip(theirs, (part.reshape(part.shape[:2]) for part in tensor.chunk(3))))
        else:
            converted[theirs[0]] = tensor.reshape(tensor.shape[:2]) if ours.endswith("projection.weight") else tensor
    return {name: tensor.contiguous().clone() for name, tensor in converted.items()}


def from_diffusers(state: dict[str, torch.Tensor], unet: DDPMUNet) -> dict[str, torch.Tensor]:
    """UNet2DModel's state dict as this network's (the inverse of `to_diffusers`); an InitFromError names the first
    of this network's tensors that `state` lacks or holds in another shape."""
    own, converted = unet.state_dict(), {}
    for ours, theirs in diffusers_names(unet).items():
        missing = [name for name in theirs if name not in state]
        if missing:
            raise InitFromError(f"init_from: the diffusers UNet has no {missing[0]}, which this network's {ours} "
                                "needs: build the experiment with the UNet's block_out_channels, layers_per_block and "
                                "attention")
        parts = [state[name] for name in theirs]
        tensor = torch.cat(parts) if len(parts) == 3 else parts[0]
        if ours.endswith(("qkv.weight", "projection.weight")) and tensor.ndim == 2:  # Linear -> 1x1 conv
            tensor = tensor[:, :, None, None]
        if tensor.shape != own[ours].shape:
            raise InitFromError(f"init_from: tensor {ours} ({', '.join(theirs)} there) has shape {tuple(tensor.shape)}, "
                                f"this network's {tuple(own[ours].shape)}")
        converted[ours] = _shift_time(tensor, -1) if ours == "time_mlp.0.weight" else tensor
    unused = [name for name in state if name not in {n for names in diffusers_names(unet).values() for n in names}]
    if unused:
        raise InitFromError(f"init_from: the diffusers UNet's tensor {unused[0]} has no place in this network: build "
                            "the experiment with the UNet's block_out_channels, layers_per_block and attention")
    return converted


def unet_config(unet: DDPMUNet, dropout: float) -> dict:
    """UNet2DModel's arguments for this network: its widths, blocks and attention, and this network's settings
    (one attention head, GroupNorm(32) with eps 1e-5, strided convs padded by 1, [sin, cos] embeddings of
    frequencies 10000^(-i / (hidden/2 - 1)), i.e. freq_shift 1), with num_class_embeds K + 1 (row K the null label)
    for a class-conditional one."""
    levels = range(len(unet.down))
    attention = [isinstance(unet.down[level][0].attention, AttentionBlock) for level in levels]
    return {"sample_size": unet.image_size, "in_channels": unet.in_channels, "out_channels": unet.out_channels,
            "block_out_channels": [unet.down[level][0].in_layers[2].out_channels for level in levels],
            "layers_per_block": len(unet.down[0]),
            "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attention],
            "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
            "attention_head_dim": None, "norm_num_groups": DDPM_GROUPS, "norm_eps": NORM_EPS,
            "downsample_padding": DOWNSAMPLE_PADDING, "flip_sin_to_cos": False, "freq_shift": 1,
            "time_embedding_type": "positional", "act_fn": "silu", "mid_block_scale_factor": 1,
            "center_input_sample": False, "resnet_time_scale_shift": "default", "add_attention": True,
            "dropout": dropout, "num_class_embeds": unet.num_classes + 1 if unet.num_classes else None}


def scheduler_config(model: DiffusionModel) -> dict:
    """DDPMScheduler's arguments for the model's diffusion: its schedule and T, its target, Algorithm 2's variance
    beta_t ("fixed_large"), x_0 clipped to [-1, 1], and DDIM's linspace timesteps (this package's `auto` for ddim)."""
    return {"num_train_timesteps": model.num_timesteps, "beta_schedule": BETA_SCHEDULES[model.schedule],
            "beta_start": model.betas[0], "beta_end": model.betas[1],
            "prediction_type": PREDICTION_TYPES[model.prediction], "variance_type": "fixed_large",
            "clip_sample": True, "clip_sample_range": 1.0, "timestep_spacing": "linspace", "steps_offset": 0}


def checkpoint_weights(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """An epoch checkpoint of this package and the weights to use from it: its EMA weights when it kept them."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or not {"config", "model", "ema"} <= checkpoint.keys():
        raise CheckpointError(f"checkpoint {path} is not an epoch checkpoint of training "
                              "(results/<run>/checkpoints/epoch_<E>.pt)")
    return checkpoint, checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"]


def export_diffusers(checkpoint_path: str | Path, out: str | Path) -> Path:
    """Write the checkpoint's model (its EMA weights when kept) to `out` as a DDPMPipeline folder: the UNet2DModel
    in safetensors (unet/) and its DDPMScheduler (scheduler/). The course UNet has no diffusers twin, and a run whose
    num_timesteps is not 1000 feeds its network t/T * 1000, which no diffusers index reproduces: both refused."""
    checkpoint, weights = checkpoint_weights(checkpoint_path)
    config = TrainConfig.from_dict(checkpoint["config"])
    if config.architecture != "ddpm":
        raise ValueError(f"architecture: only the paper UNet ('ddpm') has a diffusers twin (UNet2DModel), got "
                         f"{config.architecture!r}")
    if config.num_timesteps != PAPER_TIMESTEPS:
        raise ValueError(f"num_timesteps: the diffusers export needs {PAPER_TIMESTEPS} (diffusers feeds the network its "
                         f"index i, this network was fed t * 1000 / T), got {config.num_timesteps}")
    diffusers = _diffusers()
    model = build_model(config, checkpoint["channels"], checkpoint["image_size"], checkpoint.get("num_classes", 0))
    model.load_state_dict(weights)
    unet = model.eps_model
    network = diffusers.UNet2DModel(**unet_config(unet, config.dropout))
    network.load_state_dict(to_diffusers(unet.state_dict(), unet))
    pipeline = diffusers.DDPMPipeline(unet=network, scheduler=diffusers.DDPMScheduler(**scheduler_config(model)))
    pipeline.save_pretrained(out, safe_serialization=True)
    return Path(out)


def initial_weights(path: str | Path, model: DiffusionModel, log=print) -> dict[str, torch.Tensor]:
    """The weights that `init_from: path` starts `model` from, as its state dict: an epoch checkpoint's (its EMA
    weights when kept), or a diffusers folder's UNet2DModel (a pipeline folder with unet/, or the UNet's own folder),
    converted for the paper UNet. An InitFromError names the field and the first tensor whose name or shape does not
    fit `model`.

    A diffusers UNet's own settings where they differ from this network's are logged, not honoured: its weights
    run in this network's layers (e.g. the google configurations' norm_eps 1e-6 and downsample_padding 0 become 1e-5
    and 1), which fine-tuning adapts to. Its time index is shifted by one to this package's t (see the module's
    docstring)."""
    path = Path(path)
    if path.is_dir():
        if not isinstance(model.eps_model, DDPMUNet):
            raise InitFromError("init_from: a diffusers UNet2DModel starts only the paper UNet (architecture: ddpm)")
        weights = from_diffusers(_diffusers_weights(path, model.eps_model, log), model.eps_model)
        weights = {f"eps_model.{name}": tensor for name, tensor in weights.items()}
    else:
        try:
            _, weights = checkpoint_weights(path)
        except CheckpointError as error:
            raise InitFromError(f"init_from: {error}") from None
    for name, tensor in model.state_dict().items():
        if name not in weights:
            raise InitFromError(f"init_from: {path} has no tensor {name}, which this run's network has")
        if weights[name].shape != tensor.shape:
            raise InitFromError(f"init_from: tensor {name} has shape {tuple(weights[name].shape)} in {path}, this run's "
                                f"network {tuple(tensor.shape)}")
    own = model.state_dict()
    extra = sorted(set(weights) - set(own) - {name for name, _ in model.named_buffers()})  # older checkpoints hold
    if extra:  # the schedule, rebuilt from the config
        raise InitFromError(f"init_from: {path} holds tensor {extra[0]}, which this run's network lacks")
    return {name: weights[name] for name in own}


def _diffusers_weights(folder: Path, unet: DDPMUNet, log) -> dict[str, torch.Tensor]:
    """A diffusers folder's UNet2DModel weights, after checking that its settings describe this network's layers."""
    files = init_from_files(folder)
    config = json.loads(next(f for f in files if f.name == "config.json").read_text())
    expected = unet_config(unet, 0.0)
    fixed = ("act_fn", "time_embedding_type", "flip_sin_to_cos", "freq_shift", "resnet_time_scale_shift",
             "center_input_sample", "norm_num_groups")
    for name in fixed:
        if name in config and config[name] != expected[name]:
            raise InitFromError(f"init_from: the diffusers UNet's {name} is {config[name]!r}, this network's "
                                f"{expected[name]!r}")
    for name in ("norm_eps", "downsample_padding"):
        if config.get(name, expected[name]) != expected[name]:
            log(f"init_from: the UNet's {name} {config[name]!r} becomes this network's {expected[name]!r}")
    weights_file = next(f for f in files if f.name != "config.json")
    if weights_file.suffix == ".bin":
        return torch.load(weights_file, map_location="cpu", weights_only=True)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ImportError(f"init_from: reading {weights_file} needs the safetensors package: {INSTALL_HINT}") from None
    return load_file(weights_file)


def main(argv: list[str] | None = None) -> None:
    """ddpm-export CHECKPOINT --format diffusers --out DIR."""
    parser = argparse.ArgumentParser(prog="ddpm-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="an epoch checkpoint, results/<run>/checkpoints/epoch_<E>.pt")
    parser.add_argument("--format", choices=FORMATS, default="diffusers")
    parser.add_argument("--out", required=True, help="the folder to write (DDPMPipeline.from_pretrained reads it)")
    args = parser.parse_args(argv)
    try:
        out = export_diffusers(args.checkpoint, args.out)
    except (CheckpointError, ValueError, ImportError) as error:
        parser.error(str(error))
    print(f"wrote {out}: diffusers.DDPMPipeline.from_pretrained({str(out)!r})", file=sys.stderr)


if __name__ == "__main__":
    main()
