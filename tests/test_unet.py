import pytest
import torch

from ddpm.unet import UNet
from tests.conftest import DEVICES


def test_course_parameter_count():
    assert sum(p.numel() for p in UNet(3, 3, hidden_size=128).parameters()) == 11_349_635


@pytest.mark.parametrize("image_size", [8, 16, 32, 64, 128, 256])
def test_every_power_of_two_size(image_size):
    unet = UNet(1, 1, hidden_size=8, image_size=image_size)
    x = torch.randn(2, 1, image_size, image_size)
    assert unet(x, torch.rand(2)).shape == x.shape


@pytest.mark.parametrize("size", [32, 64, 128])
def test_default_model_takes_multiples_of_32_like_the_course(size):
    x = torch.randn(2, 3, size, size)
    assert UNet(3, 3, hidden_size=8)(x, torch.rand(2)).shape == x.shape


@pytest.mark.parametrize("hidden_size", [12, 0, -8, 8.0])
def test_hidden_size_groupnorm_cannot_divide(hidden_size):
    with pytest.raises(ValueError, match="hidden_size must be a positive multiple of 8"):
        UNet(3, 3, hidden_size=hidden_size)


def test_unsupported_image_size():
    with pytest.raises(ValueError, match=r"image_size must be one of \[8, 16, 32, 64, 128, 256\]"):
        UNet(3, 3, hidden_size=8, image_size=24)


def test_input_that_does_not_fit_the_bottleneck_names_the_fix():
    """A 16x16 input to the default (image_size=32) model: say what is wrong and which model would take it."""
    with pytest.raises(ValueError, match=r"multiple of 32; got \(16, 16\): build the UNet with image_size=16"):
        UNet(3, 3, hidden_size=8)(torch.randn(1, 3, 16, 16), torch.rand(1))


@pytest.mark.parametrize("shape", [(1, 3, 24, 24), (1, 3, 32, 16)])
def test_input_of_an_unsupported_size_names_the_supported_ones(shape):
    with pytest.raises(ValueError, match=r"got \(\d+, \d+\): images must be square with a side in \(8, 16, 32, 64, 128, 256\)"):
        UNet(3, 3, hidden_size=8)(torch.randn(shape), torch.rand(1))


@pytest.mark.parametrize("device", DEVICES)
def test_time_embedding_is_per_sample(device):
    """Homework bug 4: each sample's output depends on its own timestep only."""
    unet = UNet(3, 3, hidden_size=16).to(device)
    x = torch.randn(1, 3, 32, 32, device=device).repeat(3, 1, 1, 1)
    t = torch.tensor([0.1, 0.5, 0.9], device=device)
    # on CUDA, cuDNN picks other algorithms (TF32 by default) for a batch of 3 than for a batch of 1
    tolerance = dict(rtol=1e-4, atol=1e-5) if device == "cpu" else dict(rtol=1e-3, atol=1e-4)
    batched = unet(x, t)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], unet(x[i : i + 1], t[i : i + 1]), **tolerance)
    assert not torch.allclose(batched[0], batched[2], atol=1e-3)  # the timestep matters
    # a timestep given as (B, 1), as the course's sampler passes it, means the same
    torch.testing.assert_close(unet(x, t[:, None]), batched, **tolerance)


def test_public_api_names():
    import ddpm

    assert ddpm.UNet is UNet and ddpm.DiffusionModel.__name__ == "DiffusionModel"
    with pytest.raises(AttributeError):
        ddpm.NotAThing
