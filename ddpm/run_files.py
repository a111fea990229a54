"""One run's files: the rolling resume states (with every process's RNG state), the loss CSV, the epoch
checkpoints, and their publication to the run folder when training ends."""

import csv
import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from ddpm.checkpoint import ResumeStore, load_checkpoint, save_checkpoint
from ddpm.config import TrainConfig, init_from_digest
from ddpm.files import atomic_write, publish

CSV_COLUMNS = ("step", "epoch", "loss", "lr", "images_per_second", "elapsed_seconds")
# beside the states: what the newest one is, for a dry run that loads no torch (ddpm.reruns.resume_notes)
RESUME_INFO = "resume.json"


class LossLog:
    """The per-step CSV, kept beside the resume state while training and truncated on resume."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = _rows_up_to(path, resume_step)
        atomic_write(path, lambda f: f.write(rows.encode()))
        self.file = path.open("a", newline="")
        self.writer = csv.writer(self.file)

    def append(self, *row) -> None:
        self.writer.writerow(row)

    def flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


class RunFiles:
    """One run's files. They live in `state_dir` (resume states, the growing loss CSV, the epoch checkpoints), so a
    workflow manager that deletes a failed job's outputs loses nothing; at the end they are published to `run_dir`,
    and `state_dir` keeps them with the final state, from which a run asked for more epochs goes on. Rank 0 writes;
    every rank reads the resume state. RESUME_INFO says without torch which step the newest state is of, and of
    which config (its fingerprint) and number of processes. A class-conditional run gives its `labels` (classes
    0..K-1): they belong to its data, and K to its network, saved in every epoch checkpoint as "num_classes" (0
    without labels)."""

    def __init__(self, config: TrainConfig, images: torch.Tensor, run_dir: Path, state_dir: Path, rank: int, world: int,
                 labels: torch.Tensor | None = None):
        self.config, self.run_dir, self.state_dir, self.rank, self.world = config, run_dir, state_dir, rank, world
        self.channels, self.image_size = images.shape[1], images.shape[-1]
        self.num_classes = int(labels.max()) + 1 if labels is not None else 0
        self.steps_per_epoch = steps_per_epoch(config, images.shape[0])
        self.fingerprint = _fingerprint(config, images, labels)
        self.store = ResumeStore(state_dir, keep=config.keep_states)
        self.loss_log = None
        self.saved_step = None  # of the newest resume state on disk
        self.published_steps = None  # the loss rows to publish, when the run went further than this one

    def resume(self, parts, total_steps: int, log: Callable[[str], object]) -> tuple[int, float]:
        """Load the newest usable resume state into `parts` (ddpm.training.Parts); returns its step and elapsed
        seconds, (0, 0.0) without one.

        A state of another training config or dataset, of another number of processes (whose RNG states do not
        fit this run), past a checkpoint epoch whose checkpoint it did not keep, or past this run's last epoch
        without a checkpoint of it, is reported and removed, and training starts from scratch. The epochs kept and
        how often states are saved may change between runs, and so may the number of epochs where the lr schedule
        does not depend on it: a finished run asked for fewer epochs, with a checkpoint of its new last one, trains
        nothing (see `_keep_first_epochs`).
        """
        state = self.store.latest(log)
        unusable = None
        if state is not None and state["fingerprint"] != self.fingerprint:
            unusable = "belongs to another config or dataset"
        elif state is not None and state.get("world_size") != self.world:
            unusable = (f"was saved by {state.get('world_size')} processes but this run has {self.world} "
                        "(a resume needs the same number)")
        elif state is not None and (missing := self._checkpoints_missing(min(state["step"], total_steps))):
            unusable = f"is past epochs {missing} but holds no checkpoints of them, which this run keeps"
        elif state is not None and state["step"] > total_steps and self.config.epochs not in self.config.checkpoint_epochs:
            unusable = f"is past this run's last epoch ({self.config.epochs}), of which it holds no checkpoint"
        if unusable:
            log(f"resume state in {self.state_dir} {unusable}; starting from scratch")
            if self.rank == 0:
                self.store.clear()
                (self.state_dir / RESUME_INFO).unlink(missing_ok=True)
            state = None
        if state is not None and state["step"] > total_steps:
            return self._keep_first_epochs(parts, total_steps, log)
        step, elapsed = (state["step"], state["elapsed_seconds"]) if state is not None else (0, 0.0)
        if state is not None:
            parts.model.load_state_dict(state["model"])
            if parts.ema is not None:
                parts.ema.module.load_state_dict(_ema_weights(state["ema"]))
            _load_optimizer(parts.optimizer, state["optimizer"])
            set_rng_state(state["rng"][self.rank])
            self.saved_step = step
        self.loss_log = LossLog(self.state_dir / "losses.csv", step) if self.rank == 0 else None
        return step, elapsed

    def _keep_first_epochs(self, parts, total_steps: int, log: Callable[[str], object]) -> tuple[int, float]:
        """A finished run asked for fewer epochs: the weights of its checkpoint at the new last epoch, and its loss
        rows up to there to publish; nothing to train, and the longer run's files stay, to be extended again."""
        last = load_checkpoint(self.state_dir / "checkpoints" / f"epoch_{self.config.epochs}.pt")
        parts.model.load_state_dict(last["model"])
        if parts.ema is not None:
            parts.ema.module.load_state_dict(last["ema"])
        with (self.state_dir / "losses.csv").open(newline="") as f:
            last_row = next(row for row in csv.DictReader(f) if int(row["step"]) == total_steps)
        self.published_steps = self.saved_step = total_steps  # no state to save: the longer run's final one stays
        log(f"the run in {self.state_dir} has trained past epoch {self.config.epochs} already: its first "
            f"{self.config.epochs} epochs are published, and nothing is trained")
        return total_steps, float(last_row["elapsed_seconds"])

    def _checkpoints_missing(self, step: int) -> list[int]:
        """The checkpoint epochs that training has passed at `step` whose checkpoint is not in the state folder."""
        return [epoch for epoch in self.config.checkpoint_epochs if epoch * self.steps_per_epoch <= step
                and not (self.state_dir / "checkpoints" / f"epoch_{epoch}.pt").exists()]

    def save_state(self, parts, step: int, elapsed: float) -> None:
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
                "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(), "rng": rng,
                "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
            }, step)
            info = {"step": step, "steps_per_epoch": self.steps_per_epoch, "fingerprint": self.config.fingerprint(),
                    "world_size": self.world}
            atomic_write(self.state_dir / RESUME_INFO, lambda f: f.write(json.dumps(info).encode()))
        self.saved_step = step

    def save_epoch_checkpoint(self, parts, epoch: int, step: int) -> None:
        if self.rank == 0:
            save_checkpoint({
                "config": self.config.to_dict(), "channels": self.channels, "image_size": self.image_size,
                "num_classes": self.num_classes, "epoch": epoch, "step": step, "model": parts.model.state_dict(),
                "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
            }, self.state_dir / "checkpoints" / f"epoch_{epoch}.pt")

    def publish(self) -> None:
        """The loss CSV and the epoch checkpoints in run_dir too (hard links, each made atomically)."""
        self.close()
        if self.rank == 0:
            for epoch in self.config.checkpoint_epochs:
                checkpoint = Path("checkpoints") / f"epoch_{epoch}.pt"
                publish(self.state_dir / checkpoint, self.run_dir / checkpoint)
            if self.published_steps is None:
                publish(self.state_dir / "losses.csv", self.run_dir / "losses.csv")
            else:
                rows = _rows_up_to(self.state_dir / "losses.csv", self.published_steps)
                atomic_write(self.run_dir / "losses.csv", lambda f: f.write(rows.encode()))

    def close(self) -> None:
        if self.loss_log is not None:
            self.loss_log.close()


def steps_per_epoch(config: TrainConfig, num_images: int) -> int:
    """Whole batches in one epoch of `num_images` images (an epoch's last, partial batch is left out)."""
    if config.batch_size > num_images:
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the dataset ({num_images} images)")
    return num_images // config.batch_size


def _ema_weights(saved: dict) -> dict:
    """The EMA's model state dict from a resume state's "ema". States saved while the EMA was
    torch.optim.swa_utils.AveragedModel hold it under "module." beside the update count "n_averaged", which equals
    the step, from which the EMA's warm-up is computed now."""
    if "n_averaged" not in saved:
        return saved
    return {key.removeprefix("module."): value for key, value in saved.items() if key != "n_averaged"}


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """The optimizer's saved state, keeping this run's lr tensor (which each step writes) and how it runs (fused,
    foreach, capturable): load_state_dict would replace them by the saved ones (a float lr in older states)."""
    kept = [{key: group[key] for key in ("lr", "fused", "foreach", "capturable") if key in group}
            for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, own in zip(optimizer.param_groups, kept):
        group.update(own)


def _rows_up_to(path: Path, step: int) -> str:
    """The loss CSV at `path` (empty if there is none) without its rows after `step`, as text."""
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [row for row in csv.DictReader(f) if int(row["step"]) <= step]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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


def _fingerprint(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None) -> str:
    """Identifies what a resume state belongs to: the config's computing fields, the data (with the labels, where
    the run trains on them) and the contents of the weights it starts from (`init_from`)."""
    digest = hashlib.sha256(config.fingerprint().encode())
    if config.init_from is not None:
        digest.update(init_from_digest(config.init_from).encode())
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    if labels is not None:
        digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
