"""Train a DiffusionModel from a TrainConfig: exact resume, EMA, CSV log, fast GPU path, DDP.

In Python:        train(config, images, run_dir, state_dir)
One GPU or CPU:   python -m ddpm.training --config c.json --data data/cifar10 --run-dir results/x --state-dir results/resume/x
N GPUs, one node: torchrun --standalone --nproc_per_node=N -m ddpm.training --config c.json ...
(the workflow does this for an experiment with `gpus: N`; see run_experiment)
The resume state holds everything that decides the next step, so a run killed at any moment and
restarted gives bit-identical weights and loss CSV on the CPU.
"""

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ddpm.checkpoint import ResumeStore, save_checkpoint
from ddpm.config import TrainConfig
from ddpm.ddpm_unet import DDPMUNet
from ddpm.data import load_dataset, random_hflip, to_model_range
from ddpm.diffusion import DiffusionModel
from ddpm.files import atomic_write, publish
from ddpm.unet import UNet

CSV_COLUMNS = ("step", "epoch", "loss", "lr", "images_per_second", "elapsed_seconds")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


def build_model(config: TrainConfig, channels: int, image_size: int) -> DiffusionModel:
    """The DiffusionModel around the network `config.architecture` names: the course UNet or the paper's."""
    if config.architecture == "ddpm":
        unet = DDPMUNet(channels, channels, hidden_size=config.hidden_size, image_size=image_size,
                        channel_mult=config.channel_mult, num_res_blocks=config.num_res_blocks,
                        attention_resolutions=config.attention_resolutions, dropout=config.dropout)
    else:
        unet = UNet(channels, channels, hidden_size=config.hidden_size, image_size=image_size)
    return DiffusionModel(unet, betas=(config.beta1, config.beta2), num_timesteps=config.num_timesteps,
                          schedule=config.schedule)


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device is 'cuda' but no CUDA GPU is visible; use device: auto or cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(device)


def init_distributed() -> None:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); no-op without torchrun."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    fused = device.type in ("cuda", "cpu")  # one fused kernel for all parameters
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def warmup_factor(warmup_steps: int):
    """Linear warmup of the learning rate over the first `warmup_steps` steps, then constant."""
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled image order of one epoch, a pure function of (seed, epoch): resumable by position."""
    return torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(_as_python_state(state["python"]))
    name, key, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> tuple:
    """NumPy's legacy RNG state with its key as a list, so it loads with weights_only=True."""
    name, key, position, has_gauss, cached_gaussian = np.random.get_state()
    return name, key.tolist(), position, has_gauss, cached_gaussian


def _as_python_state(state):
    """weights_only loading turns random.getstate()'s tuples into lists; random.setstate needs tuples."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


class LossLog:
    """The per-step CSV, kept beside the resume state while training and truncated on resume."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if resume_step and path.exists():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))
        self.file = path.open("a", newline="")
        self.writer = csv.writer(self.file)

    def append(self, *row) -> None:
        self.writer.writerow(row)

    def flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def train(
    config: TrainConfig,
    images: torch.Tensor,
    run_dir: str | Path,
    state_dir: str | Path,
    log=print,
) -> DiffusionModel:
    """Train on uint8 `images` (N, C, H, W); returns the model, holding the EMA weights if kept.

    Everything in progress lives in `state_dir` (resume states, the growing loss CSV, the epoch
    checkpoints), so a workflow manager that deletes a failed job's outputs loses nothing. Once
    training ends they are published atomically as run_dir/losses.csv and
    run_dir/checkpoints/epoch_<E>.pt, and the resume states are removed.
    """
    run_dir, state_dir = Path(run_dir), Path(state_dir)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    is_main = rank == 0
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    num_images, channels, image_size = images.shape[0], images.shape[1], images.shape[-1]
    if config.batch_size % world:
        raise ValueError(f"batch_size ({config.batch_size}) must be divisible by the number of processes ({world})")
    steps_per_epoch = num_images // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the dataset ({num_images} images)")

    if cuda:  # TF32 matmuls and convolutions
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    seed_everything(config.seed)
    model = build_model(config, channels, image_size).to(device)
    torch.manual_seed(config.seed + rank)  # same initial weights everywhere, each rank its own noise
    memory_format = torch.channels_last if _switch(config.channels_last, cuda) else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) if config.ema_decay else None
    optimizer = make_optimizer(config, model.parameters(), device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_factor(config.warmup_steps))
    forward = torch.compile(model) if config.compile else model
    if dist.is_initialized():
        forward = torch.nn.parallel.DistributedDataParallel(forward, device_ids=[device.index] if cuda else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if _switch(config.amp, cuda) else contextlib.nullcontext()
    data = images.to(device) if _switch(config.data_on_device, cuda) else images

    fingerprint = _fingerprint(config, images)
    store = ResumeStore(state_dir, keep=config.keep_states)
    state = store.latest(log)
    step, elapsed = 0, 0.0
    if state is not None and state["fingerprint"] != fingerprint:
        log(f"resume state in {state_dir} belongs to another config or dataset; starting from scratch")
        store.clear()
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][rank])
        step, elapsed = state["step"], state["elapsed_seconds"]
        log(f"resumed from step {step} (epoch {step // steps_per_epoch + 1}, {elapsed:.1f} s of training done)")
    loss_log = LossLog(state_dir / "losses.csv", step) if is_main else None

    def save_state() -> None:
        rng = [None] * world
        if dist.is_initialized():
            dist.all_gather_object(rng, rng_state())
        else:
            rng[0] = rng_state()
        if is_main:
            loss_log.flush()
            store.save({
                "fingerprint": fingerprint, "step": step, "elapsed_seconds": elapsed,
                "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
            }, step)

    def save_epoch_checkpoint(epoch: int) -> None:
        if is_main:
            save_checkpoint({
                "config": config.to_dict(), "channels": channels, "image_size": image_size,
                "epoch": epoch, "step": step, "model": model.state_dict(),
                "ema": ema.module.state_dict() if ema is not None else None,
            }, state_dir / "checkpoints" / f"epoch_{epoch}.pt")

    total_steps = config.epochs * steps_per_epoch
    local_batch = config.batch_size // world
    progress = tqdm(total=total_steps, initial=step, disable=not is_main, unit="step", dynamic_ncols=True)
    window_loss = torch.zeros((), device=device)
    window_start, window_steps = time.perf_counter(), 0
    model.train()
    order, order_epoch = None, None
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        epoch += 1
        if epoch != order_epoch:
            order, order_epoch = epoch_order(num_images, config.seed, epoch), epoch
        batch_index = order[position * config.batch_size:(position + 1) * config.batch_size]
        batch_index = batch_index[rank * local_batch:(rank + 1) * local_batch]  # this rank's shard
        x = to_model_range(data[batch_index.to(data.device)].to(device, non_blocking=True))
        if config.flip:
            x = random_hflip(x)
        x = x.contiguous(memory_format=memory_format)

        with autocast:
            loss = forward(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        window_loss += loss.detach().float()
        window_steps += 1

        end_of_epoch = step % steps_per_epoch == 0
        if step % config.log_every == 0 or end_of_epoch or step % config.state_every == 0:
            if dist.is_initialized():
                dist.all_reduce(window_loss)  # sum over ranks
                window_loss /= world
            mean_loss = (window_loss / window_steps).item()  # the only host sync
            now = time.perf_counter()
            elapsed += now - window_start
            if not math.isfinite(mean_loss):
                raise NonFiniteLossError(
                    f"loss is {mean_loss} at step {step} (epoch {epoch}); training stopped and the last good "
                    f"resume state is kept in {state_dir}. Try a lower lr (now {config.lr}) or set grad_clip."
                )
            images_per_second = window_steps * config.batch_size / (now - window_start)
            if is_main:
                loss_log.append(step, epoch, repr(mean_loss), repr(lr), f"{images_per_second:.1f}", f"{elapsed:.3f}")
                progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{images_per_second:.0f}", epoch=epoch)
                progress.update(window_steps)
            window_loss.zero_()
            if end_of_epoch and epoch in config.checkpoint_epochs:
                save_epoch_checkpoint(epoch)
            if step % config.state_every == 0 or (end_of_epoch and epoch in config.checkpoint_epochs):
                save_state()
            window_start, window_steps = time.perf_counter(), 0  # saving is not training time
    progress.close()

    if is_main:
        loss_log.close()
        for epoch in config.checkpoint_epochs:
            publish(state_dir / "checkpoints" / f"epoch_{epoch}.pt", run_dir / "checkpoints" / f"epoch_{epoch}.pt")
        publish(state_dir / "losses.csv", run_dir / "losses.csv")
        shutil.rmtree(state_dir)
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    return model


def run_experiment(config: TrainConfig, data_dir: str | Path, run_dir: str | Path, state_dir: str | Path) -> None:
    """Train one experiment: in this process, or with `config.gpus` processes under torchrun (DDP)."""
    run_dir = Path(run_dir)
    config_file = atomic_write(run_dir / "train_config.json", lambda f: f.write(json.dumps(config.to_dict()).encode()))
    arguments = ["--config", str(config_file), "--data", str(data_dir), "--run-dir", str(run_dir), "--state-dir", str(state_dir)]
    if config.gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={config.gpus}"]
        subprocess.run([*launcher, "-m", "ddpm.training", *arguments], check=True)
    else:
        main(arguments)
    config_file.unlink()


def main(argv: list[str] | None = None) -> None:
    """python -m ddpm.training --config C.json --data DIR --run-dir DIR --state-dir DIR (what torchrun runs)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a JSON file of TrainConfig fields")
    parser.add_argument("--data", required=True, help="a prepared dataset folder (ddpm.data.prepare_dataset)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    init_distributed()
    try:
        train(config, load_dataset(args.data)[0], args.run_dir, args.state_dir, log=lambda m: print(m, flush=True))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _switch(value: str, cuda: bool) -> bool:
    """'auto' means on for CUDA, off for the CPU."""
    return value == "on" or (value == "auto" and cuda)


def _fingerprint(config: TrainConfig, images: torch.Tensor) -> str:
    """Identifies what a resume state belongs to: the config's computing fields and the data."""
    digest = hashlib.sha256(config.fingerprint().encode())
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    main()
