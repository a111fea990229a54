"""Datasets prepared once into uint8 arrays, then kept as tensors and augmented on the device.

A prepared dataset is a folder holding `images.npy` (uint8, N x C x H x W), `labels.npy` (int64, N)
where the dataset has labels, and `info.json` (name, count, shape, number of classes, and a folder's class names).
A folder of images is labelled when every image sits in a first-level subfolder, its class (torchvision's
ImageFolder convention: the classes sorted by name).
"""

import json
from pathlib import Path

import numpy as np
import torch

from ddpm.dataset_info import check_dataset
from ddpm.files import atomic_write


def prepare_dataset(name: str, out_dir: str | Path, path: str | Path | None = None,
                    image_size: int | None = None, channels: int | None = None) -> dict:
    """Write `name` into `out_dir` as uint8 arrays; returns the dataset's info. `path`, `image_size` and
    `channels` (default 3) are for a folder of images only."""
    out_dir = Path(out_dir)
    dataset = check_dataset(name, path, image_size, channels)
    if name == "digits":
        images, labels = _digits()
    elif name == "cifar10":
        images, labels = _cifar10(out_dir / "download")
    else:
        images = _folder(dataset.files, dataset.image_size, dataset.channels)
        labels = np.asarray(dataset.folder_labels()) if dataset.num_classes else None
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "images.npy", lambda f: np.save(f, images))
    if labels is not None:
        atomic_write(out_dir / "labels.npy", lambda f: np.save(f, labels.astype(np.int64)))
    else:  # those of a labelled dataset prepared here before
        (out_dir / "labels.npy").unlink(missing_ok=True)
    info = {"name": name, "num_images": int(images.shape[0]), "channels": int(images.shape[1]),
            "image_size": int(images.shape[2]), "labelled": labels is not None, "num_classes": dataset.num_classes}
    if dataset.class_names:
        info["class_names"] = list(dataset.class_names)
    atomic_write(out_dir / "info.json", lambda f: f.write(json.dumps(info, indent=2).encode()))
    return info


def load_dataset(data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prepared uint8 images (N, C, H, W) and labels (N,) or None."""
    data_dir = Path(data_dir)
    images = torch.from_numpy(np.load(data_dir / "images.npy"))
    labels_file = data_dir / "labels.npy"
    labels = torch.from_numpy(np.load(labels_file)) if labels_file.exists() else None
    return images, labels


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (values 0..16) as 1x8x8 uint8 images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, digits.target


def _cifar10(download_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's training split through torchvision, which checks the archive's MD5."""
    from torchvision.datasets import CIFAR10

    dataset = CIFAR10(str(download_dir), train=True, download=True)
    return np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)), np.asarray(dataset.targets)


def _folder(files: tuple[Path, ...], image_size: int, channels: int) -> np.ndarray:
    """The checked image files (check_dataset), resized to image_size x image_size."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    images = []
    for file in files:
        with Image.open(file) as image:
            image = image.convert(mode).resize((image_size, image_size), Image.Resampling.BICUBIC)
            images.append(np.asarray(image, dtype=np.uint8).reshape(image_size, image_size, channels))
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (clamped) -> uint8 [0, 255]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right with probability 1/2, as one batched operation on its device."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
