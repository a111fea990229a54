"""`ddpm-fid`: the workflow's metrics (FID, the class-balanced FID, precision, recall, memorisation; ddpm.metrics) of
any uint8 samples, made here or elsewhere, as one JSON line on stdout.

    ddpm-fid results/ddpm/samples/epoch_40.npy --data data/digits --reference results/reference
    ddpm-fid their_samples/ --data data/digits            (a folder of PNGs; reference statistics cached once)
    ddpm-fid results/ddpm/samples/epoch_40.npy --labels results/ddpm/samples/epoch_40_labels.npy --data data/digits
                                                          (class-conditional samples: also their class_accuracy)

Several SAMPLES are scored as the draws of one evaluation (the mean over them and its standard error): the evaluate
job's files of one epoch (epoch_<E>.npy, epoch_<E>_draw1.npy, ...) give its row, to the last digit with the same
threads (`--threads`, the job's 2) and device. With `--reference`, the workflow's reference folder (its
`<extractor>_stats.pt` and `classifier.pt`); without it, the classifier and the statistics of the dataset in `--data`
are made once in a cache folder (`--cache`, by default one per dataset under ~/.cache/ddpm-fid).
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ddpm.checks import DEVICES, EXTRACTORS
from ddpm.extractors import train_classifier
from ddpm.files import atomic_write
from ddpm.metrics import evaluate_samples, reference_statistics

CLASSIFIER, STATS = "classifier.pt", "{extractor}_stats.pt"  # the names of the workflow's results/reference/ files


def read_samples(path: str | Path, image_shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 samples (N, C, H, W) at `path`, a .npy or a folder of PNGs (sorted by name; grayscale as 1 channel,
    colour as 3), checked against the dataset's `image_shape` (C, H, W); a ValueError names SAMPLES."""
    path = Path(path)
    if path.is_dir():
        samples = _read_pngs(path)
    elif path.suffix == ".npy" and path.is_file():
        samples = np.load(path)
    else:
        raise ValueError(f"SAMPLES: {path} is neither a .npy file nor a folder of PNGs")
    if samples.dtype != np.uint8 or samples.ndim != 4:
        raise ValueError(f"SAMPLES: {path} must hold uint8 images (N, C, H, W), got {samples.dtype} of shape "
                         f"{samples.shape}")
    if samples.shape[1:] != tuple(image_shape):
        what = "channels" if samples.shape[1] != image_shape[0] else "image size"
        raise ValueError(f"SAMPLES: {path} has {what} unlike the dataset's: images {samples.shape[1:]}, the dataset's "
                         f"{tuple(image_shape)} (C, H, W)")
    return samples


def _read_pngs(folder: Path) -> np.ndarray:
    """The PNGs in `folder` as uint8 (N, C, H, W)."""
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    if not files:
        raise ValueError(f"SAMPLES: the folder {folder} holds no .png files")
    images = []
    for file in files:
        with Image.open(file) as image:
            array = np.asarray(image.convert("L" if image.mode in ("1", "L", "I;16") else "RGB"))
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    if len({image.shape for image in images}) > 1:
        raise ValueError(f"SAMPLES: the PNGs in {folder} differ in size or channels")
    return np.stack(images)


def cached_reference(data_dir: str | Path, extractor: str, cache: str | Path | None, device: str,
                     log=print, need_classifier: bool = False) -> tuple[Path, Path | None]:
    """The reference statistics of the prepared dataset in `data_dir` for `extractor`, and the classifier's file
    (None for inception unless `need_classifier`, for class_accuracy), made once in `cache` (by default
    ~/.cache/ddpm-fid/<hash of images.npy>) as the workflow's train_classifier and reference_stats jobs make them."""
    data_dir = Path(data_dir)
    if cache is None:
        with (data_dir / "images.npy").open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ddpm-fid" / digest
    cache = Path(cache)
    classifier = cache / CLASSIFIER if extractor == "classifier" or need_classifier else None
    if classifier is not None and not classifier.is_file():
        log(f"training the FID classifier on {data_dir} once, into {classifier}")
        train_classifier(data_dir, classifier, device=device, log=log)
    stats = cache / STATS.format(extractor=extractor)
    if not stats.is_file():
        reference_statistics(data_dir, stats, extractor, classifier=classifier, device=device, log=log)
    return stats, classifier


def score(samples: list[str | Path], data_dir: str | Path, reference: str | Path | None = None,
          extractor: str = "classifier", cache: str | Path | None = None, device: str = "cpu",
          labels: list[str | Path] | None = None, log=print) -> dict:
    """The metric row of `samples` (one file or folder per draw) as ddpm.metrics.evaluate_samples scores the
    workflow's, against `reference` (the workflow's reference folder) or the cached reference of `data_dir`:
    `samples` (the paths), then the metrics, each with its `_sampling_se`, and with `labels` (one int .npy per draw,
    the class each sample was drawn with) class_accuracy by the dataset's classifier; extractor, num_samples,
    sampling_draws, num_reference, num_reference_features."""
    image_shape = np.load(Path(data_dir) / "images.npy", mmap_mode="r").shape[1:]
    draws = [read_samples(path, image_shape) for path in samples]
    if labels is not None:
        if len(labels) != len(samples):
            raise ValueError(f"--labels: one file per SAMPLES, got {len(labels)} for {len(samples)}")
        if not (Path(data_dir) / "labels.npy").is_file():
            raise ValueError(f"--labels: class_accuracy needs the dataset's classifier, but {data_dir} has no "
                             "labels.npy")
    if reference is None:
        stats, classifier = cached_reference(data_dir, extractor, cache, device, log,
                                             need_classifier=labels is not None)
    else:
        stats = Path(reference) / STATS.format(extractor=extractor)
        classifier = Path(reference) / CLASSIFIER if extractor == "classifier" or labels is not None else None
        missing = [str(f) for f in (stats, classifier) if f is not None and not f.is_file()]
        if missing:
            raise ValueError(f"--reference: {reference} holds no {' or '.join(missing)}: give the workflow's "
                             "results/reference with the extractor it was made with, or leave --reference out")
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for index, (path, draw) in enumerate(zip(samples, draws)):
            files.append(path if Path(path).suffix == ".npy" else Path(folder) / f"draw{index}.npy")
            if files[-1] != path:
                np.save(files[-1], draw)
        row = evaluate_samples(files, stats, data_dir, Path(folder) / "row.json", "", 0, extractor,
                               classifier=classifier, device=device, labels=labels, log=log)
    del row["experiment"], row["epoch"]
    return {"samples": [str(path) for path in samples], **row}


def main(argv: list[str] | None = None) -> None:
    """ddpm-fid SAMPLES... --data DIR [--labels LABELS...] [--reference DIR] [--extractor classifier|inception]
    [--out metrics.json]."""
    parser = argparse.ArgumentParser(prog="ddpm-fid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", nargs="+", metavar="SAMPLES",
                        help="uint8 (N, C, H, W) .npy or a folder of PNGs; several: the draws of one evaluation")
    parser.add_argument("--data", required=True, help="the prepared dataset, data/<dataset>")
    parser.add_argument("--labels", nargs="+", metavar="LABELS",
                        help="int .npy of (N,), one per SAMPLES: the class each sample was drawn with, for "
                             "class_accuracy")
    parser.add_argument("--reference", help="the workflow's reference folder (results/reference)")
    parser.add_argument("--extractor", choices=EXTRACTORS, default="classifier")
    parser.add_argument("--cache", help="where the reference is made once without --reference")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (the evaluate job uses 2)")
    parser.add_argument("--out", help="also write the row there as JSON")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "images.npy").is_file():
        parser.error(f"--data: {args.data} holds no images.npy (a prepared dataset, data/<dataset>)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        row = score(args.samples, args.data, args.reference, args.extractor, args.cache, args.device, args.labels,
                    log=lambda message: print(message, file=sys.stderr))
    except ValueError as error:
        parser.error(str(error))
    line = json.dumps(row)
    if args.out is not None:
        atomic_write(args.out, lambda f: f.write(line.encode() + b"\n"))
    print(line)


if __name__ == "__main__":
    main()
