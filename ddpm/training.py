"""Train a DiffusionModel from a TrainConfig: exact resume, EMA, CSV log, fast path, DDP, stop on a signal.

In Python:        train(config, images, run_dir, state_dir)
One GPU or CPU:   python -m ddpm.training --config c.json --data data/cifar10 --run-dir results/x --state-dir results/resume/x
N GPUs, one node: torchrun --standalone --nproc_per_node=N --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
                      --shutdown-timeout=300 -m ddpm.training --config c.json ...
(the workflow does this for an experiment with `gpus: N`; see run_experiment and training_command)
The resume state holds everything that decides the next step, so a run killed at any moment and
restarted gives bit-identical weights and loss CSV on the CPU.
SIGTERM or SIGUSR1 (a time limit, a preemption) stops training at the next loss row, which is the step in
progress with `log_every: 1`: every process saves one resume state there and exits with code 75
(EX_TEMPFAIL, "try again"), saying so. The same command run again continues from that step. The ranks
agree on the stop in the all_reduce that averages the loss for the row, so a GPU step gains no host sync.
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
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ddpm.checkpoint import ResumeStore, save_checkpoint
from ddpm.config import TrainConfig
from ddpm.ddpm_unet import DDPMUNet
from ddpm.data import load_dataset, random_hflip, to_model_range
from ddpm.diffusion import DiffusionModel
from ddpm.files import atomic_write, publish
from ddpm.unet import UNet

CSV_COLUMNS = ("step", "epoch", "loss", "lr", "images_per_second", "elapsed_seconds")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
INTERRUPTED_EXIT_CODE = os.EX_TEMPFAIL  # 75, sysexits.h: "a temporary failure; the user is invited to retry"
# torchrun passes SIGUSR1 on to its workers too, and gives them 5 minutes (not 30 s) to save before it kills them
TORCHRUN_OPTIONS = ("--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "--shutdown-timeout=300")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGUSR1 stopped training; the resume state holds every step done."""


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


def lr_factor(warmup_steps: int, lr_schedule: str, total_steps: int):
    """The lr multiplier at each step: a linear warmup over `warmup_steps` steps, then constant, or the cosine
    annealing of Loshchilov & Hutter 2017 (eq. 5, one cycle, eta_min = 0) over the steps after the warmup."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if lr_schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


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


@contextlib.contextmanager
def signals_handled(handler: Callable[[int], object]):
    """Within the block, SIGTERM and SIGUSR1 call `handler(signal_number)` instead of ending the process;
    the handlers from before are put back after it. Python handles signals in the main thread only, so
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda number, frame: handler(number)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old if old is not None else signal.SIG_DFL)


def warmup_ema(decay: float):
    """EMA update for AveragedModel: ema += (1 - d_n) (w - ema), d_n = min(decay, (1 + n) / (10 + n)) after n
    updates, the warm-up of diffusers' EMAModel, so a short run's EMA does not keep its random initial weights
    (with a fixed 0.995, 6 % of them remain after 560 steps). Computed on the device, without a host sync."""

    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        weight = 1 - torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay)
        deltas = torch._foreach_sub(params, ema_params)
        torch._foreach_mul_(deltas, weight)
        torch._foreach_add_(ema_params, deltas)

    return update


@dataclass
class Parts:
    """What a training step works with: the model, its EMA, the optimizer and its schedule, and how the network runs."""

    model: DiffusionModel
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    forward: torch.nn.Module  # the model, compiled and wrapped in DDP as configured
    autocast: contextlib.AbstractContextManager
    memory_format: torch.memory_format


def build_parts(config: TrainConfig, channels: int, image_size: int, device: torch.device, total_steps: int,
                rank: int = 0) -> Parts:
    """The model (the same initial weights on every rank), its EMA, optimizer and lr schedule over `total_steps`,
    with the fast path.

    Each switch's 'auto' means on for CUDA only; `on` on the CPU means: amp, bf16 autocast on the CPU;
    channels_last, NHWC tensors; compile, torch.compile's inductor backend generating C++.
    """
    cuda = device.type == "cuda"
    if cuda:  # TF32 matmuls and convolutions
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    seed_everything(config.seed)
    model = build_model(config, channels, image_size).to(device)
    torch.manual_seed(config.seed + rank)  # same initial weights everywhere, each rank its own noise
    memory_format = torch.channels_last if _switch(config.channels_last, cuda) else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = AveragedModel(model, multi_avg_fn=warmup_ema(config.ema_decay), use_buffers=True) if config.ema_decay else None
    optimizer = make_optimizer(config, model.parameters(), device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.warmup_steps, config.lr_schedule, total_steps))
    forward = torch.compile(model) if config.compile else model
    if dist.is_initialized():
        forward = torch.nn.parallel.DistributedDataParallel(forward, device_ids=[device.index] if cuda else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if _switch(config.amp, cuda) else contextlib.nullcontext()
    return Parts(model, ema, optimizer, scheduler, forward, autocast, memory_format)


class Batches:
    """Training batch number `step` (from 0) of this rank: its shard of the epoch's seeded order, in [-1, 1].

    With data_on_device the uint8 dataset is copied to the device once; on the CPU it is there already, so
    `on` and `off` are the same.
    """

    def __init__(self, images: torch.Tensor, config: TrainConfig, device: torch.device, memory_format: torch.memory_format,
                 rank: int = 0, world: int = 1):
        self.data = images.to(device) if _switch(config.data_on_device, device.type == "cuda") else images
        self.device, self.memory_format, self.config = device, memory_format, config
        self.steps_per_epoch = _steps_per_epoch(config, images.shape[0], world)
        local_batch = config.batch_size // world
        self.shard = slice(rank * local_batch, (rank + 1) * local_batch)
        self.order, self.order_epoch = None, None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self.order_epoch:
            self.order, self.order_epoch = epoch_order(self.data.shape[0], self.config.seed, epoch + 1), epoch
        batch_index = self.order[position * self.config.batch_size:(position + 1) * self.config.batch_size][self.shard]
        x = to_model_range(self.data[batch_index.to(self.data.device)].to(self.device, non_blocking=True))
        if self.config.flip:
            x = random_hflip(x)
        return x.contiguous(memory_format=self.memory_format)


def training_step(parts: Parts, x: torch.Tensor, grad_clip: float | None) -> tuple[torch.Tensor, float]:
    """One step of Algorithm 1 (Ho et al. 2020) on the batch `x`, then the LR schedule and the EMA.

    Returns the loss, still on the device, and the learning rate the step used.
    """
    with parts.autocast:
        loss = parts.forward(x)
    parts.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), grad_clip)
    lr = parts.scheduler.get_last_lr()[0]
    parts.optimizer.step()
    parts.scheduler.step()
    if parts.ema is not None:
        parts.ema.update_parameters(parts.model)
    return loss.detach(), lr


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


class LogWindow:
    """The steps since the last loss row: their loss summed on the device, then, at the row, one all_reduce
    and one host sync that also tell whether any rank was asked to stop, a CSV row and the progress bar."""

    def __init__(self, device: torch.device, loss_log: LossLog | None, batch_size: int, step: int, total_steps: int,
                 elapsed: float, tensorboard=None):
        self.loss_sum = torch.zeros((), device=device)
        self.loss_log, self.batch_size, self.elapsed = loss_log, batch_size, elapsed
        self.tensorboard = tensorboard  # a SummaryWriter that gets each row too, or None
        self.progress = tqdm(total=total_steps, initial=step, disable=loss_log is None, unit="step", dynamic_ncols=True)
        self.restart()

    def restart(self) -> None:
        """Open the next window (time spent saving in between is not training time)."""
        self.loss_sum.zero_()
        self.steps, self.start = 0, time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss.float()
        self.steps += 1

    def sync(self, stop_requested: bool) -> tuple[float, bool]:
        """The mean loss over the window and all ranks, and whether any rank asked to stop."""
        totals = torch.stack((self.loss_sum, self.loss_sum.new_tensor(float(stop_requested))))
        if dist.is_initialized():
            dist.all_reduce(totals)  # sum over ranks
            totals /= dist.get_world_size()
        totals[0] /= self.steps
        mean_loss, stop_votes = totals.tolist()  # the only host sync
        self.seconds = time.perf_counter() - self.start
        self.elapsed += self.seconds
        return mean_loss, stop_votes > 0

    def write_row(self, step: int, epoch: int, mean_loss: float, lr: float) -> None:
        images_per_second = self.steps * self.batch_size / self.seconds
        if self.loss_log is not None:
            self.loss_log.append(step, epoch, repr(mean_loss), repr(lr), f"{images_per_second:.1f}", f"{self.elapsed:.3f}")
            self.progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{images_per_second:.0f}", epoch=epoch)
            self.progress.update(self.steps)
        if self.tensorboard is not None:
            for name, value in (("loss", mean_loss), ("lr", lr), ("images_per_second", images_per_second)):
                self.tensorboard.add_scalar(name, value, step)


class RunFiles:
    """One run's files. While it trains they live in `state_dir` (resume states, the growing loss CSV, the
    epoch checkpoints), so a workflow manager that deletes a failed job's outputs loses nothing; at the end
    they are published to `run_dir`. Rank 0 writes; every rank reads the resume state."""

    def __init__(self, config: TrainConfig, images: torch.Tensor, run_dir: Path, state_dir: Path, rank: int, world: int):
        self.config, self.run_dir, self.state_dir, self.rank, self.world = config, run_dir, state_dir, rank, world
        self.channels, self.image_size = images.shape[1], images.shape[-1]
        self.fingerprint = _fingerprint(config, images)
        self.store = ResumeStore(state_dir, keep=config.keep_states)
        self.loss_log = None

    def resume(self, parts: Parts, log: Callable[[str], object]) -> tuple[int, float]:
        """Load the newest usable resume state into `parts`; returns its (step, elapsed seconds), (0, 0.0) without one.

        A state of another config or dataset, or of another number of processes (whose RNG states do not
        fit this run), is reported and removed, and training starts from scratch.
        """
        state = self.store.latest(log)
        unusable = None
        if state is not None and state["fingerprint"] != self.fingerprint:
            unusable = "belongs to another config or dataset"
        elif state is not None and state.get("world_size") != self.world:
            unusable = (f"was saved by {state.get('world_size')} processes but this run has {self.world} "
                        "(a resume needs the same number)")
        if unusable:
            log(f"resume state in {self.state_dir} {unusable}; starting from scratch")
            if self.rank == 0:
                self.store.clear()
            state = None
        step, elapsed = (state["step"], state["elapsed_seconds"]) if state is not None else (0, 0.0)
        if state is not None:
            parts.model.load_state_dict(state["model"])
            if parts.ema is not None:
                parts.ema.load_state_dict(state["ema"])
            parts.optimizer.load_state_dict(state["optimizer"])
            parts.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"][self.rank])
        self.loss_log = LossLog(self.state_dir / "losses.csv", step) if self.rank == 0 else None
        return step, elapsed

    def save_state(self, parts: Parts, step: int, elapsed: float) -> None:
        """The resume state after `step`, with every rank's RNG state, once the loss rows up to it are on disk."""
        rng = [None] * self.world
        if dist.is_initialized():
            dist.all_gather_object(rng, rng_state())
        else:
            rng[0] = rng_state()
        if self.rank == 0:
            self.loss_log.flush()
            self.store.save({
                "fingerprint": self.fingerprint, "world_size": self.world, "step": step, "elapsed_seconds": elapsed,
                "model": parts.model.state_dict(), "ema": parts.ema.state_dict() if parts.ema is not None else None,
                "optimizer": parts.optimizer.state_dict(), "scheduler": parts.scheduler.state_dict(), "rng": rng,
            }, step)

    def save_epoch_checkpoint(self, parts: Parts, epoch: int, step: int) -> None:
        if self.rank == 0:
            save_checkpoint({
                "config": self.config.to_dict(), "channels": self.channels, "image_size": self.image_size,
                "epoch": epoch, "step": step, "model": parts.model.state_dict(),
                "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
            }, self.state_dir / "checkpoints" / f"epoch_{epoch}.pt")

    def publish(self) -> None:
        """Copy the loss CSV and the epoch checkpoints to run_dir atomically, then remove state_dir."""
        self.close()
        if self.rank == 0:
            for epoch in self.config.checkpoint_epochs:
                checkpoint = Path("checkpoints") / f"epoch_{epoch}.pt"
                publish(self.state_dir / checkpoint, self.run_dir / checkpoint)
            publish(self.state_dir / "losses.csv", self.run_dir / "losses.csv")
            shutil.rmtree(self.state_dir)

    def close(self) -> None:
        if self.loss_log is not None:
            self.loss_log.close()


def train(
    config: TrainConfig,
    images: torch.Tensor,
    run_dir: str | Path,
    state_dir: str | Path,
    log=print,
    tensorboard_dir: str | Path | None = None,
) -> DiffusionModel:
    """Train on uint8 `images` (N, C, H, W); returns the model, holding the EMA weights if kept.

    Progress lives in `state_dir` until the end (see RunFiles), when run_dir/losses.csv and
    run_dir/checkpoints/epoch_<E>.pt are published. SIGTERM or SIGUSR1 during training raises
    TrainingInterrupted at the next loss row, after a resume state of that step is saved. With
    `tensorboard_dir`, every loss row also goes to TensorBoard event files there (rows after the resumed step
    are purged, so a resumed run shows one curve).
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    device = resolve_device(config.device)
    steps_per_epoch = _steps_per_epoch(config, images.shape[0], world)
    total_steps = config.epochs * steps_per_epoch
    parts = build_parts(config, images.shape[1], images.shape[-1], device, total_steps, rank)
    batches = Batches(images, config, device, parts.memory_format, rank, world)
    files = RunFiles(config, images, Path(run_dir), Path(state_dir), rank, world)
    step, elapsed = files.resume(parts, log)
    if step:
        log(f"resumed from step {step} (epoch {step // steps_per_epoch + 1}, {elapsed:.1f} s of training done)")
    tensorboard = _tensorboard_writer(tensorboard_dir, step) if tensorboard_dir is not None and rank == 0 else None
    window = LogWindow(device, files.loss_log, config.batch_size, step, total_steps, elapsed, tensorboard)
    signals = []
    parts.model.train()
    with (contextlib.closing(files), window.progress, signals_handled(signals.append),
          tensorboard if tensorboard is not None else contextlib.nullcontext()):
        while step < total_steps:
            loss, lr = training_step(parts, batches(step), config.grad_clip)
            step += 1
            window.add(loss)
            epoch, end_of_epoch = (step - 1) // steps_per_epoch + 1, step % steps_per_epoch == 0
            checkpoint_due = end_of_epoch and epoch in config.checkpoint_epochs
            state_due = checkpoint_due or step % config.state_every == 0
            if not (state_due or end_of_epoch or step % config.log_every == 0):
                continue
            mean_loss, stop = window.sync(stop_requested=bool(signals))
            _check_finite(mean_loss, step, epoch, config, files.state_dir)
            window.write_row(step, epoch, mean_loss, lr)
            if checkpoint_due:
                files.save_epoch_checkpoint(parts, epoch, step)
            stop = stop and step < total_steps
            if state_due or stop:
                files.save_state(parts, step, window.elapsed)
            if stop:
                raise TrainingInterrupted(_interrupted_message(signals, step, epoch, files.state_dir))
            window.restart()
    files.publish()
    if parts.ema is not None:
        parts.model.load_state_dict(parts.ema.module.state_dict())
    return parts.model


def _tensorboard_writer(tensorboard_dir: str | Path, step: int):
    """torch.utils.tensorboard's SummaryWriter, dropping any events after `step` that a stopped run left."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(tensorboard_dir), purge_step=step or None)


def _steps_per_epoch(config: TrainConfig, num_images: int, world: int) -> int:
    if config.batch_size % world:
        raise ValueError(f"batch_size ({config.batch_size}) must be divisible by the number of processes ({world})")
    if config.batch_size > num_images:
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the dataset ({num_images} images)")
    return num_images // config.batch_size


def _check_finite(mean_loss: float, step: int, epoch: int, config: TrainConfig, state_dir: Path) -> None:
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"loss is {mean_loss} at step {step} (epoch {epoch}); training stopped and the last good "
            f"resume state is kept in {state_dir}. Try a lower lr (now {config.lr}) or set grad_clip."
        )


def _interrupted_message(signals: list[int], step: int, epoch: int, state_dir: Path) -> str:
    cause = signal.Signals(signals[0]).name if signals else "a signal to another process"
    return (f"training interrupted by {cause} at step {step} (epoch {epoch}); its resume state is saved in "
            f"{state_dir}, and running the same command again resumes from step {step}")


def training_command(config_file: str | Path, data_dir: str | Path, run_dir: str | Path, state_dir: str | Path,
                     processes: int = 1, tensorboard_dir: str | Path | None = None) -> list[str]:
    """`python -m ddpm.training ...`, under torchrun (with TORCHRUN_OPTIONS) when it runs in several processes."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *TORCHRUN_OPTIONS]
    return [*launcher, "-m", "ddpm.training", *_arguments(config_file, data_dir, run_dir, state_dir, tensorboard_dir)]


def run_experiment(config: TrainConfig, data_dir: str | Path, run_dir: str | Path, state_dir: str | Path,
                   tensorboard_dir: str | Path | None = None) -> None:
    """Train one experiment: in this process, or with `config.gpus` processes under torchrun (DDP), whose
    output is copied into this process's sys.stdout (the job log). run_dir/train_config.json, which the
    processes read, is removed however training ends."""
    run_dir = Path(run_dir)
    config_file = atomic_write(run_dir / "train_config.json", lambda f: f.write(json.dumps(config.to_dict()).encode()))
    try:
        if config.gpus > 1:
            _run_copying_output(training_command(config_file, data_dir, run_dir, state_dir, config.gpus, tensorboard_dir))
        else:
            main(_arguments(config_file, data_dir, run_dir, state_dir, tensorboard_dir))
    finally:
        config_file.unlink(missing_ok=True)


def _arguments(config_file, data_dir, run_dir, state_dir, tensorboard_dir=None) -> list[str]:
    arguments = ["--config", str(config_file), "--data", str(data_dir), "--run-dir", str(run_dir), "--state-dir", str(state_dir)]
    return arguments + (["--tensorboard-dir", str(tensorboard_dir)] if tensorboard_dir is not None else [])


def _run_copying_output(command: list[str]) -> None:
    """Run `command`, copying its stdout and stderr into sys.stdout as they come (progress bars included)
    and passing SIGTERM and SIGUSR1 on to it; CalledProcessError if it fails."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        with signals_handled(process.send_signal):
            for line in io.TextIOWrapper(process.stdout, errors="replace", newline=""):  # "\r" ends a line too
                sys.stdout.write(line)
                sys.stdout.flush()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)


def main(argv: list[str] | None = None) -> None:
    """python -m ddpm.training --config C.json --data DIR --run-dir DIR --state-dir DIR (what torchrun runs)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a JSON file of TrainConfig fields")
    parser.add_argument("--data", required=True, help="a prepared dataset folder (ddpm.data.prepare_dataset)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--tensorboard-dir", help="write TensorBoard event files of the loss rows there")
    args = parser.parse_args(argv)
    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    init_distributed()
    try:
        train(config, load_dataset(args.data)[0], args.run_dir, args.state_dir, log=lambda m: print(m, flush=True),
              tensorboard_dir=args.tensorboard_dir)
    except TrainingInterrupted as interrupted:
        print(interrupted, file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
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
