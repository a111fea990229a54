"""Glue between Snakemake's jobs and the package: job logs and the long-format tables."""

import contextlib
import json
import sys
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ddpm.checks import metric_columns, variant_columns
from ddpm.config import TrainConfig
from ddpm.files import atomic_write, write_csv


@contextlib.contextmanager
def logged_to(log_path: str | Path):
    """Send everything the job prints (stdout, stderr, progress bars, tracebacks) to its log file."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield
        except SystemExit:  # the job has said why itself (a training stopped by a signal exits with 75)
            raise
        except BaseException:
            traceback.print_exc(file=log)
            raise


def aggregate_losses(loss_csvs: dict[tuple[str, int], str | Path], out: str | Path) -> pd.DataFrame:
    """Every run's losses.csv, keyed by (experiment, seed), as one long table: experiment, seed, step, epoch, ..."""
    frames = [pd.read_csv(path, dtype={"loss": float}).assign(experiment=experiment, seed=seed)
              for (experiment, seed), path in loss_csvs.items()]
    frame = _run_columns_first(pd.concat(frames, ignore_index=True))
    write_csv(frame, out)
    return frame


def aggregate_metrics(metric_jsons: dict[tuple[str, int], list[str | Path]], out: str | Path) -> pd.DataFrame:
    """Every run's metrics/epoch_<E><variant>.json, keyed by (experiment, seed), as one row each: experiment, seed,
    epoch, the sampling variant's columns (empty in the rows without them), the metrics in their order, then the
    rest (extractor, num_samples, ...); sorted by experiment, seed, epoch and the variant's columns."""
    rows = [{**json.loads(Path(path).read_text()), "experiment": experiment, "seed": seed}
            for (experiment, seed), paths in metric_jsons.items() for path in paths]
    frame = pd.DataFrame(rows)
    variants, metrics = variant_columns(frame.columns), metric_columns(frame.columns)
    scores = [column for metric in metrics for column in (metric, f"{metric}_sampling_se")]
    first = ["experiment", "seed", "epoch", *variants, *scores]
    frame = frame[[*first, *[c for c in frame.columns if c not in first]]]
    frame = frame.sort_values(["experiment", "seed", "epoch", *variants], ignore_index=True, na_position="first")
    write_csv(frame, out)
    return frame


def run_of(path: str | Path) -> tuple[str, int | None]:
    """The run and sample epoch a run's file belongs to, from its name: results/<run>/losses.csv gives (run, None),
    results/<run>/<kind>/epoch_<E><rest> gives (run, E), where the rest is the extension, or a sampling variant
    after a dot and then the extension (epoch_40.guidance_scale-1.5.json)."""
    path = Path(path)
    if path.name == "losses.csv":
        return path.parent.name, None
    return path.parent.parent.name, int(path.name.split(".", 1)[0].removeprefix("epoch_"))


def _run_columns_first(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns that name the run (experiment, seed) first."""
    return frame[["experiment", "seed", *[c for c in frame.columns if c not in ("experiment", "seed")]]]


def print_environment() -> None:
    """One line naming the interpreter and torch build, for the job log."""
    import torch

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")


def save_array(array: np.ndarray, path: str | Path) -> None:
    atomic_write(path, lambda f: np.save(f, array))


def write_resolved_config(path: str | Path, experiment: str, dataset: dict, config: TrainConfig) -> None:
    """What one experiment actually ran with: its name, the dataset and every TrainConfig field."""
    resolved = {"experiment": experiment, "dataset": dataset, "train": config.to_dict()}
    atomic_write(path, lambda f: f.write(yaml.safe_dump(resolved, sort_keys=False).encode()))


def tensorboard_dir(job) -> str | None:
    """results/tensorboard/<run> when the config says `tensorboard: true`, else None. Read from the config, not
    from params, so switching TensorBoard on or off reruns no job."""
    return f"results/tensorboard/{job.wildcards.run}" if job.config.get("tensorboard") else None
