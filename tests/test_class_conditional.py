"""Class-conditional training: both networks with a class embedding whose row K is the null label (Ho & Salimans
2022), the labels of a prepared dataset, the config's fields, and training and resume on the labels."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.checkpoint import load_checkpoint
from ddpm.config import TrainConfig
from ddpm.data import load_dataset, prepare_dataset
from ddpm.dataset_info import check_class_conditional, check_dataset
from ddpm.ddpm_unet import DDPMUNet
from ddpm.models import build_model
from ddpm.training import Batches, train
from ddpm.unet import UNet
from tests.test_training import DETERMINISTIC_COLUMNS, interrupted, read_csv, run, tiny

K = 3


def network(architecture: str, num_classes: int = 0) -> torch.nn.Module:
    """A tiny network of each architecture, seeded, whose every weight (the paper UNet's zero-initialised ones too)
    is non-zero, so that each input reaches the output."""
    torch.manual_seed(0)
    if architecture == "course":
        net = UNet(1, 1, hidden_size=8, image_size=8, num_classes=num_classes)
    else:
        net = DDPMUNet(1, 1, hidden_size=32, image_size=8, channel_mult=(1,), num_res_blocks=1,
                       attention_resolutions=(), dropout=0.0, num_classes=num_classes)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return net.eval()


ARCHITECTURES = ["course", "ddpm"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_an_unconditional_network_keeps_its_parameters_and_refuses_labels(architecture):
    """num_classes 0 is the network as it was: the same state dict keys, the same parameter count; a conditional one
    adds only the (K + 1)-row class embedding, as wide as the time embedding."""
    unconditional, conditional = network(architecture), network(architecture, K)
    assert unconditional.num_classes == 0 and conditional.num_classes == K
    assert not any("class" in key for key in unconditional.state_dict())
    extra = set(conditional.state_dict()) - set(unconditional.state_dict())
    assert extra == {"class_embedding.weight"} and set(unconditional.state_dict()) <= set(conditional.state_dict())
    width = 2 * 8 if architecture == "course" else 4 * 32
    assert conditional.class_embedding.weight.shape == (K + 1, width)
    with pytest.raises(ValueError, match="labels: this (UNet|DDPMUNet) is unconditional"):
        unconditional(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes must be an integer >= 0, got -1"):
        network(architecture, -1)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_labels_steer_the_output_and_row_k_is_the_null_label(architecture):
    """Every label gives its own output; labels=None is the null label K for every sample, so that changing row K
    changes the unlabelled output only."""
    net = network(architecture, K)
    x, t = torch.randn(1, 1, 8, 8).repeat(K + 1, 1, 1, 1), torch.full((K + 1,), 0.5)
    with torch.no_grad():
        out = net(x, t, torch.arange(K + 1))
        assert out.shape == x.shape
        assert all(not torch.allclose(out[i], out[j]) for i in range(K + 1) for j in range(i))
        assert torch.equal(net(x, t), net(x, t, torch.full((K + 1,), K)))
        net.class_embedding.weight[K] += 1.0
        changed = net(x, t, torch.arange(K + 1))
        assert torch.equal(changed[:K], out[:K]) and not torch.allclose(changed[K], out[K])
        assert torch.equal(net(x, t)[K], changed[K])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_sample_is_conditioned_on_its_own_label(architecture):
    """A batch of mixed labels and timesteps gives each sample what it gives alone."""
    net = network(architecture, K)
    x, t, labels = torch.randn(4, 1, 8, 8), torch.tensor([0.1, 0.4, 0.6, 0.9]), torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        batched = net(x, t, labels)
        for i in range(4):
            torch.testing.assert_close(batched[i:i + 1], net(x[i:i + 1], t[i:i + 1], labels[i:i + 1]),
                                       rtol=1e-4, atol=1e-5)


def write_class_folder(root, classes: dict[str, int], loose: int = 0) -> None:
    """`classes`: subfolder name -> number of 12x12 images in it (one of them a level deeper); `loose` images in
    `root` itself."""
    rng = np.random.default_rng(0)
    folders = [(root / name / ("deeper" if i == 0 else ""), i) for name, count in classes.items() for i in range(count)]
    for number, (folder, _) in enumerate(folders + [(root, i) for i in range(loose)]):
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"img{number}.png")


def test_a_folder_of_class_subfolders_is_labelled_as_imagefolder_labels_it(tmp_path):
    """Classes are the first-level subfolders sorted by name, at any depth below them; the labels follow the
    images' order and agree with torchvision's ImageFolder."""
    from torchvision.datasets import ImageFolder

    write_class_folder(tmp_path / "images", {"zebra": 2, "cat": 3, "dog": 1})
    dataset = check_dataset("folder", path=str(tmp_path / "images"), image_size=8)
    assert (dataset.num_classes, dataset.class_names) == (3, ("cat", "dog", "zebra"))
    info = prepare_dataset("folder", tmp_path / "out", path=tmp_path / "images", image_size=8)
    assert (info["labelled"], info["num_classes"], info["class_names"]) == (True, 3, ["cat", "dog", "zebra"])
    assert json.loads((tmp_path / "out" / "info.json").read_text()) == info
    images, labels = load_dataset(tmp_path / "out")
    reference = ImageFolder(str(tmp_path / "images"))
    assert reference.classes == list(dataset.class_names)
    by_file = {path: label for path, label in reference.samples}
    assert labels.tolist() == [by_file[str(file)] for file in dataset.files] and sorted(labels.tolist()) == [0, 0, 0, 1, 2, 2]
    assert images.shape == (6, 3, 8, 8)


def test_a_folder_with_loose_images_has_no_labels_and_drops_old_ones(tmp_path):
    write_class_folder(tmp_path / "images", {"cat": 2}, loose=0)
    prepare_dataset("folder", tmp_path / "out", path=tmp_path / "images", image_size=8)
    assert load_dataset(tmp_path / "out")[1].tolist() == [0, 0]
    write_class_folder(tmp_path / "images", {}, loose=1)
    dataset = check_dataset("folder", path=str(tmp_path / "images"), image_size=8)
    assert (dataset.num_classes, dataset.class_names) == (None, ())
    info = prepare_dataset("folder", tmp_path / "out", path=tmp_path / "images", image_size=8)
    assert (info["labelled"], info["num_classes"]) == (False, None) and "class_names" not in info
    assert load_dataset(tmp_path / "out")[1] is None


def test_the_builtin_datasets_have_ten_classes():
    assert check_dataset("digits").num_classes == check_dataset("cifar10").num_classes == 10


@pytest.mark.parametrize("classes, loose, found", [
    ({"cat": 2, "dog": 1}, 1, "has no class subfolders (some images lie in the folder itself)"),
    ({"cat": 2}, 0, "has one class subfolder (cat)"),
])
def test_a_class_conditional_config_is_refused_on_a_folder_without_classes(tmp_path, classes, loose, found):
    write_class_folder(tmp_path, classes, loose)
    dataset = check_dataset("folder", path=str(tmp_path), image_size=8)
    check_class_conditional(TrainConfig(), dataset)  # unconditional: any dataset
    with pytest.raises(ValueError, match="^class_conditional: true needs a labelled dataset of at least 2 classes") as error:
        check_class_conditional(TrainConfig(class_conditional=True), dataset)
    assert f"dataset 'folder' at {tmp_path} {found}: set class_conditional: false" in str(error.value)
    check_class_conditional(TrainConfig(class_conditional=True), check_dataset("digits"))


def test_the_new_fields_leave_an_unconditional_training_identity_as_it_was():
    """label_dropout applies only with class_conditional; both leave an unconditional config's identity (and so its
    resume states' fingerprint) as it was before they existed."""
    before = {k: v for k, v in TrainConfig().to_dict().items()
              if k not in ("class_conditional", "label_dropout", "init_from", "state_every", "keep_states",
                           "checkpoint_epochs")}
    assert TrainConfig().training_identity() == TrainConfig(label_dropout=0.3).training_identity() == before
    conditional = TrainConfig(class_conditional=True)
    assert conditional.training_identity() == {**before, "class_conditional": True}
    assert TrainConfig(class_conditional=True, label_dropout=0.3).training_identity() == \
        {**before, "class_conditional": True, "label_dropout": 0.3}
    assert conditional.applies("label_dropout") and not TrainConfig().applies("label_dropout")
    assert conditional.fingerprint() != TrainConfig().fingerprint()
    assert TrainConfig().fingerprint() == "14c3a1164f66a4a8"  # as before the fields existed: its resume states load


@pytest.mark.parametrize("num_classes", [0, 1, None])
def test_build_model_needs_two_classes_for_a_class_conditional_config(num_classes):
    with pytest.raises(ValueError, match=f"class_conditional: true needs num_classes >= 2 .*, got {num_classes}"):
        build_model(TrainConfig(hidden_size=8, class_conditional=True), 1, 8, num_classes)


def test_build_model_conditions_the_network_of_a_class_conditional_config_only():
    assert build_model(TrainConfig(hidden_size=8), 1, 8, 10).eps_model.num_classes == 0
    model = build_model(TrainConfig(hidden_size=8, class_conditional=True, label_dropout=0.2), 1, 8, 10)
    assert model.eps_model.num_classes == 10 and model.label_dropout == 0.2
    ddpm = build_model(TrainConfig(architecture="ddpm", hidden_size=32, channel_mult=[1], attention_resolutions=[],
                                   class_conditional=True), 1, 8, 4)
    assert ddpm.eps_model.num_classes == 4 and ddpm.label_dropout == 0.1


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The first 96 of scikit-learn's digits and their labels (all ten classes)."""
    root = tmp_path_factory.mktemp("labelled")
    prepare_dataset("digits", root)
    images, labels = load_dataset(root)
    assert set(labels[:96].tolist()) == set(range(10))
    return images[:96], labels[:96]


@pytest.mark.parametrize("world", [1, 2])
def test_each_batch_carries_the_labels_of_its_images(world):
    """Image i holds the pixel value i and label i mod 7: the labels of every batch of every rank follow its images
    through the epoch's order, the rank's shard and the flips."""
    images = torch.arange(64, dtype=torch.uint8)[:, None, None, None].expand(64, 1, 8, 8).contiguous()
    labels = torch.arange(64) % 7
    config = TrainConfig(hidden_size=8, batch_size=16, flip=True, device="cpu", gpus=world, class_conditional=True)
    for rank in range(world):
        batches = Batches(images, config, torch.device("cpu"), torch.contiguous_format, rank, world, labels)
        for step in range(8):  # two epochs
            index = ((batches(step)[:, 0, 0, 0] + 1) * 127.5).round().long()
            assert len(index) == 16 // world and torch.equal(batches.labels(step), index % 7)


def test_a_class_conditional_run_trains_on_the_labels_and_saves_a_conditional_checkpoint(labelled, tmp_path):
    """The checkpoint holds num_classes 10 and the class embedding, from which build_model rebuilds the network;
    other labels train another run."""
    images, labels = labelled
    config = tiny(class_conditional=True, epochs=1, checkpoint_epochs=[1])
    run_dir = run(config, images, tmp_path, "labels", labels)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "epoch_1.pt")
    assert checkpoint["num_classes"] == 10 and checkpoint["model"]["eps_model.class_embedding.weight"].shape == (11, 16)
    model = build_model(TrainConfig.from_dict(checkpoint["config"]), 1, 8, checkpoint["num_classes"])
    model.load_state_dict(checkpoint["ema"])
    assert model.eps_model.num_classes == 10
    shuffled = run(config, images, tmp_path, "shuffled", labels[torch.randperm(96, generator=torch.Generator().manual_seed(0))])
    assert read_csv(run_dir / "losses.csv", ("loss",)) != read_csv(shuffled / "losses.csv", ("loss",))


def test_a_class_conditional_run_resumes_bit_identically(labelled, tmp_path):
    """Stopped by a signal after the state of step 4 and run again: the loss rows and both checkpoints' weights are
    those of the run never stopped (the label dropout's draws are in the saved RNG state)."""
    images, labels = labelled
    config = tiny(class_conditional=True, label_dropout=0.5)
    reference = run(config, images, tmp_path, "reference", labels)
    interrupted(config, images, tmp_path, "stopped", after_state=4, labels=labels)
    messages = []
    train(config, images, tmp_path / "stopped", tmp_path / "state" / "stopped", log=messages.append, labels=labels)
    assert messages[0].startswith("resumed from step 5 ")
    assert read_csv(tmp_path / "stopped" / "losses.csv", DETERMINISTIC_COLUMNS) == \
        read_csv(reference / "losses.csv", DETERMINISTIC_COLUMNS)
    for epoch in (1, 2):
        first, second = (load_checkpoint(d / "checkpoints" / f"epoch_{epoch}.pt") for d in (reference, tmp_path / "stopped"))
        for part in ("model", "ema"):
            assert all(torch.equal(value, second[part][key]) for key, value in first[part].items()), (epoch, part)


def test_other_labels_do_not_resume_a_class_conditional_state(labelled, tmp_path):
    images, labels = labelled
    config = tiny(class_conditional=True, epochs=1, checkpoint_epochs=[1])
    interrupted(config, images, tmp_path, "run", after_state=4, labels=labels)
    messages = []
    train(config, images, tmp_path / "run", tmp_path / "state" / "run", log=messages.append,
          labels=labels.flip(0))
    assert "belongs to another config or dataset; starting from scratch" in messages[0]


def test_a_class_conditional_config_without_labels_is_refused_before_training(tmp_path, capsys):
    """By train() and by ddpm-train on a prepared folder whose images are not in class subfolders: one line naming
    class_conditional, and no file written."""
    from ddpm.launch import main

    write_class_folder(tmp_path / "images", {}, loose=2)
    prepare_dataset("folder", tmp_path / "data", path=tmp_path / "images", image_size=8, channels=1)
    images, labels = load_dataset(tmp_path / "data")
    assert labels is None
    config = tiny(class_conditional=True, batch_size=2)
    with pytest.raises(ValueError, match="^class_conditional: true needs the dataset's labels .*got none"):
        train(config, images, tmp_path / "run", tmp_path / "state")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.raises(ValueError, match="^class_conditional: true needs the dataset's labels"):
        main(["--config", str(tmp_path / "config.json"), "--data", str(tmp_path / "data"),
              "--run-dir", str(tmp_path / "run"), "--state-dir", str(tmp_path / "state")])
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists()
    with pytest.raises(ValueError, match=r"class_conditional: the labels must be int64 class indices >= 0, one per "
                                         r"image \(2\), got torch.int64 of shape \(3,\)"):
        train(config, images, tmp_path / "run", tmp_path / "state", labels=torch.tensor([0, 1, 1]))
