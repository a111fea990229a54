"""A folder of synthetic RGB PNGs that a model can learn, for checking the workflow on a `folder` dataset."""

from pathlib import Path


def write_folder_dataset(folder: Path, count: int, size: int = 32, seed: int = 0) -> list[Path]:
    """`count` size x size RGB PNGs a model can learn: a two-colour gradient in a random direction, a disc on it."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    files = [folder / f"{index:05d}.png" for index in range(count)]
    for file in files:
        start, end, disc = rng.uniform(0, 255, (3, 3))
        angle, centre, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.8, 2), rng.uniform(0.1, 0.3)
        weight = np.clip(0.5 + (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle), 0, 1)[..., None]
        image = start * (1 - weight) + end * weight
        image[(x - centre[0]) ** 2 + (y - centre[1]) ** 2 < radius**2] = disc
        Image.fromarray(image.round().astype(np.uint8)).save(file)  # (H, W, 3) uint8: RGB
    return files
