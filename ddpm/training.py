"""The training loop and its state: Algorithm 1 of Ho et al. (2020) with an lr schedule, an EMA of the weights,
a logging window that syncs with the device once per loss row, DDP collectives and a stop on a signal.

    train(config, images, run_dir, state_dir, labels=labels)  # labels: for a class_conditional config

(`ddpm-train` (ddpm.launch) runs it from the command line and under torchrun; ddpm.run_files keeps its files.)
The resume state holds everything that decides the next step, so a run killed at any moment and restarted gives
bit-identical weights and loss CSV on the CPU. SIGTERM, SIGUSR1 or SIGINT (a time limit, a preemption, Ctrl-C)
stops training at the next loss row, which is the step in progress with `log_every: 1`: every process saves one
resume state there and `train` raises TrainingInterrupted. The ranks agree on the stop in the all_reduce that
averages the loss for the row, so a GPU step gains no host sync.

Between two loss rows nothing waits on the device: the lr and the EMA decay of a step come from the step number
the host knows and are written into device tensors, the epoch's order lives on the device, clipping and the draws
run there. With `compile`, the network's forward and loss (its backward through AOTAutograd) and the update
after the backward (clipping, optimizer, EMA) are compiled regions, replayed as CUDA graphs on a GPU.
"""

import contextlib
import dataclasses
import functools
import inspect
import math
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ddpm.config import TrainConfig
from ddpm.data import random_hflip, to_model_range
from ddpm.diffusion import DiffusionModel
from ddpm.ema import EMA
from ddpm.export import initial_weights
from ddpm.models import build_model, resolve_device
from ddpm.optim import lr_factor, make_optimizer
from ddpm.run_files import LossLog, RunFiles, steps_per_epoch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)  # a time limit, a preemption, Ctrl-C
INTERRUPTED_MESSAGE = "training interrupted by"  # how the message of TrainingInterrupted begins


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class TrainingInterrupted(Exception):
    """SIGTERM, SIGUSR1 or SIGINT stopped training; the resume state holds every step done."""


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled image order of one epoch, a pure function of (seed, epoch): resumable by position."""
    return torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def signals_handled(handler: Callable[[int], object]):
    """Within the block, SIGTERM, SIGUSR1 and SIGINT call `handler(signal_number)` instead of ending the process;
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


def weight_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: EMA | None,
                  grad_clip: float | None, compiled: bool) -> Callable[[], None]:
    """What follows the backward: gradient clipping (clip_grad_norm_ without error_if_nonfinite, which would read
    the norm on the host), the optimizer step and the EMA update, as one function, compiled with `compiled`.

    torch.optim's step() breaks a compiled graph on purpose, to run under no_grad; the compiled update runs
    under no_grad itself and calls the step beneath that wrapper (inspect.unwrap), so it traces as one graph.
    """
    params = list(model.parameters())
    step = functools.partial(inspect.unwrap(type(optimizer).step), optimizer) if compiled else optimizer.step

    @torch.no_grad()
    def update() -> None:
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        step()
        if ema is not None:
            ema.update()

    return update


@dataclass
class Parts:
    """What a training step works with: the model, its EMA, the optimizer, its lr tensor and schedule, and how the
    network runs and the weights are updated."""

    model: DiffusionModel
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    lr: torch.Tensor  # the optimizer's lr, on the device, written before each step
    lr_at: Callable[[int], float]  # the lr of step n (from 0)
    forward: torch.nn.Module  # the model, compiled and wrapped in DDP as configured
    update: Callable[[], None]  # clipping, optimizer step, EMA (weight_update), compiled as configured
    autocast: contextlib.AbstractContextManager
    memory_format: torch.memory_format
    cuda_graphs: bool = False  # compiled with mode="reduce-overhead": each step starts a new graph replay


def build_parts(config: TrainConfig, channels: int, image_size: int, device: torch.device, total_steps: int,
                rank: int = 0, num_classes: int = 0) -> Parts:
    """The model (the same initial weights on every rank; conditioned on `num_classes` classes with
    `config.class_conditional`), its EMA, optimizer and lr schedule over `total_steps`, with the fast path.

    Each switch's 'auto' means on for CUDA only; `on` on the CPU means: amp, bf16 autocast on the CPU;
    channels_last, NHWC tensors. `compile` compiles the forward and loss (and through AOTAutograd the backward)
    and the update; on CUDA with mode="reduce-overhead", as CUDA graphs (the tensors the graphs write in place
    keep their addresses), on the CPU inductor's C++.
    """
    cuda = device.type == "cuda"
    seed_everything(config.seed)
    model = build_model(config, channels, image_size, num_classes).to(device)
    torch.manual_seed(config.seed + rank)  # same initial weights everywhere, each rank its own noise
    memory_format = torch.channels_last if _switch(config.channels_last, cuda) else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    lr = torch.tensor(config.lr, device=device)
    optimizer = make_optimizer(config, model.parameters(), lr, config.compile)
    factor = lr_factor(config.warmup_steps, config.lr_schedule, total_steps)
    update = weight_update(model, optimizer, ema, config.grad_clip, config.compile)
    forward, cuda_graphs = model, config.compile and cuda
    if config.compile:
        mode = "reduce-overhead" if cuda_graphs else None
        if cuda_graphs:
            for tensor in (lr, *((ema.weight, *ema.averaged, *ema.copies) if ema is not None else ())):
                torch._dynamo.mark_static_address(tensor)  # written in place by a graph, or outside one
        forward, update = torch.compile(model, mode=mode), torch.compile(update, mode=mode, fullgraph=True)
    if dist.is_initialized():
        forward = torch.nn.parallel.DistributedDataParallel(forward, device_ids=[device.index] if cuda else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if _switch(config.amp, cuda) else contextlib.nullcontext()
    return Parts(model, ema, optimizer, lr, lambda step: config.lr * factor(step), forward, update, autocast,
                 memory_format, cuda_graphs)


class Batches:
    """Training batch number `step` (from 0) of this rank: its shard of the epoch's seeded order, in [-1, 1], and
    the same images' labels (`labels(step)`, None without `labels`).

    With data_on_device the uint8 dataset (and its labels) is copied to the device once; on the CPU it is there
    already, so `on` and `off` are the same.
    """

    def __init__(self, images: torch.Tensor, config: TrainConfig, device: torch.device, memory_format: torch.memory_format,
                 rank: int = 0, world: int = 1, labels: torch.Tensor | None = None):
        on_device = _switch(config.data_on_device, device.type == "cuda")
        self.data = images.to(device) if on_device else images
        self.label_data = labels.to(device) if on_device and labels is not None else labels
        self.device, self.memory_format, self.config = device, memory_format, config
        self.steps_per_epoch = steps_per_epoch(config, images.shape[0])
        local_batch = config.batch_size // world
        self.shard = slice(rank * local_batch, (rank + 1) * local_batch)
        self.order, self.order_epoch = None, None

    def __call__(self, step: int) -> torch.Tensor:
        x = to_model_range(self.data[self._index(step)].to(self.device, non_blocking=True))
        if self.config.flip:
            x = random_hflip(x)
        return x.contiguous(memory_format=self.memory_format)

    def labels(self, step: int) -> torch.Tensor | None:
        """The labels of batch `step`'s images, in the same order."""
        if self.label_data is None:
            return None
        return self.label_data[self._index(step)].to(self.device, non_blocking=True)

    def _index(self, step: int) -> torch.Tensor:
        """Which images batch `step` of this rank holds."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self.order_epoch:
            self.order, self.order_epoch = self._order(epoch), epoch
        return self.order[position * self.config.batch_size:(position + 1) * self.config.batch_size][self.shard]

    def _order(self, epoch: int) -> torch.Tensor:
        """The epoch's order where the data is, copied there once an epoch; to a GPU from pinned memory, without a
        host sync."""
        order = epoch_order(self.data.shape[0], self.config.seed, epoch + 1)
        if self.data.device.type == "cuda":
            order = order.pin_memory()
        return order.to(self.data.device, non_blocking=True)


def training_step(parts: Parts, x: torch.Tensor, step: int, t: torch.Tensor | None = None,
                  noise: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Training step `step` (from 0) of Algorithm 1 (Ho et al. 2020) on the batch `x` (with its class `labels` for
    a class-conditional model, each dropped to the null label with probability label_dropout: Ho & Salimans 2022,
    Algorithm 1): its lr and EMA decay written into their device tensors, the loss and its gradients, then the
    update (weight_update). No host sync.

    `t` and `noise` are DiffusionModel.forward's, to compare runs on the same draws. Returns the loss, still on the
    device, and the learning rate the step used.
    """
    lr = parts.lr_at(step)
    parts.lr.fill_(lr)
    if parts.ema is not None:
        parts.ema.set_step(step)
    parts.optimizer.zero_grad(set_to_none=True)  # before a graph replay may reuse the old gradients' memory
    if parts.cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten now
    with parts.autocast:
        loss = parts.forward(x, t, noise, labels)
    loss.backward()
    parts.update()
    return loss.detach(), lr


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
            self.loss_log.append(step, epoch, repr(mean_loss), repr(lr), f"{images_per_second:.1f}",
                                 f"{self.elapsed:.6f}")  # microseconds: the summary sums images over these windows
            self.progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{images_per_second:.0f}", epoch=epoch)
            self.progress.update(self.steps)
        if self.tensorboard is not None:
            for name, value in (("loss", mean_loss), ("lr", lr), ("images_per_second", images_per_second)):
                self.tensorboard.add_scalar(name, value, step)


def train(config: TrainConfig, images: torch.Tensor, run_dir: str | Path, state_dir: str | Path, log=print,
          tensorboard_dir: str | Path | None = None, labels: torch.Tensor | None = None) -> DiffusionModel:
    """Train on uint8 `images` (N, C, H, W); returns the model, holding the EMA weights if kept. A class_conditional
    config needs the images' `labels` (N,), classes 0..K-1: its network is conditioned on those K classes (saved as
    "num_classes" in the epoch checkpoints); other configs ignore them.

    Progress lives in `state_dir` (see RunFiles); at the end run_dir/losses.csv and run_dir/checkpoints/epoch_<E>.pt
    are published, and `state_dir` keeps the final state: the same call with more epochs trains only those (with a
    constant lr after the warmup; the cosine schedule depends on the total and starts over). SIGTERM, SIGUSR1 or
    SIGINT during training raises TrainingInterrupted at the next loss row, after a resume state of that step is
    saved. With `config.init_from`, step 0 starts from those weights (ddpm.export.initial_weights: checked against
    the network before any step, an InitFromError naming the first tensor that does not fit). With `tensorboard_dir`, every loss row also goes to TensorBoard event files there (a new run replaces the
    folder's events, a resumed one drops those after its step, so each shows one curve).
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if world != config.gpus:  # started by hand under torchrun: the config's checks with its number of processes
        config = dataclasses.replace(config, gpus=world)
    labels = _training_labels(config, images, labels)
    device = resolve_device(config.device)
    files = RunFiles(config, images, Path(run_dir), Path(state_dir), rank, world, labels)
    total_steps = config.epochs * files.steps_per_epoch
    parts = build_parts(config, images.shape[1], images.shape[-1], device, total_steps, rank, files.num_classes)
    initial = initial_weights(config.init_from, parts.model, log) if config.init_from is not None else None
    batches = Batches(images, config, device, parts.memory_format, rank, world, labels)
    step, elapsed = files.resume(parts, total_steps, log)
    if step == 0 and initial is not None:  # a fresh start; a resumed run has its own weights
        start_from(parts, initial)
        log(f"starting from the weights of {config.init_from}")
    if 0 < step < total_steps:
        log(f"resumed from step {step} (epoch {step // files.steps_per_epoch + 1}, {elapsed:.1f} s of training done)")
    tensorboard = _tensorboard_writer(tensorboard_dir, step) if tensorboard_dir is not None and rank == 0 else None
    window = LogWindow(device, files.loss_log, config.batch_size, step, total_steps, elapsed, tensorboard)
    signals = []
    parts.model.train()
    with (contextlib.closing(files), window.progress, signals_handled(signals.append),
          tensorboard if tensorboard is not None else contextlib.nullcontext()):
        while step < total_steps:
            loss, lr = training_step(parts, batches(step), step, labels=batches.labels(step))
            step += 1
            window.add(loss)
            epoch, end_of_epoch = (step - 1) // files.steps_per_epoch + 1, step % files.steps_per_epoch == 0
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
        if files.saved_step != step:  # the final state, from which more epochs can follow
            files.save_state(parts, step, window.elapsed)
    files.publish()
    if parts.ema is not None:
        parts.model.load_state_dict(parts.ema.module.state_dict())
    return parts.model


def start_from(parts: Parts, weights: dict[str, torch.Tensor]) -> None:
    """Step 0 from `weights` (a state dict of the model): the model and its EMA start there, the optimizer, the EMA's
    warm-up and the step fresh."""
    parts.model.load_state_dict(weights)
    if parts.ema is not None:
        parts.ema.module.load_state_dict(weights)


def _training_labels(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """The labels a run trains with: `labels`, checked, for a class_conditional config; None for the others."""
    if not config.class_conditional:
        return None
    if labels is None:
        raise ValueError("class_conditional: true needs the dataset's labels (digits, cifar10, or a folder with one "
                         "subfolder of images per class), got none: set class_conditional: false")
    if tuple(labels.shape) != images.shape[:1] or labels.dtype != torch.int64 or labels.min() < 0:
        raise ValueError(f"class_conditional: the labels must be int64 class indices >= 0, one per image "
                         f"({images.shape[0]}), got {labels.dtype} of shape {tuple(labels.shape)}")
    return labels


def _tensorboard_writer(tensorboard_dir: str | Path, step: int):
    """torch.utils.tensorboard's SummaryWriter: from step 0 in a new folder (an earlier run's curve would show as
    part of this one); resumed at `step`, dropping the events after it that a stopped run left."""
    from torch.utils.tensorboard import SummaryWriter

    if step == 0:
        shutil.rmtree(tensorboard_dir, ignore_errors=True)
    return SummaryWriter(str(tensorboard_dir), purge_step=step + 1 if step else None)


def _check_finite(mean_loss: float, step: int, epoch: int, config: TrainConfig, state_dir: Path) -> None:
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"loss is {mean_loss} at step {step} (epoch {epoch}); training stopped and the last good "
            f"resume state is kept in {state_dir}. Try a lower lr (now {config.lr}) or set grad_clip."
        )


def _interrupted_message(signals: list[int], step: int, epoch: int, state_dir: Path) -> str:
    cause = signal.Signals(signals[0]).name if signals else "a signal to another process"
    return (f"{INTERRUPTED_MESSAGE} {cause} at step {step} (epoch {epoch}); its resume state is saved in "
            f"{state_dir}, and running the same command again resumes from step {step}")


def _switch(value: str, cuda: bool) -> bool:
    """'auto' means on for CUDA, off for the CPU."""
    return value == "on" or (value == "auto" and cuda)


if __name__ == "__main__":  # the command line moved to ddpm.launch
    print("ddpm.training has no command line: train with ddpm-train (see ddpm-train --help)", file=sys.stderr)
    raise SystemExit(2)
