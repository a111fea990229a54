"""What a dataset will be before it is prepared (ddpm.dataset_info)."""

import os

import numpy as np
import pytest
from PIL import Image

from ddpm.dataset_info import check_dataset


@pytest.mark.parametrize("name, shape", [("digits", (1797, 1, 8)), ("cifar10", (50_000, 3, 32))])
def test_builtin_datasets_are_known_before_download(name, shape):
    dataset = check_dataset(name)
    assert (dataset.num_images, dataset.channels, dataset.image_size) == shape
    assert dataset.to_dict() == {"name": name, "channels": shape[1], "image_size": shape[2]}
    assert dataset.files_digest() == ""


@pytest.mark.parametrize("field, value", [("image_size", 16), ("channels", 3), ("path", "images")])
def test_folder_fields_are_refused_for_builtin_datasets(field, value):
    with pytest.raises(ValueError, match=f"dataset.{field} applies only to dataset 'folder'; digits is always "
                                         "1797 images of 1x8x8"):
        check_dataset("digits", **{field: value})


def write_folder(folder, count: int, start: int = 0) -> None:
    (folder / "nested").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = np.full((12, 12, 3), i, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / ("nested" if i % 2 else "") / f"img{i}.png")


def test_folder_dataset_records_its_shape_and_count(tmp_path):
    write_folder(tmp_path, 5)
    dataset = check_dataset("folder", path=str(tmp_path), image_size=16)
    assert (dataset.num_images, dataset.channels, dataset.image_size) == (5, 3, 16)
    assert dataset.to_dict() == {"name": "folder", "channels": 3, "image_size": 16, "path": str(tmp_path)}
    assert check_dataset("folder", path=str(tmp_path), image_size=16, channels=1).channels == 1


def test_folder_digest_changes_with_the_files_and_only_then(tmp_path):
    write_folder(tmp_path, 4)
    digest = check_dataset("folder", path=str(tmp_path), image_size=8).files_digest()
    assert check_dataset("folder", path=str(tmp_path), image_size=8).files_digest() == digest
    write_folder(tmp_path, 1, start=4)
    added = check_dataset("folder", path=str(tmp_path), image_size=8).files_digest()
    assert added != digest
    image = tmp_path / "img0.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1_000_000_000))
    assert check_dataset("folder", path=str(tmp_path), image_size=8).files_digest() != added
