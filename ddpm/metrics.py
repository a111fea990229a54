"""Fréchet Inception Distance (FID, Heusel et al. 2017) of generated samples against the dataset, offline.

FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians fitted to features of real (r) and
generated (g) images, in float64 (`frechet_distance`), on the features of one of two extractors
(`ddpm.extractors`: the standard FID InceptionV3, or a small classifier trained on the dataset's labels). With
the classifier, also FID with each draw's class mix balanced to the dataset's (`class_balanced_statistics`) and
the class-mix error.

Beside FID, in the same feature space: improved precision and recall (Kynkäänniemi et al. 2019, k = 3), whether
the samples lie on the data's manifold and the data on the samples', each estimated as a union of k-NN balls. And
in pixel space, the memorisation rate: the share of samples that copy a training image by the criterion of Yoon
et al. 2023, used again by Gu et al. 2023: the nearest training image closer than a third of the distance to the
second nearest.

For class-conditional samples, drawn with known labels: the class accuracy, the share of samples that the dataset's
classifier assigns to the label they were drawn with (how well the samples follow their conditioning).

Scores are comparable only with the same extractor, reference set and number of generated images.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ddpm.checkpoint import load_checkpoint, save_checkpoint
from ddpm.checks import metric_columns, variant_columns
from ddpm.data import load_dataset
from ddpm.extractors import check_extractor, extract_features, load_extractor, predicted_labels
from ddpm.files import atomic_write
from ddpm.models import resolve_device

PR_NEIGHBOURS = 3  # k of improved precision and recall (Kynkäänniemi et al. 2019)
MAX_REFERENCE_FEATURES = 10_000  # real features kept for precision and recall: the first of the seeded permutation
COPY_RATIO = 3  # a sample copies its nearest training image when that is closer than 1/3 of the second nearest
BLOCK_BYTES = 2**27  # at most 128 MiB of float64 distances at a time


def feature_statistics(features: torch.Tensor) -> dict:
    """Mean and covariance (float64, unbiased) of `features` (N, d), and N."""
    n = features.shape[0]
    if n < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n}")
    mu = features.sum(0, dtype=torch.float64) / n
    centered = (chunk.double() - mu for chunk in features.split(4096))  # in chunks: no float64 copy of all features
    sigma = sum(c.T @ c for c in centered) / (n - 1)
    return {"mu": mu, "sigma": sigma, "num_images": n}


def class_balanced_statistics(features: torch.Tensor, labels: torch.Tensor, class_mix: torch.Tensor) -> dict:
    """feature_statistics of `features` (N, d) with each sample weighted so that the classes' shares match
    `class_mix` (K,), the reference's: sample i of class c = `labels[i]` weighs class_mix[c] / n_c, renormalised
    over the classes present. A weighted mean and the unbiased weighted covariance (reliability weights w summing to
    1: sum_i w_i (x_i - mu)(x_i - mu)^T / (1 - sum_i w_i^2)); `num_images` is Kish's effective size 1 / sum_i w_i^2.

    The class mix of N samples varies from draw to draw like a multinomial, and in a classifier's feature space,
    where the classes lie far apart, that moves the mean: balancing removes this variation (and any systematic
    error of the mix, which `class_mix_error` reports instead)."""
    counts = torch.bincount(labels, minlength=len(class_mix)).double()
    share = torch.where(counts > 0, class_mix.double(), 0.0)
    weights = (share / counts.clamp(min=1))[labels]
    weights = weights / weights.sum()
    mu = weights @ features.double()
    centered = features.double() - mu
    sigma = (centered * weights[:, None]).T @ centered / (1 - weights.square().sum())
    return {"mu": mu, "sigma": sigma, "num_images": float(1 / weights.square().sum())}


def class_mix_error(labels: torch.Tensor, class_mix: torch.Tensor) -> float:
    """The total variation distance between the class shares of `labels` and `class_mix`: half the sum of the
    absolute differences, 0 for the same mix, 1 for disjoint ones."""
    counts = torch.bincount(labels, minlength=len(class_mix)).double()
    return float((counts / counts.sum() - class_mix.double()).abs().sum() / 2)


def frechet_distance(a: dict, b: dict) -> float:
    """The Fréchet distance between the Gaussians of two feature_statistics (Heusel et al. 2017):
    ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)).

    Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b, which are real and >= 0 (the
    product is similar to S_a^(1/2) S_b S_a^(1/2)); rounding leaves tiny imaginary parts, dropped as in torchmetrics'
    FrechetInceptionDistance. No matrix square root is formed."""
    if a["mu"].shape != b["mu"].shape:
        raise ValueError(f"feature sizes differ: {a['mu'].shape[0]} vs {b['mu'].shape[0]} (not the same extractor?)")
    trace_sqrt = torch.linalg.eigvals(a["sigma"] @ b["sigma"]).sqrt().real.sum()
    return float((a["mu"] - b["mu"]).square().sum() + a["sigma"].trace() + b["sigma"].trace() - 2 * trace_sqrt)


def _distances(a: torch.Tensor, b: torch.Tensor):
    """Euclidean distances between the rows of `a` (N, d) and `b` (M, d), by torch.cdist in float64 on `a`'s
    device, as (start, block) pairs: the block holds rows start, start + 1, ... of the (N, M) matrix, at most
    BLOCK_BYTES of it, so that memory stays bounded however many points there are."""
    a, b = a.double(), b.to(a.device, torch.float64)
    rows = max(1, BLOCK_BYTES // (8 * max(1, len(b))))
    for start in range(0, len(a), rows):
        yield start, torch.cdist(a[start:start + rows], b)


def knn_radii(features: torch.Tensor, k: int = PR_NEIGHBOURS) -> torch.Tensor:
    """Each point's distance (float64) to its k-th nearest neighbour in `features` (N, d), itself excluded: the
    (k+1)-th smallest distance of its row, the smallest being its zero distance to itself (with duplicates, one of
    the zeros: the same value)."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii with k = {k} need more than {k} points, got {len(features)}")
    return torch.cat([block.topk(k + 1, dim=1, largest=False).values[:, k] for _, block in _distances(features, features)])


def inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Whether each of `points` (N, d) lies in at least one closed ball (`centres` (M, d), `radii` (M,))."""
    radii = radii.to(points.device, torch.float64)
    return torch.cat([(block <= radii).any(dim=1) for _, block in _distances(points, centres)])


def precision_recall(real: torch.Tensor, generated: torch.Tensor, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `generated` against `real` features (N, d):
    precision is the share of generated points inside at least one real point's k-NN ball, recall the share of
    real points inside at least one generated point's k-NN ball (a ball's radius: the distance from its centre to
    its k-th nearest neighbour in its own set, itself excluded). Computed on `real`'s device, in blocks; each set
    needs more than k points."""
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {generated.shape[1]} (not the same extractor?)")
    generated = generated.to(real.device)
    precision = inside_any_ball(generated, real, knn_radii(real, k)).double().mean()
    recall = inside_any_ball(real, generated, knn_radii(generated, k)).double().mean()
    return float(precision), float(recall)


def memorisation_rate(samples: torch.Tensor, training: torch.Tensor, ratio: float = COPY_RATIO) -> float:
    """The share of uint8 `samples` (N, C, H, W) that copy a training image (uint8 (M, C, H, W), M >= 2): in pixel
    space (uint8 values as floats, flattened, L2), the nearest training image is closer than 1/`ratio` of the
    distance to the second nearest (Yoon et al. 2023; Gu et al. 2023). Computed on `samples`' device, in
    blocks."""
    if samples.shape[1:] != training.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape[1:])} and training images {tuple(training.shape[1:])} "
                         "differ in shape")
    if len(training) < 2:
        raise ValueError(f"the memorisation rate needs at least 2 training images, got {len(training)}")
    nearest = (block.topk(2, dim=1, largest=False).values for _, block in
               _distances(samples.flatten(1), training.flatten(1)))
    return float(torch.cat([ratio * d[:, 0] < d[:, 1] for d in nearest]).double().mean())


def class_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of samples whose class as the dataset's classifier labels it, `predicted` (N,), is the label they
    were drawn with, `labels` (N,): 1 when every sample shows its class, about 1 / K for labels that the samples
    ignore (K classes, balanced)."""
    if predicted.shape != labels.shape:
        raise ValueError(f"labels must give one class per sample: {tuple(labels.shape)} for {len(predicted)} samples")
    return float((predicted == labels.to(predicted.device)).double().mean())


def reference_statistics(data_dir: str | Path, output: str | Path, extractor: str, classifier: str | Path | None = None,
                         num_reference: int | None = None, batch_size: int = 64, device: str = "auto", seed: int = 0,
                         log=print) -> dict:
    """Feature statistics of the prepared dataset (all images, or the first `num_reference` of a seeded random
    permutation), saved to `output` with the extractor's name, the image shape and the number of images; beside
    them, for precision and recall, the reference images' features themselves (`features`, float32), at most
    MAX_REFERENCE_FEATURES of them: all when there are no more, else the first MAX_REFERENCE_FEATURES of the same
    seeded permutation; `feature_indices` gives their rows in the dataset. Returns the saved dict."""
    check_extractor(extractor)
    images, _ = load_dataset(data_dir)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    reference = torch.arange(len(images))
    if num_reference is not None:
        if isinstance(num_reference, bool) or not isinstance(num_reference, int) or not 2 <= num_reference <= len(images):
            raise ValueError(f"evaluation.num_reference must be null (all images) or an integer in [2, {len(images)}], "
                             f"got {num_reference!r}")
        reference = order[:num_reference]
    kept = reference if len(reference) <= MAX_REFERENCE_FEATURES else order[:MAX_REFERENCE_FEATURES]
    position = torch.empty(len(images), dtype=torch.long)
    position[reference] = torch.arange(len(reference))  # dataset row -> row of `features`
    start = time.perf_counter()
    network = load_extractor(extractor, classifier, resolve_device(device))
    features = extract_features(network, images[reference], batch_size)
    stats = {**feature_statistics(features), "extractor": extractor, "image_shape": list(images.shape[1:]),
             "features": features[position[kept]].clone(), "feature_indices": kept.clone(),
             "class_mix": _predicted_class_mix(network, features)}
    save_checkpoint(stats, output)
    log(f"{extractor} statistics of {len(reference)} images ({features.shape[1]} features), {len(kept)} of their "
        f"features kept for precision and recall, in {time.perf_counter() - start:.1f} s")
    return stats


def _predicted_class_mix(extractor: nn.Module, features: torch.Tensor) -> torch.Tensor | None:
    """The share of each class among the classifier's labels of `features` (float64, (K,)); None without one."""
    labels = predicted_labels(extractor, features)
    if labels is None:
        return None
    return torch.bincount(labels, minlength=extractor.hparams["num_classes"]).double() / len(labels)


def score_draw(images: torch.Tensor, reference_stats: dict, extractor: nn.Module, training: torch.Tensor,
               batch_size: int = 64, labels: torch.Tensor | None = None, classifier: nn.Module | None = None) -> dict:
    """METRICS of one draw of uint8 `images` (N, C, H, W): FID against the reference statistics; with the FID
    classifier, FID with the draw's class mix balanced to the reference's (`class_balanced_statistics`) and the
    class-mix error (None with inception); improved precision and recall (k = PR_NEIGHBOURS) against the
    reference features (None when either set has no more than k points); the memorisation rate against the
    training images, in pixel space. With the `labels` (N,) the samples were drawn with, also `class_accuracy` by
    the dataset's classifier: the extractor itself, or `classifier` beside an extractor that is none (inception),
    used for nothing else."""
    features = extract_features(extractor, images, batch_size)
    predicted, class_mix = predicted_labels(extractor, features), reference_stats.get("class_mix")
    balanced = predicted is not None and class_mix is not None
    real = reference_stats["features"]
    precision = recall = None
    if min(len(real), len(features)) > PR_NEIGHBOURS:
        precision, recall = precision_recall(real.to(images.device), features, PR_NEIGHBOURS)
    scores = {"fid": frechet_distance(feature_statistics(features), reference_stats),
              "fid_balanced": (frechet_distance(class_balanced_statistics(features, predicted, class_mix),
                                                reference_stats) if balanced else None),
              "class_mix_error": class_mix_error(predicted, class_mix) if balanced else None,
              "precision": precision, "recall": recall,
              "memorisation": memorisation_rate(images.to(next(extractor.parameters()).device), training)}
    if labels is not None:
        if classifier is not None:
            predicted = predicted_labels(classifier, extract_features(classifier, images, batch_size))
        if predicted is None:
            raise ValueError("class_accuracy needs the dataset's classifier: pass classifier= beside extractor "
                             "'inception'")
        scores["class_accuracy"] = class_accuracy(predicted, labels)
    return scores


def mean_and_standard_error(draws: list[dict]) -> dict:
    """Each metric of the draws' scores (METRICS, then CONDITIONING_METRICS where scored) as its mean over the draws
    and, as `<metric>_sampling_se`, its standard error from them: the sample standard deviation over draws /
    sqrt(number of draws), None from one draw (or where a draw has no value)."""
    row = {}
    for metric in metric_columns(draws[0]):
        values = [draw[metric] for draw in draws]
        defined = None not in values
        row[metric] = float(np.mean(values)) if defined else None
        row[f"{metric}_sampling_se"] = (float(np.std(values, ddof=1) / np.sqrt(len(values)))
                                        if defined and len(values) > 1 else None)
    return row


def evaluate_samples(samples: str | Path | list[str | Path], reference: str | Path, data_dir: str | Path,
                     output: str | Path, experiment: str, epoch: int, extractor: str,
                     classifier: str | Path | None = None, batch_size: int = 64, device: str = "auto",
                     labels: str | Path | list[str | Path] | None = None, variant: dict | None = None,
                     log=print) -> dict:
    """Score the uint8 samples saved at `samples` (one .npy of (N, C, H, W), or a list of them: independent
    draws of the same size, one per sampling seed) with `score_draw`, in the extractor's feature space against
    the reference statistics and in pixel space against the prepared dataset's images in `data_dir` (the training
    set). Writes the metric row to `output` as JSON and returns it: experiment, epoch, the sampling `variant`'s
    columns (column -> value, none by default), each of METRICS as its mean over the draws with its
    `_sampling_se`, then the same of class_accuracy where `labels` are given (the class each sample was drawn with,
    one int .npy of (N,) per draw; with extractor 'inception', scored by the `classifier`), extractor,
    num_samples (per draw), sampling_draws, num_reference, num_reference_features."""
    check_extractor(extractor)
    paths = [samples] if isinstance(samples, (str, Path)) else list(samples)
    label_paths = _label_paths(labels, len(paths), extractor, classifier)
    variant = variant or {}
    if variant_columns(variant) != list(variant):
        raise ValueError(f"variant columns {sorted(set(variant) - set(variant_columns(variant)))} are taken by the "
                         "metric row: name a swept sampling field sampling_<field>")
    reference_stats = load_checkpoint(reference)
    if reference_stats["extractor"] != extractor:
        raise ValueError(f"reference statistics {reference} were made with extractor "
                         f"{reference_stats['extractor']!r}, not {extractor!r}")
    if "features" not in reference_stats or "class_mix" not in reference_stats:
        raise ValueError(f"reference statistics {reference} hold no features or class mix: they come from an older "
                         "version; delete the file and run the workflow again")
    draws = [torch.from_numpy(np.load(path)) for path in paths]
    for path, images in zip(paths, draws):
        if images.dtype != torch.uint8 or images.ndim != 4 or list(images.shape[1:]) != reference_stats["image_shape"]:
            raise ValueError(f"samples {path} must be uint8 (N, {', '.join(map(str, reference_stats['image_shape']))}) "
                             f"like the dataset, got {images.dtype} {tuple(images.shape)}")
    if len({len(images) for images in draws}) > 1:
        raise ValueError(f"the draws {', '.join(map(str, paths))} differ in size: {[len(d) for d in draws]}")
    drawn_labels = [_labels(path, len(draws[0])) for path in label_paths] if label_paths else [None] * len(draws)
    training, _ = load_dataset(data_dir)
    start = time.perf_counter()
    device = resolve_device(device)
    network = load_extractor(extractor, classifier, device)
    judge = load_extractor("classifier", classifier, device) if label_paths and extractor != "classifier" else None
    scores = [score_draw(images.to(device), reference_stats, network, training, batch_size, draw_labels, judge)
              for images, draw_labels in zip(tqdm(draws, desc="scoring", unit="draw", dynamic_ncols=True),
                                             drawn_labels)]
    row = {"experiment": experiment, "epoch": epoch, **variant, **mean_and_standard_error(scores),
           "extractor": extractor, "num_samples": len(draws[0]), "sampling_draws": len(draws),
           "num_reference": reference_stats["num_images"], "num_reference_features": len(reference_stats["features"])}
    atomic_write(output, lambda f: f.write(json.dumps(row, indent=2).encode()))
    log(f"{experiment} epoch {epoch}, {len(draws)} draw(s) of {len(draws[0])} samples ({extractor}, against "
        f"{row['num_reference']} images, {row['num_reference_features']} for precision and recall, "
        f"{len(training)} training images for memorisation) in {time.perf_counter() - start:.1f} s:")
    for metric in metric_columns(row):
        log(f"  {metric}: {_plus_minus(row[metric], row[f'{metric}_sampling_se'])}  "
            f"(draws: {', '.join(_plus_minus(score[metric]) for score in scores)})")
    return row


def _label_paths(labels: str | Path | list[str | Path] | None, num_draws: int, extractor: str,
                 classifier: str | Path | None) -> list[str | Path] | None:
    """The label files of the draws, one per draw (None without labels); class_accuracy beside an extractor that is
    no classifier needs the classifier file."""
    if labels is None:
        return None
    paths = [labels] if isinstance(labels, (str, Path)) else list(labels)
    if len(paths) != num_draws:
        raise ValueError(f"labels must be one file per draw: {len(paths)} for {num_draws} draws")
    if extractor != "classifier" and classifier is None:
        raise ValueError(f"class_accuracy needs the classifier file that train_classifier writes beside extractor "
                         f"{extractor!r}")
    return paths


def _labels(path: str | Path, num_samples: int) -> torch.Tensor:
    """The int64 labels (N,) saved at `path` for a draw of `num_samples` samples."""
    labels = np.load(path)
    if labels.dtype.kind not in "iu" or labels.shape != (num_samples,):
        raise ValueError(f"labels {path} must be integers of shape ({num_samples},) like the draw's samples, got "
                         f"{labels.dtype} {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def _plus_minus(value: float | None, error: float | None = None) -> str:
    """'4.123 ± 0.210', '4.123' without an error, 'undefined' without a value."""
    if value is None:
        return "undefined"
    return f"{value:.4f}" if error is None else f"{value:.4f} ± {error:.4f}"
