"""Sample quality per network evaluation: every sampler at each number of steps on one checkpoint, scored by the
workflow's own FID (its extractor and reference statistics in results/reference/), in one run.

    python -m benchmarks.samplers results/ddpm/checkpoints/epoch_40.pt --steps 10 20 50 --seeds 0 1 2

(from the repository root, after the workflow has run: `snakemake --cores 1`). Each sampler draws `--num-samples`
images from the checkpoint's EMA weights with each of `--seeds` (the workflow's sample job with that sampler,
steps and seed), scored like the evaluate job: FID, precision and recall against the reference, memorisation
against the training images. FID from 1,000 images moves by about 2.4 between sampling seeds on digits, the
class-balanced FID far less (docs/fid.md): compare means over seeds. Prints one table (the mean and standard
deviation over the seeds of FID and of the class-balanced FID) and writes every score as JSON.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench import device_name, fmt, write_json
from ddpm.checks import METRICS
from ddpm.metrics import evaluate_samples
from ddpm.models import resolve_device
from ddpm.sampling import sample_checkpoint

# (sampler, eta) rows of the table; ancestral is Algorithm 2 over all T steps and is added with --ancestral
SAMPLERS = (("ddim", 0.0), ("ddim", 0.7), ("dpm_solver", 0.0), ("dpm_solver_sde", 0.0))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint of a run: results/<run>/checkpoints/epoch_<E>.pt")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50], help="network evaluations per sample")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--ancestral", action="store_true", help="add Algorithm 2 over all T steps (slow)")
    parser.add_argument("--results", default="results", help="the workflow's results folder (its reference/)")
    parser.add_argument("--data", default="data/digits", help="the prepared dataset (memorisation's training set)")
    parser.add_argument("--extractor", default="classifier", choices=("classifier", "inception"))
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds, one draw each")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", default="benchmarks/results/samplers.json")
    args = parser.parse_args(argv)
    if min(args.steps) < 1 or args.num_samples < 2:
        parser.error("--steps must be >= 1 and --num-samples >= 2")
    reference = Path(args.results) / "reference" / f"{args.extractor}_stats.pt"
    if not reference.exists():
        parser.error(f"{reference} does not exist: run the workflow first (snakemake --cores 1)")
    return args


def rows_to_run(args) -> list[tuple[str, float, int | None]]:
    """(sampler, eta, steps) for every row, the ancestral sampler first when asked for."""
    rows = [("ancestral", 0.0, None)] if args.ancestral else []
    return rows + [(sampler, eta, steps) for sampler, eta in SAMPLERS for steps in args.steps]


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    reference_dir = Path(args.results) / "reference"
    classifier = reference_dir / "classifier.pt" if args.extractor == "classifier" else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sampler, eta, steps in rows_to_run(args):
            for seed in args.seeds:
                start = time.perf_counter()
                images = sample_checkpoint(args.checkpoint, args.num_samples, steps, seed, args.batch_size,
                                           args.device, eta=eta, sampler=sampler)
                seconds = time.perf_counter() - start
                np.save(Path(tmp) / "samples.npy", images.numpy())
                metrics = evaluate_samples(Path(tmp) / "samples.npy", reference_dir / f"{args.extractor}_stats.pt",
                                           args.data, Path(tmp) / "metrics.json", "samplers", 0, args.extractor,
                                           classifier, device=args.device, log=lambda message: None)
                rows.append({"sampler": sampler, "eta": eta, "steps": steps, "seed": seed, "sample_seconds": seconds,
                             **{key: metrics[key] for key in METRICS}})
                print(f"{sampler} eta {eta:g}, {steps or 'all'} steps, seed {seed}: FID {metrics['fid']:.2f}, "
                      f"class-balanced {metrics['fid_balanced']:.2f} in {seconds:.0f} s", flush=True)
    results = {"checkpoint": str(args.checkpoint), "device": device_name(resolve_device(args.device)),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "num_samples": args.num_samples,
               "extractor": args.extractor, "seeds": args.seeds, "rows": rows}
    print(f"{args.checkpoint}: {args.extractor} FID of {args.num_samples} samples, mean and std over seeds "
          f"{args.seeds}")
    print(f"{'sampler':>16}{'eta':>6}{'steps':>7}{'FID':>9}{'std':>7}{'balanced':>10}{'std':>7}{'precision':>11}"
          f"{'recall':>8}{'seconds':>9}")
    for sampler, eta, steps in rows_to_run(args):
        runs = [row for row in rows if (row["sampler"], row["eta"], row["steps"]) == (sampler, eta, steps)]
        mean = {key: statistics.fmean(row[key] for row in runs) for key in ("fid", "fid_balanced", "sample_seconds")}
        std = {key: statistics.stdev(row[key] for row in runs) if len(runs) > 1 else None
               for key in ("fid", "fid_balanced")}
        print(f"{sampler:>16}{eta:>6g}{steps or 'all':>7}{fmt(mean['fid']):>9}{fmt(std['fid']):>7}"
              f"{fmt(mean['fid_balanced']):>10}{fmt(std['fid_balanced']):>7}"
              f"{fmt(statistics.fmean(row['precision'] for row in runs)):>11}"
              f"{fmt(statistics.fmean(row['recall'] for row in runs)):>8}{fmt(mean['sample_seconds']):>9}")
    write_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
