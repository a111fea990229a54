import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm import data


def test_digits_are_prepared_as_uint8_with_labels(tmp_path):
    info = data.prepare_dataset("digits", tmp_path)
    images, labels = data.load_dataset(tmp_path)
    assert info == {"name": "digits", "num_images": 1797, "channels": 1, "image_size": 8, "labelled": True,
                    "num_classes": 10}
    assert json.loads((tmp_path / "info.json").read_text()) == info
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert images.max() == 255 and images.min() == 0
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))


def _write_images(folder, sizes, mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_is_resized(tmp_path, channels):
    _write_images(tmp_path / "imgs" / "nested", [(20, 20)] * 3)
    info = data.prepare_dataset("folder", tmp_path / "out", path=tmp_path / "imgs", image_size=16, channels=channels)
    images, labels = data.load_dataset(tmp_path / "out")
    assert images.shape == (3, channels, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0] and info["class_names"] == ["nested"]  # all in one class subfolder


def test_folder_images_are_rgb_unless_channels_says_otherwise(tmp_path):
    _write_images(tmp_path / "imgs", [(20, 20)] * 2, mode="L")
    info = data.prepare_dataset("folder", tmp_path / "out", path=tmp_path / "imgs", image_size=8)
    assert info["channels"] == 3 and data.load_dataset(tmp_path / "out")[0].shape == (2, 3, 8, 8)


def test_digits_refuse_a_size_they_would_not_have(tmp_path):
    with pytest.raises(ValueError, match="dataset.image_size applies only to dataset 'folder'"):
        data.prepare_dataset("digits", tmp_path, image_size=16)
    assert not tmp_path.joinpath("images.npy").exists()


@pytest.mark.parametrize("setup, kwargs, message", [
    (lambda p: None, {"image_size": 16}, "dataset.path must be an existing folder"),
    (lambda p: p.mkdir(), {"image_size": 16}, "holds no images"),
    (lambda p: _write_images(p, [(20, 20), (24, 20)]), {"image_size": 16}, "mixes image sizes: img0.jpg is 20x20 but img1.png is 24x20"),
    (lambda p: _write_images(p, [(20, 20)]), {"image_size": None}, "dataset.image_size is required"),
    (lambda p: _write_images(p, [(20, 20)]), {"image_size": 16, "channels": 2}, "dataset.channels must be 1 or 3"),
])
def test_folder_errors_name_the_problem(tmp_path, setup, kwargs, message):
    setup(tmp_path / "imgs")
    with pytest.raises(ValueError, match=message):
        data.prepare_dataset("folder", tmp_path / "out", path=tmp_path / "imgs", **kwargs)
    assert not (tmp_path / "out").exists()


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"dataset.name must be one of \['digits', 'cifar10', 'folder'\]"):
        data.prepare_dataset("mnist", tmp_path)


def test_cifar10_goes_through_torchvision(tmp_path, monkeypatch):
    """The real torchvision reader on batches in CIFAR-10's format; only the download and its MD5 are skipped."""
    from torchvision.datasets import CIFAR10

    batches = tmp_path / "out" / "download" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, _ in CIFAR10.train_list:
        entry = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [3, 7]}
        (batches / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (batches / CIFAR10.meta["filename"]).write_bytes(pickle.dumps(meta))
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5=None: True)  # no MD5 of the real archive

    info = data.prepare_dataset("cifar10", tmp_path / "out")
    images, labels = data.load_dataset(tmp_path / "out")
    assert info["num_images"] == 10 and images.shape == (10, 3, 32, 32)
    assert labels.tolist() == [3, 7] * 5
    first = pickle.loads((batches / "data_batch_1").read_bytes())["data"][0]
    assert torch.equal(images[0], torch.from_numpy(first.reshape(3, 32, 32)))


def test_pixel_ranges_round_trip():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    scaled = data.to_model_range(pixels)
    assert scaled.min() == -1 and scaled.max() == 1
    assert torch.equal(data.to_uint8(scaled), pixels)
    assert data.to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]


def test_random_hflip_flips_about_half_exactly():
    images = torch.arange(1000 * 4, dtype=torch.float32).reshape(1000, 1, 2, 2)
    flipped = data.random_hflip(images)
    was_flipped = torch.tensor([torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)])
    unchanged = torch.tensor([torch.equal(f, i) for f, i in zip(flipped, images)])
    assert torch.all(was_flipped ^ unchanged)
    assert 400 < was_flipped.sum() < 600
