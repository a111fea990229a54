"""Checkpoints that are written atomically and load with weights_only=True, and the rolling resume state."""

import re
from pathlib import Path
from typing import Callable

import torch

from ddpm.files import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not a checkpoint."""


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """torch.load(..., weights_only=True), with an error naming the file when it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, foreign file: all mean "unusable"
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({type(error).__name__}: {error})") from error


class ResumeStore:
    """The last `keep` resume states of one run, as `state_<step>.pt` in one folder.

    A new state is written atomically before older ones beyond `keep` are deleted, and `latest()`
    skips damaged files, so a crash at any moment leaves at least one loadable state.
    """

    PATTERN = re.compile(r"state_(\d+)\.pt$")

    def __init__(self, directory: str | Path, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory, self.keep = Path(directory), keep

    def steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (self.PATTERN.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, step: int) -> Path:
        return self.directory / f"state_{step:09d}.pt"

    def save(self, state: dict, step: int) -> Path:
        path = save_checkpoint(state, self.path(step))
        for old in self.steps()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path

    def latest(self, log: Callable[[str], object] = print) -> dict | None:
        """The newest loadable state; damaged ones are reported through `log` and skipped.

        Temporaries left by a write that was killed are removed first.
        """
        for leftover in self.directory.glob(".state_*.tmp") if self.directory.is_dir() else ():
            leftover.unlink(missing_ok=True)
        for step in reversed(self.steps()):
            try:
                return load_checkpoint(self.path(step))
            except CheckpointError as error:
                log(f"skipping resume state: {error}")
        return None

    def clear(self) -> None:
        for step in self.steps():
            self.path(step).unlink(missing_ok=True)
