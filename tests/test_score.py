"""ddpm-fid: the workflow's metrics of any uint8 samples, through the command line."""

import json

import numpy as np
import pytest
from PIL import Image

from ddpm.data import load_dataset, prepare_dataset
from ddpm.extractors import extract_features, load_extractor, predicted_labels
from ddpm.metrics import class_accuracy, evaluate_samples
from ddpm.score import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """300 labelled digits as a prepared dataset, two draws of 'samples' (other digits, a little noise), and the
    reference made once in a cache folder by ddpm-fid itself."""
    root = tmp_path_factory.mktemp("score")
    prepare_dataset("digits", root / "all")
    images, labels = load_dataset(root / "all")
    (root / "data").mkdir()
    np.save(root / "data" / "images.npy", images[:300].numpy())
    np.save(root / "data" / "labels.npy", labels[:300].numpy())
    generator = np.random.default_rng(0)
    draws = []
    for index, start in enumerate((300, 400)):
        noisy = images[start:start + 100].numpy().astype(int) + generator.integers(-8, 9, (100, 1, 8, 8))
        draws.append(root / f"draw{index}.npy")
        np.save(draws[-1], noisy.clip(0, 255).astype(np.uint8))
    return root, draws


def run(capsys, *arguments):
    main([str(a) for a in arguments])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # one JSON line on stdout, the log on stderr
    return json.loads(out[0])


def test_the_reference_is_made_once_in_the_cache_and_the_row_is_the_evaluate_jobs(setup, capsys):
    """Two draws scored by ddpm-fid (the reference built in the cache) and by the evaluate job's call against the same
    cache folder, a workflow reference folder: the same numbers to the last digit; a second call trains nothing."""
    root, draws = setup
    row = run(capsys, *draws, "--data", root / "data", "--cache", root / "cache", "--out", root / "row.json")
    made = {f.name: f.stat().st_mtime_ns for f in (root / "cache").iterdir()}
    assert set(made) == {"classifier.pt", "classifier_stats.pt"}
    again = run(capsys, *draws, "--data", root / "data", "--reference", root / "cache")
    assert again == row == json.loads((root / "row.json").read_text())
    assert made == {f.name: f.stat().st_mtime_ns for f in (root / "cache").iterdir()}
    job = evaluate_samples(draws, root / "cache" / "classifier_stats.pt", root / "data", root / "job.json", "x", 1,
                           "classifier", classifier=root / "cache" / "classifier.pt", device="cpu", log=lambda m: None)
    assert {k: v for k, v in job.items() if k not in ("experiment", "epoch")} == {
        k: v for k, v in row.items() if k != "samples"}
    assert row["sampling_draws"] == 2 and row["fid_sampling_se"] is not None and row["samples"] == list(map(str, draws))


def test_a_folder_of_pngs_scores_as_its_array(setup, capsys):
    root, draws = setup
    images = np.load(draws[0])
    (root / "pngs").mkdir(exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image[0]).save(root / "pngs" / f"{index:03d}.png")
    from_pngs = run(capsys, root / "pngs", "--data", root / "data", "--cache", root / "cache")
    from_array = run(capsys, draws[0], "--data", root / "data", "--cache", root / "cache")
    assert {k: v for k, v in from_pngs.items() if k != "samples"} == {
        k: v for k, v in from_array.items() if k != "samples"}


@pytest.mark.parametrize("samples, message", [
    (np.zeros((4, 1, 8, 8), np.float32), "must hold uint8 images (N, C, H, W), got float32"),
    (np.zeros((4, 8, 8), np.uint8), "must hold uint8 images (N, C, H, W), got uint8 of shape (4, 8, 8)"),
    (np.zeros((4, 3, 8, 8), np.uint8), "has channels unlike the dataset's: images (3, 8, 8)"),
    (np.zeros((4, 1, 16, 16), np.uint8), "has image size unlike the dataset's"),
])
def test_wrong_samples_stop_in_one_line_naming_the_argument(setup, capsys, tmp_path, samples, message):
    root, _ = setup
    np.save(tmp_path / "bad.npy", samples)
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "bad.npy"), "--data", str(root / "data"), "--cache", str(root / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and "error: SAMPLES: " in err[-1] and message in err[-1]


def test_a_reference_folder_without_the_extractors_statistics_is_named(setup, capsys, tmp_path):
    root, draws = setup
    with pytest.raises(SystemExit):
        main([str(draws[0]), "--data", str(root / "data"), "--reference", str(tmp_path)])
    assert "error: --reference: " in capsys.readouterr().err


def test_labels_add_the_class_accuracy_of_the_evaluate_job(setup, capsys):
    """With the classes the draws were 'drawn' with, the row adds class_accuracy, the evaluate job's to the last digit;
    labels that the samples do not show (shifted by one class) score near 0; one label file per draw, or a clear
    error naming --labels."""
    root, draws = setup
    _, labels = load_dataset(root / "all")
    label_files = []
    for index, start in enumerate((300, 400)):
        label_files.append(root / f"labels{index}.npy")
        np.save(label_files[-1], labels[start:start + 100].numpy())
    row = run(capsys, *draws, "--labels", *label_files, "--data", root / "data", "--cache", root / "cache")
    job = evaluate_samples(draws, root / "cache" / "classifier_stats.pt", root / "data", root / "job.json", "x", 1,
                           "classifier", classifier=root / "cache" / "classifier.pt", device="cpu",
                           labels=label_files, log=lambda m: None)
    assert row["class_accuracy"] == job["class_accuracy"] > 0.8
    assert row["class_accuracy_sampling_se"] == job["class_accuracy_sampling_se"] is not None
    shifted = root / "shifted.npy"
    np.save(shifted, (labels[300:400].numpy() + 1) % 10)
    assert run(capsys, draws[0], "--labels", shifted, "--data", root / "data", "--cache", root / "cache")[
        "class_accuracy"] < 0.1
    with pytest.raises(SystemExit):
        main([str(draws[0]), "--labels", *map(str, label_files), "--data", str(root / "data"), "--cache",
              str(root / "cache")])
    assert "error: --labels: one file per SAMPLES, got 2 for 1" in capsys.readouterr().err


def test_labels_beside_inception_train_the_classifier_once_in_the_cache(tmp_path, capsys):
    """class_accuracy beside the inception extractor: the cache gets the classifier too, and the accuracy is the one
    that classifier gives (16 digits, one draw of 8: inception and its 2048-d FID are slow on the CPU)."""
    prepare_dataset("digits", tmp_path / "all")
    images, labels = load_dataset(tmp_path / "all")
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "images.npy", images[:16].numpy())
    np.save(tmp_path / "data" / "labels.npy", labels[:16].numpy())
    np.save(tmp_path / "draw.npy", images[100:108].numpy())
    np.save(tmp_path / "labels.npy", labels[100:108].numpy())
    row = run(capsys, tmp_path / "draw.npy", "--labels", tmp_path / "labels.npy", "--extractor", "inception",
              "--data", tmp_path / "data", "--cache", tmp_path / "cache")
    assert {f.name for f in (tmp_path / "cache").iterdir()} == {"classifier.pt", "inception_stats.pt"}
    judge = load_extractor("classifier", tmp_path / "cache" / "classifier.pt")
    assert row["extractor"] == "inception" and row["class_accuracy"] == class_accuracy(
        predicted_labels(judge, extract_features(judge, images[100:108])), labels[100:108])
