import csv

import pytest
import torch

from ddpm.checkpoint import load_checkpoint
from ddpm.config import TrainConfig
from ddpm.data import load_dataset, prepare_dataset
from ddpm.sampling import load_model, sample_checkpoint
from ddpm.training import CSV_COLUMNS, NonFiniteLossError, train
from tests.conftest import DEVICES

DETERMINISTIC_COLUMNS = ("step", "epoch", "loss", "lr")


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    prepare_dataset("digits", root)
    return load_dataset(root)[0][:96]


def tiny(**overrides):
    values = dict(hidden_size=8, num_timesteps=20, batch_size=16, epochs=2, lr=1e-3, checkpoint_epochs=[1, 2],
                  ema_decay=0.9, flip=True, state_every=4, device="cpu")
    return TrainConfig(**{**values, **overrides})


def read_csv(path, columns=CSV_COLUMNS):
    with open(path, newline="") as f:
        return [tuple(row[c] for c in columns) for row in csv.DictReader(f)]


def run(config, images, root, name="run"):
    train(config, images, root / name, root / "state" / name, log=lambda message: None)
    return root / name


def test_training_writes_the_log_and_checkpoints(digits, tmp_path):
    run_dir = run(tiny(), digits, tmp_path)
    with open(run_dir / "losses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [int(r["step"]) for r in rows] == list(range(1, 13))  # 96 images / 16 per batch x 2 epochs
    assert [int(r["epoch"]) for r in rows] == [1] * 6 + [2] * 6
    assert all(float(r["images_per_second"]) > 0 for r in rows)
    elapsed = [float(r["elapsed_seconds"]) for r in rows]
    assert elapsed == sorted(elapsed)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "epoch_2.pt")
    assert (checkpoint["epoch"], checkpoint["step"], checkpoint["channels"], checkpoint["image_size"]) == (2, 12, 1, 8)
    assert not list((tmp_path / "state" / "run").glob("state_*.pt"))  # resume states go once training is done


def test_same_seed_same_csv_and_weights_other_lr_differs(digits, tmp_path):
    first, second = run(tiny(), digits, tmp_path, "a"), run(tiny(), digits, tmp_path, "b")
    other = run(tiny(lr=2e-3), digits, tmp_path, "c")
    assert read_csv(first / "losses.csv", DETERMINISTIC_COLUMNS) == read_csv(second / "losses.csv", DETERMINISTIC_COLUMNS)
    assert read_csv(first / "losses.csv", ("loss",)) != read_csv(other / "losses.csv", ("loss",))
    weights = [load_checkpoint(d / "checkpoints" / "epoch_2.pt")["model"] for d in (first, second)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_loss_falls_and_warmup_and_optimizers(digits, tmp_path):
    losses = {}
    for optimizer in ("adam", "adamw", "sgd"):
        config = tiny(optimizer=optimizer, epochs=6, warmup_steps=4, grad_clip=1.0, lr=2e-3 if optimizer != "sgd" else 5e-2,
                      checkpoint_epochs=[6])
        rows = read_csv(run(config, digits, tmp_path, optimizer) / "losses.csv", ("loss", "lr"))
        assert [float(lr) for _, lr in rows[:4]] == pytest.approx([config.lr * k / 4 for k in (1, 2, 3, 4)])
        loss = [float(l) for l, _ in rows]
        losses[optimizer] = (sum(loss[:6]) / 6, sum(loss[-6:]) / 6)
    for first, last in losses.values():
        assert last < first


def test_sampling_uses_the_ema_weights(digits, tmp_path):
    run_dir = run(tiny(), digits, tmp_path)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "epoch_2.pt")
    model = load_model(run_dir / "checkpoints" / "epoch_2.pt")
    assert all(torch.equal(v, checkpoint["ema"][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(checkpoint["ema"][k], checkpoint["model"][k]) for k in checkpoint["model"])
    samples = sample_checkpoint(run_dir / "checkpoints" / "epoch_2.pt", 5, steps=None, seed=3, batch_size=2, device="cpu")
    assert samples.shape == (5, 1, 8, 8) and samples.dtype == torch.uint8
    again = sample_checkpoint(run_dir / "checkpoints" / "epoch_2.pt", 5, steps=None, seed=3, batch_size=2, device="cpu")
    assert torch.equal(samples, again)
    ddim = sample_checkpoint(run_dir / "checkpoints" / "epoch_2.pt", 5, steps=5, seed=3, device="cpu")
    assert ddim.shape == samples.shape and not torch.equal(ddim, samples)


def test_without_ema_sampling_uses_the_raw_weights(digits, tmp_path):
    run_dir = run(tiny(ema_decay=None), digits, tmp_path)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "epoch_2.pt")
    assert checkpoint["ema"] is None
    model = load_model(run_dir / "checkpoints" / "epoch_2.pt")
    assert all(torch.equal(v, checkpoint["model"][k]) for k, v in model.state_dict().items())


def test_nan_loss_stops_with_the_step_and_keeps_the_last_state(digits, tmp_path):
    config = tiny(optimizer="sgd", lr=1e6, momentum=0.0, ema_decay=None, state_every=1)
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at step \d+ .*Try a lower lr \(now 1000000.0\)"):
        run(config, digits, tmp_path)
    states = list((tmp_path / "state" / "run").glob("state_*.pt"))
    assert states and all(torch.isfinite(v).all() for s in states for v in load_checkpoint(s)["model"].values())


def test_batch_larger_than_the_dataset(digits, tmp_path):
    with pytest.raises(ValueError, match=r"batch_size \(128\) is larger than the dataset \(96 images\)"):
        run(tiny(batch_size=128), digits, tmp_path)


@pytest.mark.parametrize("device", DEVICES)
def test_trains_on_each_device(digits, tmp_path, device):
    run_dir = run(tiny(device=device, epochs=1, checkpoint_epochs=[1]), digits, tmp_path)
    assert (run_dir / "checkpoints" / "epoch_1.pt").exists()
