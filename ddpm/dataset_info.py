"""What a dataset will be, known before it is prepared: its size, image shape and classes, and for a folder of images
its files, read by their headers only. No torch, so that the workflow checks a config in a second."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ddpm.checks import DATASETS, check_choice

# the built-in datasets' (number of images, channels, image_size, number of classes), known before they are downloaded
BUILTIN_DATASETS = {"digits": (1797, 1, 8, 10), "cifar10": (50_000, 3, 32, 10)}
FOLDER_ONLY = ("path", "image_size", "channels")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as `download` will prepare it, known before any job runs: the same names as its info.json."""

    name: str
    num_images: int
    channels: int
    image_size: int
    path: str | None = None  # folder only
    files: tuple[Path, ...] = ()  # folder only: its image files, sorted
    num_classes: int | None = None  # None: no labels
    class_names: tuple[str, ...] = ()  # folder only: its class subfolders, sorted (label i is class_names[i])

    def to_dict(self) -> dict:
        """The dataset section of a resolved config: the real image shape, and the folder's path."""
        values = {"name": self.name, "channels": self.channels, "image_size": self.image_size}
        return values if self.path is None else {**values, "path": self.path}

    def files_digest(self) -> str:
        """A hash of the folder's (relative path, size, mtime_ns) list: it changes when a file is added,
        removed, renamed or rewritten; empty for the built-in datasets."""
        if not self.files:
            return ""
        listing = [(str(f.relative_to(self.path)), f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]

    def folder_labels(self) -> list[int]:
        """A labelled folder's label of each of its files: the index of its first-level subfolder in class_names."""
        index = {name: label for label, name in enumerate(self.class_names)}
        return [index[file.relative_to(self.path).parts[0]] for file in self.files]


def class_subfolders(path: str | Path, files: tuple[Path, ...]) -> tuple[str, ...]:
    """The classes of a folder of images as torchvision's ImageFolder finds them: its first-level subfolders that hold
    images, sorted by name, when every image sits in one (at any depth below it); () when an image lies in `path`
    itself, so that the folder has no labels."""
    parts = [file.relative_to(path).parts for file in files]
    return () if any(len(p) == 1 for p in parts) else tuple(sorted({p[0] for p in parts}))


def check_class_conditional(config, dataset: DatasetInfo) -> None:
    """Refuse a class-conditional TrainConfig (`config.class_conditional`) on a dataset without at least two
    classes (a folder whose images do not all sit in class subfolders, or in only one), before any job runs."""
    if not config.class_conditional or (dataset.num_classes or 0) >= 2:
        return
    found = (f"has one class subfolder ({dataset.class_names[0]})" if dataset.class_names else
             "has no class subfolders (some images lie in the folder itself)")
    raise ValueError(f"class_conditional: true needs a labelled dataset of at least 2 classes (digits, cifar10, or a "
                     f"folder with one subfolder of images per class); dataset {dataset.name!r} at {dataset.path} "
                     f"{found}: set class_conditional: false")


def check_dataset(name: str, path: str | Path | None = None, image_size: int | None = None,
                  channels: int | None = None) -> DatasetInfo:
    """Refuse a dataset config that cannot be prepared, or that gives fields which do not apply to it, before
    any work starts; returns what it will be (reading only the folder images' headers)."""
    from PIL import Image

    check_choice("dataset.name", name, DATASETS)
    if name != "folder":
        num_images, real_channels, real_size, num_classes = BUILTIN_DATASETS[name]
        given = [key for key, value in zip(FOLDER_ONLY, (path, image_size, channels)) if value is not None]
        if given:
            raise ValueError(f"dataset.{given[0]} applies only to dataset 'folder'; {name} is always "
                             f"{num_images} images of {real_channels}x{real_size}x{real_size}: remove {', '.join(given)}")
        return DatasetInfo(name, num_images, real_channels, real_size, num_classes=num_classes)
    if path is None or not Path(path).is_dir():
        raise ValueError(f"dataset.path must be an existing folder of images, got {str(path)!r}")
    if image_size is None:
        raise ValueError("dataset.image_size is required for dataset 'folder'")
    channels = 3 if channels is None else channels
    if channels not in (1, 3):
        raise ValueError(f"dataset.channels must be 1 or 3, got {channels!r}")
    files = sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"dataset.path {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    first_size = None
    for file in files:
        with Image.open(file) as image:
            first_size = first_size or (image.size, file)
            if image.size != first_size[0]:
                raise ValueError(
                    f"dataset.path {str(path)!r} mixes image sizes: {first_size[1].name} is "
                    f"{first_size[0][0]}x{first_size[0][1]} but {file.name} is {image.size[0]}x{image.size[1]}"
                )
    classes = class_subfolders(path, files)
    return DatasetInfo(name, len(files), channels, image_size, str(path), tuple(files), len(classes) or None, classes)
