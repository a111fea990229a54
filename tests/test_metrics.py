"""FID, precision, recall and memorisation (ddpm.metrics): both extractors, the classifier, reference statistics and
metric rows, all offline."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from ddpm.checkpoint import load_checkpoint, save_checkpoint
from ddpm.checks import METRICS
from ddpm.config import TrainConfig
from ddpm.data import load_dataset, prepare_dataset
from ddpm import metrics
from ddpm.extractors import (Classifier, extract_features, load_extractor, predicted_labels, tf_bilinear_resize,
                             train_classifier)
from ddpm.metrics import (class_accuracy, class_balanced_statistics, class_mix_error, evaluate_samples,
                          feature_statistics, frechet_distance, knn_radii, memorisation_rate, precision_recall,
                          reference_statistics, score_draw)
from ddpm.sampling import generate
from ddpm.models import build_model
from ddpm.training import train

ROW_KEYS = ["experiment", "epoch", "fid", "fid_sampling_se", "fid_balanced", "fid_balanced_sampling_se",
            "class_mix_error", "class_mix_error_sampling_se", "precision", "precision_sampling_se", "recall",
            "recall_sampling_se", "memorisation", "memorisation_sampling_se", "extractor", "num_samples",
            "sampling_draws", "num_reference", "num_reference_features"]


def quiet(message):
    """A log function that drops messages."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are small and the cores shared: one intra-op thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    prepare_dataset("digits", root)
    return root


@pytest.fixture(scope="module")
def real(digits_dir):
    return load_dataset(digits_dir)[0]


@pytest.fixture(scope="module")
def classifier_file(digits_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "classifier.pt"
    train_classifier(digits_dir, path, device="cpu", log=quiet)
    return path


@pytest.fixture(scope="module")
def classifier_stats(digits_dir, classifier_file):
    path = classifier_file.parent / "classifier_stats.pt"
    reference_statistics(digits_dir, path, "classifier", classifier_file, device="cpu", log=quiet)
    return path


def noise_like(images, seed=1):
    """Uniform random uint8 images of the same shape."""
    return torch.randint(0, 256, images.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def halves(n, seed):
    """Two disjoint random halves of range(n), as index tensors."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[: n // 2], order[n // 2:]


def fid_of(*feature_sets):
    """FID between two feature sets, expressed in an orthonormal basis of the span of their centred features.

    That is a rotation plus dropping directions in which both sets have no variance and the means agree,
    so the FID is unchanged, while the matrices shrink from d x d to at most (n_a + n_b) x (n_a + n_b).
    """
    stacked = torch.cat(feature_sets).double()
    basis = torch.linalg.qr((stacked - stacked.mean(0)).T).Q
    return frechet_distance(*(feature_statistics(f.double() @ basis) for f in feature_sets))


def test_wrong_extractor_names_the_allowed_values(digits_dir, classifier_stats, tmp_path):
    message = r"evaluation.extractor must be one of \['classifier', 'inception'\], got 'vgg'"
    with pytest.raises(ValueError, match=message):
        load_extractor("vgg")
    with pytest.raises(ValueError, match=message):
        reference_statistics(digits_dir, tmp_path / "stats.pt", "vgg", log=quiet)
    with pytest.raises(ValueError, match=message):
        evaluate_samples(tmp_path / "x.npy", classifier_stats, digits_dir, tmp_path / "row.json", "exp", 1, "vgg",
                         log=quiet)
    with pytest.raises(ValueError, match="extractor 'classifier' needs the classifier file"):
        load_extractor("classifier")
    assert not list(tmp_path.iterdir())


def test_classifier_needs_labels(real, tmp_path):
    np.save(tmp_path / "images.npy", real[:10].numpy())
    with pytest.raises(ValueError, match="extractor 'classifier' needs a labelled dataset.*use 'inception'"):
        train_classifier(tmp_path, tmp_path / "classifier.pt", device="cpu", log=quiet)


def test_classifier_is_accurate_and_seeded(digits_dir, classifier_file, tmp_path):
    saved = load_checkpoint(classifier_file)  # weights_only=True
    assert saved["val_accuracy"] > 0.9
    assert (saved["num_train"], saved["num_val"]) == (1438, 359)
    assert saved["hparams"] == {"channels": 1, "num_classes": 10, "width": 32, "num_features": 128}
    runs = [train_classifier(digits_dir, tmp_path / f"{seed}_{i}.pt", epochs=1, seed=seed, device="cpu", log=quiet)
            for i, seed in enumerate((0, 0, 1))]
    assert all(torch.equal(runs[0]["model"][k], runs[1]["model"][k]) for k in runs[0]["model"])
    assert runs[0]["val_accuracy"] == runs[1]["val_accuracy"]
    assert not torch.equal(runs[0]["model"]["head.weight"], runs[2]["model"]["head.weight"])


def test_classifier_takes_any_image_shape():
    for shape in ((1, 8, 8), (3, 32, 32), (3, 5, 7)):
        model = Classifier(shape[0], 10)
        images = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
        assert model(images).shape == (2, 128) and model.logits(images).shape == (2, 10)


def random_statistics(generator, dim):
    """A mean and a full-rank covariance with correlated features, as feature_statistics gives them."""
    factor = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return {"mu": torch.randn(dim, generator=generator, dtype=torch.float64), "sigma": factor @ factor.T / dim}


def test_frechet_distance_equals_the_matrix_square_root_formula():
    """Against the formula with an explicit matrix square root (scipy.linalg.sqrtm, as in Heusel et al.'s code), for
    covariances that do not commute, and against the closed form of two 1-D Gaussians, (m1 - m2)^2 + (s1 - s2)^2."""
    generator = torch.Generator().manual_seed(0)
    a, b = random_statistics(generator, 16), random_statistics(generator, 16)
    assert not torch.allclose(a["sigma"] @ b["sigma"], b["sigma"] @ a["sigma"])
    root = scipy.linalg.sqrtm(a["sigma"].numpy() @ b["sigma"].numpy()).real
    expected = ((a["mu"] - b["mu"]).square().sum() + a["sigma"].trace() + b["sigma"].trace()).item() - 2 * np.trace(root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)
    one_d = [{"mu": torch.tensor([m], dtype=torch.float64), "sigma": torch.tensor([[s * s]], dtype=torch.float64)}
             for m, s in ((1.0, 2.0), (-0.5, 0.5))]
    assert frechet_distance(*one_d) == pytest.approx(1.5 ** 2 + 1.5 ** 2, rel=1e-12)
    with pytest.raises(ValueError, match="feature sizes differ: 16 vs 1"):
        frechet_distance(a, one_d[0])


def test_classifier_fid_sanity(real, classifier_file):
    extractor = load_extractor("classifier", classifier_file)
    features = extract_features(extractor, real)
    stats = feature_statistics(features)
    assert frechet_distance(stats, stats) == pytest.approx(0, abs=1e-6)
    first, second = [frechet_distance(*(feature_statistics(features[h]) for h in halves(len(real), seed))) for seed in (0, 1)]
    noise = frechet_distance(feature_statistics(extract_features(extractor, noise_like(real))), stats)
    assert 0 < first < noise / 20 and 0.5 < first / second < 2
    again = frechet_distance(*(feature_statistics(extract_features(extractor, real[h])) for h in halves(len(real), 0)))
    assert again == pytest.approx(first, rel=1e-6)  # other batches, same value up to float rounding
    # the same value as torchmetrics' FrechetInceptionDistance with this extractor as its custom feature network
    a, b = halves(len(real), 0)
    metric = FrechetInceptionDistance(feature=extractor)  # its states are float64, its result float32
    metric.update(real[a], real=True)
    metric.update(real[b], real=False)
    assert metric.compute().item() == pytest.approx(first, rel=1e-5)
    # fid_of's change of basis keeps the value (here 40 images, 128 features)
    assert fid_of(features[:20], features[20:40]) == pytest.approx(
        frechet_distance(feature_statistics(features[:20]), feature_statistics(features[20:40])), rel=1e-5)


def test_tf_bilinear_resize_samples_input_pixel_i_times_in_over_out():
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)  # value = column index
    resized = tf_bilinear_resize(ramp, 299)
    expected = (torch.arange(299.0) * 8 / 299).clamp(max=7)
    assert resized.shape == (1, 1, 299, 299)
    assert torch.allclose(resized[0, 0], expected.expand(299, 299), atol=1e-4)


def test_inception_fid_sanity(real):
    extractor = load_extractor("inception")
    images = torch.cat([real[:16], noise_like(real[:8])])
    features = extract_features(extractor, images, batch_size=8)
    assert features.shape == (24, 2048) and torch.isfinite(features).all()
    assert FrechetInceptionDistance(feature=extractor).real_features_sum.shape == (2048,)  # num_features, no probe
    assert torch.allclose(extractor(real[:1]), extractor(real[:1].expand(-1, 3, -1, -1)))
    first, second, noise = features[:8], features[8:16], features[16:]
    assert fid_of(first, first) == pytest.approx(0, abs=1e-6)
    real_vs_real, noise_vs_real = fid_of(first, second), fid_of(noise, first)
    assert 0 < real_vs_real < noise_vs_real / 2


def test_reference_statistics_and_metric_rows(digits_dir, real, classifier_file, classifier_stats, tmp_path):
    stats = load_checkpoint(classifier_stats)
    assert (stats["extractor"], stats["num_images"], stats["image_shape"]) == ("classifier", 1797, [1, 8, 8])
    assert stats["mu"].shape == (128,) and stats["sigma"].shape == (128, 128) and stats["sigma"].dtype == torch.float64
    # all 1,797 features kept for precision and recall, in dataset order, the statistics' own
    features = extract_features(load_extractor("classifier", classifier_file), real)
    assert torch.equal(stats["feature_indices"], torch.arange(1797))
    assert torch.allclose(stats["features"], features, atol=1e-5) and stats["features"].dtype == torch.float32
    subset = reference_statistics(digits_dir, tmp_path / "subset.pt", "classifier", classifier_file, num_reference=500,
                                  device="cpu", log=quiet)
    assert subset["num_images"] == 500 and len(subset["feature_indices"].unique()) == 500
    assert torch.allclose(subset["features"], features[subset["feature_indices"]], atol=1e-5)
    assert torch.allclose(feature_statistics(subset["features"])["mu"], subset["mu"])  # the same 500 images
    for bad in (1, 1798, True, 2.5):
        with pytest.raises(ValueError, match=r"evaluation.num_reference must be null \(all images\) or an integer in \[2, 1797\]"):
            reference_statistics(digits_dir, tmp_path / "bad.pt", "classifier", classifier_file, num_reference=bad, log=quiet)

    np.save(tmp_path / "samples.npy", real[:300].numpy())
    row = evaluate_samples(tmp_path / "samples.npy", classifier_stats, digits_dir, tmp_path / "metrics" / "epoch_3.json",
                           "exp", 3, "classifier", classifier_file, device="cpu", log=quiet)
    assert json.loads((tmp_path / "metrics" / "epoch_3.json").read_text()) == row
    assert list(row) == ROW_KEYS and (row["experiment"], row["epoch"], row["extractor"]) == ("exp", 3, "classifier")
    assert (row["num_samples"], row["num_reference"], row["num_reference_features"]) == (300, 1797, 1797)
    assert 0 < row["fid"] < 100 and 0 < row["fid_balanced"] < 100 and 0 <= row["class_mix_error"] < 0.2
    assert row["sampling_draws"] == 1 and all(row[f"{m}_sampling_se"] is None for m in METRICS)
    # training images as samples: each copies itself, and each lies in its own real ball
    assert row["memorisation"] == 1 and row["precision"] == 1
    features = extract_features(load_extractor("classifier", classifier_file), real)
    assert row["recall"] == pytest.approx(precision_recall(features, features[:300])[1], abs=1e-12) and row["recall"] < 1
    np.save(tmp_path / "three.npy", real[:3].numpy())  # no more than k = 3 samples: no k-NN radii, so no precision
    row = evaluate_samples(tmp_path / "three.npy", classifier_stats, digits_dir, tmp_path / "three.json", "exp", 3,
                           "classifier", classifier_file, device="cpu", log=quiet)
    assert (row["precision"], row["recall"], row["memorisation"]) == (None, None, 1)
    assert json.loads((tmp_path / "three.json").read_text())["precision"] is None
    assert [p.name for p in (tmp_path / "metrics").iterdir()] == ["epoch_3.json"]  # no temporary files left

    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"must be uint8 \(N, 1, 8, 8\) like the dataset, got torch.uint8 \(4, 3, 8, 8\)"):
        evaluate_samples(tmp_path / "rgb.npy", classifier_stats, digits_dir, tmp_path / "bad.json", "exp", 3,
                         "classifier", classifier_file, log=quiet)
    save_checkpoint({**stats, "extractor": "inception"}, tmp_path / "inception_stats.pt")
    with pytest.raises(ValueError, match="were made with extractor 'inception', not 'classifier'"):
        evaluate_samples(tmp_path / "samples.npy", tmp_path / "inception_stats.pt", digits_dir, tmp_path / "bad.json",
                         "exp", 3, "classifier", classifier_file, log=quiet)
    save_checkpoint({k: v for k, v in stats.items() if k != "class_mix"}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="hold no features or class mix.*delete the file"):
        evaluate_samples(tmp_path / "samples.npy", tmp_path / "old.pt", digits_dir, tmp_path / "bad.json", "exp", 3,
                         "classifier", classifier_file, log=quiet)
    assert not (tmp_path / "bad.json").exists()


def test_a_trained_model_scores_better_than_an_untrained_one(digits_dir, real, classifier_file, classifier_stats,
                                                             tmp_path):
    # T = 50 steps of the cosine schedule bring x_T close to N(0, I); an untrained network's samples are
    # clipped into the data range by the sampler, so the trained one must be clearly better, not just finite
    config = TrainConfig(hidden_size=32, num_timesteps=50, schedule="cosine", batch_size=64, epochs=5, lr=2e-3,
                         ema_decay=0.9, log_every=10, device="cpu")
    trained = train(config, real, tmp_path / "run", tmp_path / "state", log=quiet).eval()
    torch.manual_seed(0)
    untrained = build_model(config, 1, 8).eval()
    rows = {}
    for name, model in (("trained", trained), ("untrained", untrained)):
        np.save(tmp_path / f"{name}.npy", generate(model, 256, seed=1, device="cpu").numpy())
        rows[name] = evaluate_samples(tmp_path / f"{name}.npy", classifier_stats, digits_dir, tmp_path / f"{name}.json",
                                      name, 5, "classifier", classifier_file, device="cpu", log=quiet)
    assert rows["trained"]["fid"] < 0.7 * rows["untrained"]["fid"]
    assert rows["trained"]["precision"] > rows["untrained"]["precision"]


def test_reference_features_beyond_the_cap_are_the_first_of_the_seeded_permutation(digits_dir, real, classifier_file,
                                                                                 tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "MAX_REFERENCE_FEATURES", 100)
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    features = extract_features(load_extractor("classifier", classifier_file), real)
    for num_reference in (None, 500):
        stats = reference_statistics(digits_dir, tmp_path / f"{num_reference}.pt", "classifier", classifier_file,
                                     num_reference=num_reference, device="cpu", log=quiet)
        assert stats["num_images"] == (num_reference or 1797)  # FID still uses every reference image
        assert torch.equal(stats["feature_indices"], order[:100])
        assert torch.allclose(stats["features"], features[order[:100]], atol=1e-5)


def brute_force_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's distance to its k-th nearest other point, by loops."""
    radii = []
    for i, p in enumerate(points):
        others = sorted(float(np.sqrt(((p - q) ** 2).sum())) for j, q in enumerate(points) if j != i)
        radii.append(others[k - 1])
    return np.array(radii)


def brute_force_coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """The share of `points` within at least one ball, by loops."""
    inside = [any(np.sqrt(((p - c) ** 2).sum()) <= r for c, r in zip(centres, radii)) for p in points]
    return sum(inside) / len(points)


def small_blocks(monkeypatch):
    """Distance blocks of a few rows, so that the small cases run through several blocks."""
    monkeypatch.setattr(metrics, "BLOCK_BYTES", 8 * 3 * 40)


def test_precision_and_recall_equal_a_direct_computation(monkeypatch):
    small_blocks(monkeypatch)
    rng = np.random.default_rng(0)
    real = rng.normal(size=(30, 4))
    real[7] = real[3]  # a duplicate: its radius counts the other copy, at distance 0, as a neighbour
    generated = np.concatenate([rng.normal(size=(15, 4)), rng.normal(3.0, 1.0, size=(10, 4))])  # 10 off the data
    for k in (1, 3, 5):
        np.testing.assert_allclose(knn_radii(torch.from_numpy(real), k).numpy(), brute_force_radii(real, k), rtol=1e-9)
        precision = brute_force_coverage(generated, real, brute_force_radii(real, k))
        recall = brute_force_coverage(real, generated, brute_force_radii(generated, k))
        assert 0 < precision < 1 and 0 < recall < 1
        assert precision_recall(torch.from_numpy(real).float(), torch.from_numpy(generated).float(), k) == \
            pytest.approx((precision, recall), abs=1e-12)
    with pytest.raises(ValueError, match="k-NN radii with k = 3 need more than 3 points, got 3"):
        precision_recall(torch.from_numpy(real), torch.from_numpy(generated[:3]))
    with pytest.raises(ValueError, match="feature sizes differ: 4 vs 2"):
        precision_recall(torch.from_numpy(real), torch.from_numpy(generated[:, :2]))


def test_memorisation_equals_a_direct_computation(monkeypatch):
    small_blocks(monkeypatch)
    rng = np.random.default_rng(0)
    training = rng.integers(0, 256, (40, 1, 4, 4), dtype=np.uint8)
    copies = np.clip(training[:12].astype(int) + rng.integers(-6, 7, (12, 1, 4, 4)), 0, 255).astype(np.uint8)
    halfway = ((training[12:20].astype(int) + training[20:28]) // 2).astype(np.uint8)  # between two: no copies
    samples = np.concatenate([copies, halfway, rng.integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)])
    flat_training = training.reshape(len(training), -1).astype(float)
    copied = []
    for sample in samples.reshape(len(samples), -1).astype(float):
        first, second = sorted(np.sqrt(((sample - t) ** 2).sum()) for t in flat_training)[:2]
        copied.append(first < second / 3)
    assert all(copied[:12]) and not any(copied[12:20])
    assert memorisation_rate(torch.from_numpy(samples), torch.from_numpy(training)) == sum(copied) / len(samples)
    with pytest.raises(ValueError, match=r"samples \(1, 4, 4\) and training images \(1, 4, 2\) differ in shape"):
        memorisation_rate(torch.from_numpy(samples), torch.from_numpy(training[..., :2]))
    with pytest.raises(ValueError, match="needs at least 2 training images, got 1"):
        memorisation_rate(torch.from_numpy(samples), torch.from_numpy(training[:1]))


def test_quality_metrics_on_training_held_out_and_noise_images(real, classifier_file):
    """Training images against themselves are all copies and all on the data; digits held out of the first 1,497
    (the last 300) copy none and score high; noise lies off the data."""
    extractor = load_extractor("classifier", classifier_file)
    features = extract_features(extractor, real)
    noise = noise_like(real[:300])
    assert memorisation_rate(real, real) == 1
    assert precision_recall(features, features) == (1, 1)
    train, held_out = slice(0, 1497), slice(1497, None)
    assert memorisation_rate(real[held_out], real[train]) == 0
    spaces = {"classifier": (features, extract_features(extractor, noise)), "pixel": (real.flatten(1), noise.flatten(1))}
    for space, (reference, others) in spaces.items():
        precision, recall = precision_recall(reference[train], reference[held_out])
        noise_precision, noise_recall = precision_recall(reference[train], others)
        assert precision > 0.6 and recall > 0.6, space
        assert noise_precision < 0.05 and noise_recall < 0.05, space
    assert memorisation_rate(noise, real) == 0


def test_class_balanced_statistics_are_the_weighted_mean_and_unbiased_covariance():
    features = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 1, 2, 2, 0])
    class_mix = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)  # class 3 has no sample and no share
    stats = class_balanced_statistics(features, labels, class_mix)
    weights = (class_mix / torch.bincount(labels, minlength=4).clamp(min=1))[labels]  # class share / class count
    assert weights.sum() == pytest.approx(1)
    expected_sigma = np.cov(features.numpy(), rowvar=False, aweights=weights.numpy(), ddof=1)
    assert torch.allclose(stats["mu"], weights @ features) and np.allclose(stats["sigma"].numpy(), expected_sigma)
    assert stats["num_images"] == pytest.approx(1 / weights.square().sum().item())
    # a draw already in the reference's mix: its plain statistics
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    stats = class_balanced_statistics(features, labels, torch.tensor([4 / 7, 2 / 7, 1 / 7]))
    plain = feature_statistics(features)
    assert torch.allclose(stats["mu"], plain["mu"]) and torch.allclose(stats["sigma"], plain["sigma"])
    assert stats["num_images"] == pytest.approx(7)
    # a class the reference has but the draw lacks: the others' shares renormalised
    stats = class_balanced_statistics(features[:4], torch.tensor([0, 0, 1, 1]), torch.tensor([0.25, 0.25, 0.5]))
    assert torch.allclose(stats["mu"], features[:4].mean(0))


def test_class_mix_error_is_the_total_variation_distance():
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert class_mix_error(torch.tensor([0, 1, 1, 0]), half) == 0
    assert class_mix_error(torch.tensor([0, 0, 0, 0]), half) == 0.5
    assert class_mix_error(torch.tensor([0, 0, 0, 1]), half) == 0.25
    assert class_mix_error(torch.tensor([1, 1]), torch.tensor([1.0, 0.0])) == 1


def test_draws_that_differ_only_in_class_mix_move_fid_but_not_the_balanced_fid(real, digits_dir, classifier_file,
                                                                               classifier_stats):
    """Why FID moves between sampling draws: real digits in two class mixes (50 of each class; 30 of each of 0-4
    and 70 of each of 5-9), no image in both. Plain FID tells them far apart, though every image is real; the
    class-balanced FID, which weighs each class by its share of the reference, scores them alike."""
    reference = load_checkpoint(classifier_stats)
    extractor = load_extractor("classifier", classifier_file)
    _, labels = load_dataset(digits_dir)
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(3))
    balanced, skewed = [], []
    for digit in range(10):
        of_digit = order[labels[order] == digit]
        balanced.append(of_digit[:50])
        skewed.append(of_digit[50:80] if digit < 5 else of_digit[50:120])
    scores = {name: score_draw(real[torch.cat(rows)], reference, extractor, real)
              for name, rows in (("balanced", balanced), ("skewed", skewed))}
    assert scores["skewed"]["class_mix_error"] > 0.15 > 0.02 > scores["balanced"]["class_mix_error"]
    plain_gap = scores["skewed"]["fid"] - scores["balanced"]["fid"]
    balanced_gap = abs(scores["skewed"]["fid_balanced"] - scores["balanced"]["fid_balanced"])
    assert plain_gap > 1.0 and balanced_gap < plain_gap / 5, scores


def test_each_metric_is_the_mean_over_draws_with_its_standard_error(real, digits_dir, classifier_file,
                                                                    classifier_stats, tmp_path):
    draws = [real[i * 200:(i + 1) * 200] for i in range(3)]
    for i, images in enumerate(draws):
        np.save(tmp_path / f"draw{i}.npy", images.numpy())
    row = evaluate_samples([tmp_path / f"draw{i}.npy" for i in range(3)], classifier_stats, digits_dir,
                           tmp_path / "row.json", "exp", 2, "classifier", classifier_file, device="cpu", log=quiet)
    reference, extractor = load_checkpoint(classifier_stats), load_extractor("classifier", classifier_file)
    scores = [score_draw(images, reference, extractor, real) for images in draws]
    for metric in METRICS:
        values = [score[metric] for score in scores]
        assert row[metric] == pytest.approx(np.mean(values), abs=1e-12)
        assert row[f"{metric}_sampling_se"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(3), abs=1e-12)
    assert (row["num_samples"], row["sampling_draws"]) == (200, 3) and row["fid_sampling_se"] > 0
    np.save(tmp_path / "small.npy", real[:100].numpy())
    with pytest.raises(ValueError, match="differ in size"):
        evaluate_samples([tmp_path / "draw0.npy", tmp_path / "small.npy"], classifier_stats, digits_dir,
                         tmp_path / "bad.json", "exp", 2, "classifier", classifier_file, log=quiet)
    assert not (tmp_path / "bad.json").exists()


def test_the_reference_class_mix_is_the_classifiers_labels_of_the_reference(real, classifier_file, classifier_stats):
    extractor = load_extractor("classifier", classifier_file)
    labels = predicted_labels(extractor, extract_features(extractor, real))
    mix = load_checkpoint(classifier_stats)["class_mix"]
    assert torch.allclose(mix, torch.bincount(labels, minlength=10).double() / len(real))
    assert mix.sum() == pytest.approx(1) and mix.min() > 0.08  # digits: about a tenth of each


def test_class_accuracy_is_the_share_of_predictions_that_match_the_drawn_labels():
    labels = torch.arange(10) % 4
    for k in (0, 3, 7, 10):
        predicted = torch.where(torch.arange(10) < k, labels, (labels + 1) % 4)  # the first k match, the rest not
        assert class_accuracy(predicted, labels) == k / 10
    with pytest.raises(ValueError, match=r"labels must give one class per sample: \(9,\) for 10 samples"):
        class_accuracy(labels, labels[:9])


def held_out_draws(digits_dir, tmp_path, shuffle: bool = False):
    """Two draws of 150 of the digits the classifier never trained on (its seeded held-out 359), with their true
    labels (or the same labels shuffled) saved beside them as the sample jobs save them; and the draws themselves."""
    images, labels = load_dataset(digits_dir)
    held_out = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:359]
    if shuffle:
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]
    draws = [held_out[i * 150:(i + 1) * 150] for i in range(2)]
    for i, rows in enumerate(draws):
        np.save(tmp_path / f"draw{i}.npy", images[rows].numpy())
        np.save(tmp_path / f"draw{i}_labels.npy", labels[rows].numpy().astype(np.int64))
    return ([tmp_path / f"draw{i}.npy" for i in range(2)], [tmp_path / f"draw{i}_labels.npy" for i in range(2)],
            [(images[rows], labels[rows]) for rows in draws])


def test_class_accuracy_of_held_out_digits_is_the_classifiers_accuracy_and_a_tenth_for_shuffled_labels(
        digits_dir, classifier_file, classifier_stats, tmp_path):
    samples, labels, draws = held_out_draws(digits_dir, tmp_path)
    row = evaluate_samples(samples, classifier_stats, digits_dir, tmp_path / "row.json", "exp", 2, "classifier",
                           classifier_file, device="cpu", labels=labels, log=quiet)
    classifier = load_extractor("classifier", classifier_file)
    per_draw = [(classifier.logits(images).argmax(1) == truth).double().mean().item() for images, truth in draws]
    assert row["class_accuracy"] == pytest.approx(np.mean(per_draw), abs=1e-12)
    assert row["class_accuracy_sampling_se"] == pytest.approx(np.std(per_draw, ddof=1) / np.sqrt(2), abs=1e-12)
    assert row["class_accuracy"] == pytest.approx(load_checkpoint(classifier_file)["val_accuracy"], abs=0.03)
    samples, labels, _ = held_out_draws(digits_dir, tmp_path, shuffle=True)
    shuffled = evaluate_samples(samples, classifier_stats, digits_dir, tmp_path / "row.json", "exp", 2, "classifier",
                                classifier_file, device="cpu", labels=labels, log=quiet)
    assert shuffled["class_accuracy"] == pytest.approx(0.1, abs=0.05)


def test_labels_and_variants_add_their_columns_and_change_nothing_else(digits_dir, classifier_file, classifier_stats,
                                                                        tmp_path):
    """Without labels or a variant the row is today's, key for key and byte for byte; labels add class_accuracy and
    its standard error after the other metrics; a variant's columns follow the epoch."""
    samples, labels, _ = held_out_draws(digits_dir, tmp_path)
    arguments = (samples, classifier_stats, digits_dir)
    plain = evaluate_samples(*arguments, tmp_path / "plain.json", "exp", 2, "classifier", classifier_file,
                             device="cpu", log=quiet)
    assert list(plain) == ROW_KEYS
    assert (tmp_path / "plain.json").read_text() == json.dumps(plain, indent=2)
    variant = {"guidance_scale": 2.0, "sampler": "ddim", "sampling_seed": 3}
    row = evaluate_samples(*arguments, tmp_path / "labelled.json", "exp", 2, "classifier", classifier_file,
                           device="cpu", labels=labels, variant=variant, log=quiet)
    at = ROW_KEYS.index("extractor")
    assert list(row) == [*ROW_KEYS[:2], *variant, *ROW_KEYS[2:at], "class_accuracy", "class_accuracy_sampling_se",
                         *ROW_KEYS[at:]]
    assert {key: row[key] for key in ROW_KEYS} == plain and {key: row[key] for key in variant} == variant
    assert json.loads((tmp_path / "labelled.json").read_text()) == row


def test_conditioning_arguments_are_checked_before_any_scoring(digits_dir, classifier_file, classifier_stats,
                                                                tmp_path):
    samples, labels, _ = held_out_draws(digits_dir, tmp_path)
    arguments = (samples, classifier_stats, digits_dir, tmp_path / "bad.json", "exp", 2)
    with pytest.raises(ValueError, match="labels must be one file per draw: 1 for 2 draws"):
        evaluate_samples(*arguments, "classifier", classifier_file, labels=labels[:1], log=quiet)
    with pytest.raises(ValueError, match="class_accuracy needs the classifier file .* beside extractor 'inception'"):
        evaluate_samples(*arguments, "inception", labels=labels, log=quiet)
    with pytest.raises(ValueError, match=r"variant columns \['epoch', 'seed'\] are taken by the metric row"):
        evaluate_samples(*arguments, "classifier", classifier_file, variant={"seed": 1, "epoch": 2}, log=quiet)
    np.save(tmp_path / "short_labels.npy", np.zeros(149, np.int64))
    with pytest.raises(ValueError, match=r"must be integers of shape \(150,\) like the draw's samples, got int64 \(149,\)"):
        evaluate_samples(*arguments, "classifier", classifier_file, labels=[labels[0], tmp_path / "short_labels.npy"],
                         log=quiet)
    assert not (tmp_path / "bad.json").exists()


class PixelProjection(torch.nn.Module):
    """An extractor that gives no classes, as inception: a random projection of 8x8 pixels to 16 features."""

    def __init__(self):
        super().__init__()
        self.projection = torch.nn.Linear(64, 16)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(images.flatten(1).float())


def test_beside_another_extractor_the_classifier_only_labels(digits_dir, real, classifier_file, classifier_stats):
    """With an extractor that gives no classes (as inception), the classifier scores class_accuracy and nothing
    else: every other score is the extractor's alone."""
    torch.manual_seed(0)
    extractor = PixelProjection()
    images, labels = load_dataset(digits_dir)
    reference = {**feature_statistics(extract_features(extractor, images)),
                 "features": extract_features(extractor, images[:400]), "class_mix": None}
    classifier = load_extractor("classifier", classifier_file)
    alone = score_draw(images[:200], reference, extractor, real)
    scores = score_draw(images[:200], reference, extractor, real, labels=labels[:200], classifier=classifier)
    assert scores == {**alone, "class_accuracy": class_accuracy(classifier.logits(images[:200]).argmax(1), labels[:200])}
    assert alone["fid_balanced"] is None and "class_accuracy" not in alone and scores["class_accuracy"] > 0.9
    with pytest.raises(ValueError, match="class_accuracy needs the dataset's classifier"):
        score_draw(images[:200], reference, extractor, real, labels=labels[:200])
