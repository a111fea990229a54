"""Sample grids as PNG files and TensorBoard images (ddpm.images)."""

import numpy as np
from PIL import Image

from ddpm.images import add_grid_to_tensorboard, save_grid


def test_grid_goes_to_tensorboard_at_its_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = np.random.default_rng(0).integers(0, 256, (9, 1, 8, 8), dtype=np.uint8)
    add_grid_to_tensorboard(images, tmp_path, epoch=7)
    events = EventAccumulator(str(tmp_path / "samples" / "epoch_7"))  # TensorBoard shows it as the run's sub-run
    events.Reload()
    (image,) = events.Images("samples")
    assert (image.step, image.width, image.height) == (7, 3 * 9 + 1, 3 * 9 + 1)  # 3x3 grid of 8x8, 1-pixel padding


def test_grids_have_the_same_size_whatever_the_number_of_images(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (1, 3):
        images = rng.integers(0, 256, (16, channels, 8, 8), dtype=np.uint8)
        save_grid(images[:8], tmp_path / "early.png", cells=16, upscale=2)
        save_grid(images, tmp_path / "last.png", cells=16, upscale=2)
        with Image.open(tmp_path / "early.png") as early, Image.open(tmp_path / "last.png") as last:
            assert early.size == last.size == (2 * (4 * 9 + 1),) * 2  # 4x4 cells of 8x8, 1-pixel padding, upscaled
            early, last = np.asarray(early), np.asarray(last)
        half = 2 * (2 * 9 + 1)  # the first two rows: the 8 images both grids hold
        np.testing.assert_array_equal(early[:half], last[:half])
        assert (early[half:] == 255).all()  # the missing cells blank, in the padding's colour


def tensorboard_images(folder) -> list[tuple[int, int, int]]:
    """Every (step, width, height) of a `samples` image that TensorBoard shows for `folder` and its sub-folders."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    board = EventMultiplexer().AddRunsFromDirectory(str(folder))
    board.Reload()
    return sorted((image.step, image.width, image.height) for run, tags in board.Runs().items()
                  if "samples" in tags["images"] for image in board.Images(run, "samples"))


def test_redrawn_grid_replaces_its_epoch_in_tensorboard(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (16, 1, 8, 8), dtype=np.uint8)
    add_grid_to_tensorboard(images[:9], tmp_path, epoch=7)
    add_grid_to_tensorboard(images[:4], tmp_path, epoch=3)
    add_grid_to_tensorboard(images, tmp_path, epoch=7)  # grid_size raised: epoch 7 drawn again
    assert tensorboard_images(tmp_path) == [(3, 2 * 9 + 1, 2 * 9 + 1), (7, 4 * 9 + 1, 4 * 9 + 1)]
