"""What a dataset will be, known before it is prepared: its size and image shape, and for a folder of images its
files, read by their headers only. No torch, so that the workflow checks a config in a second."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ddpm.checks import DATASETS, check_choice

# the built-in datasets' (number of images, channels, image_size), known before they are downloaded
BUILTIN_DATASETS = {"digits": (1797, 1, 8), "cifar10": (50_000, 3, 32)}
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


def check_dataset(name: str, path: str | Path | None = None, image_size: int | None = None,
                  channels: int | None = None) -> DatasetInfo:
    """Refuse a dataset config that cannot be prepared, or that gives fields which do not apply to it, before
    any work starts; returns what it will be (reading only the folder images' headers)."""
    from PIL import Image

    check_choice("dataset.name", name, DATASETS)
    if name != "folder":
        num_images, real_channels, real_size = BUILTIN_DATASETS[name]
        given = [key for key, value in zip(FOLDER_ONLY, (path, image_size, channels)) if value is not None]
        if given:
            raise ValueError(f"dataset.{given[0]} applies only to dataset 'folder'; {name} is always "
                             f"{num_images} images of {real_channels}x{real_size}x{real_size}: remove {', '.join(given)}")
        return DatasetInfo(name, num_images, real_channels, real_size)
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
    return DatasetInfo(name, len(files), channels, image_size, str(path), tuple(files))
