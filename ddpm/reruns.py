"""What a run of the workflow will redo, read from what earlier runs left on disk, for the rules and the dry run's
notes: the config each run last trained with and whether it only trains on; what changed epochs and a stopped
run's resume state mean; each run's last epoch, always checkpointed; and which epochs before the last keep all
`num_samples` samples. No torch, so that the Snakefile loads in a second.
"""

import json
from pathlib import Path

import numpy as np
import yaml

from ddpm.config import TrainConfig
from ddpm.experiments import Run


def recorded_configs(runs: dict[str, Run], results: Path) -> dict[str, TrainConfig | None]:
    """The config each run last trained with (results/<run>/config.yaml), read once; None for a run without one, or
    with one that is not this version's (the run then counts as trained differently)."""
    recorded = {}
    for name in runs:
        try:
            recorded[name] = TrainConfig.from_dict(yaml.safe_load((results / name / "config.yaml").read_text())["train"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
            recorded[name] = None
    return recorded


def trains_on(before: TrainConfig | None, config: TrainConfig) -> bool:
    """Whether a run that trained with `before` and now has `config` can only go on from where it finished (more or
    fewer epochs, or nothing that changes what it computes), so that its checkpoints keep their contents and need
    no new samples."""
    return before is not None and before.extensible_identity() == config.extensible_identity()


def epoch_changes(runs: dict[str, Run], recorded: dict[str, TrainConfig | None], resume_dir: Path) -> list[str]:
    """What the train job of each finished run (its config in `recorded`) that is asked for other epochs or
    checkpoint epochs will do: go on from its final state in resume_dir/<run>/; or train again from step 0, where
    that state is past an epoch to checkpoint now whose checkpoint it did not keep, or under the cosine lr schedule,
    whose lr depends on the number of epochs."""
    messages = []
    for name, run in runs.items():
        before, config = recorded[name], run.config
        if before is None or (before.epochs, before.checkpoint_epochs) == (config.epochs, config.checkpoint_epochs):
            continue
        change = f"run {name}"
        if before.epochs != config.epochs:
            change += f": epochs {before.epochs} -> {config.epochs}"
        unkept = [epoch for epoch in config.checkpoint_epochs if epoch <= before.epochs
                  and not (resume_dir / name / "checkpoints" / f"epoch_{epoch}.pt").exists()]
        if trains_on(before, config) and unkept:
            messages.append(f"{change}: trains again from step 0, as its final state is past epochs {unkept}, of "
                            "which it kept no checkpoint")
        elif trains_on(before, config) and before.epochs != config.epochs:
            messages.append(f"{change}: trains on from its final state at epoch {before.epochs}" if
                            config.epochs > before.epochs else f"{change}: keeps its first {config.epochs} epochs")
        elif not trains_on(before, config) and _identity_but_epochs(before) == _identity_but_epochs(config):
            messages.append(f"{change}: trains again from step 0, as lr_schedule {config.lr_schedule} depends on "
                            "the number of epochs")
    return messages


def _identity_but_epochs(config: TrainConfig) -> dict:
    return {key: value for key, value in config.training_identity().items() if key != "epochs"}


def resume_notes(runs: dict[str, Run], recorded: dict[str, TrainConfig | None], resume_dir: Path) -> list[str]:
    """What the train job of each unfinished run (none in `recorded`) will do with the resume state that a stopped
    job left in resume_dir/<run>/ (its resume.json, written by ddpm.run_files.RunFiles): go on from its step, or
    train again from step 0 where the state is of another training config or number of processes, or past a
    sample epoch whose checkpoint it did not keep."""
    messages = []
    for name, run in runs.items():
        try:
            saved = json.loads((resume_dir / name / "resume.json").read_text())
        except (OSError, ValueError):
            saved = None
        if recorded[name] is not None or saved is None or saved["step"] >= run.config.epochs * saved["steps_per_epoch"]:
            continue
        step, per_epoch, state = saved["step"], saved["steps_per_epoch"], resume_dir / name
        missing = [epoch for epoch in run.config.checkpoint_epochs if epoch * per_epoch <= step
                   and not (state / "checkpoints" / f"epoch_{epoch}.pt").exists()]
        if saved["fingerprint"] != run.config.fingerprint() or saved["world_size"] != run.config.gpus or missing:
            messages.append(f"run {name}: the resume state in {state} (step {step}) does not fit its config now: "
                            "trains again from step 0")
        else:
            messages.append(f"run {name}: resumes from step {step} (epoch {step // per_epoch + 1} of "
                            f"{run.config.epochs}), from the state its stopped training left in {state}")
    return messages


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


def drawn_counts(runs: dict[str, Run], results: Path, variant: str = "") -> dict[str, dict[int, int]]:
    """How many samples per draw each run's epochs were drawn with, where that is on disk: from the epoch's first
    draw (results/<run>/samples/epoch_<E><variant>.npy, `variant` the first of the sampling sweep's, every variant
    drawing as many), or from its metrics (metrics/epoch_<E><variant>.json) while its samples are being drawn again
    (a cluster job's own Snakemake reads them after the samples were removed)."""
    return {name: {epoch: count for epoch in run.config.checkpoint_epochs
                   if (count := _drawn_count(results / name, f"epoch_{epoch}{variant}")) is not None}
            for name, run in runs.items()}


def kept_in_full(runs: dict[str, Run], sampling: dict, drawn: dict[str, dict[int, int]]) -> dict[str, list[int]]:
    """Each run's epochs before its last that were drawn with `num_samples` (`drawn`: see drawn_counts), as a former
    last epoch's were once the run has been extended: they are drawn with num_samples again, never with the fewer
    `num_samples_early`."""
    return {name: [epoch for epoch in run.config.checkpoint_epochs[:-1]
                   if drawn[name].get(epoch) == sampling["num_samples"]] for name, run in runs.items()}


def _drawn_count(run_dir: Path, stem: str) -> int | None:
    try:
        return np.load(run_dir / "samples" / f"{stem}.npy", mmap_mode="r").shape[0]
    except (OSError, ValueError, IndexError):
        pass
    try:
        return json.loads((run_dir / "metrics" / f"{stem}.json").read_text())["num_samples"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
