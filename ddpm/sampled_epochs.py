"""The epochs at which the workflow samples and scores each run: its sample epochs and its last epoch (`epochs`),
which is always checkpointed, and which of the earlier ones keep all `num_samples` samples. No torch, so that the
Snakefile loads in a second.
"""

import json
from pathlib import Path

import numpy as np

from ddpm.experiments import Run


def last_epoch_notes(runs: dict[str, Run], sample_epochs: list[int]) -> list[str]:
    """One line per number of `epochs` that is not a sample epoch, naming its runs: their last epoch is
    checkpointed (results/<run>/checkpoints/last.pt), sampled and scored as well."""
    unlisted = {}
    for name, run in runs.items():
        if run.config.epochs not in sample_epochs:
            unlisted.setdefault(run.config.epochs, []).append(name)
    return [f"run{'s' if len(names) > 1 else ''} {', '.join(names)}: the last epoch ({epochs}) is not one of "
            f"sample_epochs {sorted(sample_epochs)}; it is checkpointed (checkpoints/last.pt), sampled and scored as "
            "well" for epochs, names in unlisted.items()]


def drawn_counts(runs: dict[str, Run], results: Path) -> dict[str, dict[int, int]]:
    """How many samples per draw each run's epochs were drawn with, where that is on disk: from the epoch's first
    draw (results/<run>/samples/epoch_<E>.npy), or from its metrics (metrics/epoch_<E>.json) while its samples are
    being drawn again (a cluster job's own Snakemake reads them after the samples were removed)."""
    return {name: {epoch: count for epoch in run.config.checkpoint_epochs
                   if (count := _drawn_count(results / name, epoch)) is not None} for name, run in runs.items()}


def kept_in_full(runs: dict[str, Run], sampling: dict, drawn: dict[str, dict[int, int]]) -> dict[str, list[int]]:
    """Each run's epochs before its last that were drawn with `num_samples` (`drawn`: see drawn_counts), as a former
    last epoch's were once the run has been extended: they are drawn with num_samples again, never with the fewer
    `num_samples_early`."""
    return {name: [epoch for epoch in run.config.checkpoint_epochs[:-1]
                   if drawn[name].get(epoch) == sampling["num_samples"]] for name, run in runs.items()}


def _drawn_count(run_dir: Path, epoch: int) -> int | None:
    try:
        return np.load(run_dir / "samples" / f"epoch_{epoch}.npy", mmap_mode="r").shape[0]
    except (OSError, ValueError, IndexError):
        pass
    try:
        return json.loads((run_dir / "metrics" / f"epoch_{epoch}.json").read_text())["num_samples"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
