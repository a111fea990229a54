"""Where FID's draw-to-draw spread comes from: one checkpoint sampled with several sampling seeds, each draw scored
by the workflow's FID and by the same FID with the draw's class mix matched to the dataset's, in one run.

    python -m benchmarks.fid_spread results/ddpm/checkpoints/epoch_40.pt --seeds 0 1 2 3 4 5 6 7 8 9

(from the repository root, after the workflow has run: `snakemake --cores 1`). Each draw is the workflow's sample
job with its seed (the config's sampler, steps and eta unless given); its class mix is the FID classifier's
predicted labels. Printed: each draw's FID, class-balanced FID (ddpm.metrics.class_balanced_statistics), class-mix
error, and the largest and smallest class counts; then the mean and standard deviation over draws of each score,
of the mean of every `--group` consecutive draws, and of FID of the same draws pooled. Draws are kept in
`--cache` so that a second run only scores them.
"""

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench import fmt, write_json
from ddpm.checkpoint import load_checkpoint
from ddpm.extractors import extract_features, load_extractor, predicted_labels
from ddpm.metrics import (class_balanced_statistics, class_mix_error, feature_statistics, frechet_distance,
                          reference_statistics)
from ddpm.sampling import sample_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint of a run: results/<run>/checkpoints/epoch_<E>.pt")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)), help="sampling seeds, one draw each")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eta", type=float, default=0.7)
    parser.add_argument("--group", type=int, default=3, help="draws averaged (and pooled) per reported score")
    parser.add_argument("--results", default="results", help="the workflow's results folder (its reference/)")
    parser.add_argument("--data", default="data/digits", help="the prepared dataset")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache", default="benchmarks/results/fid_spread", help="folder for the draws")
    parser.add_argument("--out", default="benchmarks/results/fid_spread.json")
    return parser.parse_args(argv)


def draw(args, seed: int) -> torch.Tensor:
    """The uint8 samples of one sampling seed, drawn once and cached."""
    path = Path(args.cache) / f"{Path(args.checkpoint).parent.parent.name}_{Path(args.checkpoint).stem}_" \
                              f"{args.sampler}{args.steps}_eta{args.eta:g}_n{args.num_samples}_seed{seed}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        images = sample_checkpoint(args.checkpoint, args.num_samples, args.steps, seed, args.batch_size, "cpu",
                                   eta=args.eta, sampler=args.sampler)
        np.save(path, images.numpy())
    return torch.from_numpy(np.load(path))


def spread(values: list[float]) -> str:
    return f"{fmt(statistics.fmean(values))} ± {fmt(statistics.stdev(values)) if len(values) > 1 else '-'}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    reference_dir = Path(args.results) / "reference"
    reference = load_checkpoint(reference_dir / "classifier_stats.pt")
    if reference.get("class_mix") is None:  # made before the class mix was kept: make it again beside the draws
        reference = reference_statistics(args.data, Path(args.cache) / "classifier_stats.pt", "classifier",
                                         reference_dir / "classifier.pt", device="cpu")
    classifier = load_extractor("classifier", reference_dir / "classifier.pt")
    rows, features, labels = [], [], []
    for seed in args.seeds:
        images = draw(args, seed)
        feats = extract_features(classifier, images)
        predicted = predicted_labels(classifier, feats)
        counts = torch.bincount(predicted, minlength=len(reference["class_mix"]))
        row = {"seed": seed, "fid": frechet_distance(feature_statistics(feats), reference),
               "fid_balanced": frechet_distance(class_balanced_statistics(feats, predicted, reference["class_mix"]),
                                                reference),
               "class_mix_error": class_mix_error(predicted, reference["class_mix"]),
               "min_count": int(counts.min()), "max_count": int(counts.max())}
        rows.append(row)
        features.append(feats)
        labels.append(predicted)
        print(f"seed {seed}: FID {row['fid']:.3f}, balanced {row['fid_balanced']:.3f}, class-mix error "
              f"{row['class_mix_error']:.3f}, class counts {row['min_count']}..{row['max_count']}", flush=True)
    groups = [range(i, i + args.group) for i in range(0, len(rows) - args.group + 1, args.group)]
    summary = {key: spread([row[key] for row in rows]) for key in ("fid", "fid_balanced", "class_mix_error")}
    for key in ("fid", "fid_balanced"):
        summary[f"{key}_mean_of_{args.group}"] = spread([statistics.fmean(rows[i][key] for i in g) for g in groups])
    summary[f"fid_pooled_{args.group}"] = spread(
        [frechet_distance(feature_statistics(torch.cat([features[i] for i in g])), reference) for g in groups])
    summary[f"fid_balanced_pooled_{args.group}"] = spread(
        [frechet_distance(class_balanced_statistics(torch.cat([features[i] for i in g]),
                                                    torch.cat([labels[i] for i in g]), reference["class_mix"]),
                          reference) for g in groups])
    print(f"{args.checkpoint}: {args.num_samples} samples a draw, seeds {args.seeds}; mean ± std over draws")
    for key, value in summary.items():
        print(f"{key:>28}: {value}")
    results = {"checkpoint": str(args.checkpoint), "num_samples": args.num_samples, "sampler": args.sampler,
               "steps": args.steps, "eta": args.eta, "rows": rows, "summary": summary}
    write_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
