import pytest
import torch
import torch.nn as nn

from ddpm.checks import check_ddpm_unet
from ddpm.ddpm_unet import AttentionBlock, DDPMUNet, ResidualBlock
from ddpm.diffusion import DiffusionModel
from ddpm.sampling import generate

TINY = dict(hidden_size=32, image_size=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,))


def tiny_unet(channels: int = 1, **overrides) -> DDPMUNet:
    return DDPMUNet(channels, channels, **{**TINY, **overrides})


def randomised(unet: DDPMUNet) -> DDPMUNet:
    """Give the zero-initialised weights random values: at init the network outputs 0 whatever its input,
    which would let the tests below pass for any architecture."""
    with torch.no_grad():
        for parameter in unet.parameters():
            if parameter.dim() > 1 and not parameter.any():
                nn.init.xavier_uniform_(parameter)
    return unet


def test_paper_parameter_count():
    """Ho et al. (2020) report 35.7 M parameters for CIFAR-10; attention at 16x16 only, and in the middle."""
    with torch.device("meta"):
        unet = DDPMUNet(3, 3, hidden_size=128, image_size=32, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                        attention_resolutions=(16,), dropout=0.1)
    assert sum(p.numel() for p in unet.parameters()) == 35_746_307
    attention = [m for m in unet.modules() if isinstance(m, AttentionBlock)]
    assert [m.norm.num_channels for m in attention] == [256] * 6  # 2 down + 1 middle + 3 up
    assert (unet.in_channels, unet.out_channels, unet.hidden_size, unet.image_size) == (3, 3, 128, 32)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size, channel_mult", [
    (8, (1, 2)), (16, (1, 2, 2)), (32, (1, 2, 2, 2)), (64, (1, 2, 2, 2)), (128, (1, 1, 2, 2)), (256, (1, 1, 2, 2)),
])
def test_every_supported_size(channels, image_size, channel_mult):
    smallest = image_size // 2 ** (len(channel_mult) - 1)
    unet = tiny_unet(channels, image_size=image_size, channel_mult=channel_mult, attention_resolutions=(smallest,))
    x = torch.randn(1, channels, image_size, image_size)
    assert unet(x, torch.rand(1)).shape == x.shape


def test_input_of_another_size_is_refused():
    with pytest.raises(ValueError, match=r"image_size=8 takes 8x8 images; got \(16, 16\)"):
        tiny_unet()(torch.randn(1, 1, 16, 16), torch.rand(1))


def test_initialisation_starts_every_block_as_the_identity():
    """The paper's code zero-initialises the last conv of each residual block, each attention output and the
    output conv: every block passes its (shortcut) input through, and the network predicts eps = 0."""
    unet = tiny_unet(attention_resolutions=(8, 4))
    temb = torch.randn(2, 4 * unet.hidden_size)
    blocks = [m for m in unet.modules() if isinstance(m, ResidualBlock)]
    assert any(isinstance(b.attention, AttentionBlock) for b in blocks)
    for block in blocks:
        x = torch.randn(2, block.in_layers[0].num_channels, 4, 4)
        torch.testing.assert_close(block(x, temb), block.shortcut(x), rtol=0, atol=0)
    assert torch.count_nonzero(unet(torch.randn(2, 1, 8, 8), torch.rand(2))) == 0


def test_fused_qkv_is_initialised_1_over_sqrt2_narrower_than_the_papers_separate_layers():
    """Documented, pinned: Xavier-uniform on the fused C -> 3C qkv conv has std sqrt(2 / (C + 3C)), 1/sqrt(2) of
    the sqrt(2 / (C + C)) of the paper's code's separate C -> C q, k and v layers."""
    torch.manual_seed(0)
    unet = tiny_unet(hidden_size=64, attention_resolutions=(8, 4))
    blocks = [m for m in unet.modules() if isinstance(m, AttentionBlock)]
    assert {b.norm.num_channels for b in blocks} == {64, 128}
    for block in blocks:
        c = block.norm.num_channels
        separate = nn.init.xavier_uniform_(torch.empty(c, c, 1, 1))  # the paper's q, k or v layer
        for fused in block.qkv.weight.detach().chunk(3):  # q, k, v
            assert (fused.std() / separate.std()).item() == pytest.approx(2**-0.5, rel=0.03)
    assert "1/sqrt(2)" in " ".join(DDPMUNet.__doc__.split())


def test_time_embedding_is_per_sample():
    unet = randomised(tiny_unet()).eval()
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([0.1, 0.9])
    batched = unet(x, t)
    for i in range(2):
        torch.testing.assert_close(batched[i : i + 1], unet(x[i : i + 1], t[i : i + 1]), rtol=1e-4, atol=1e-5)
    same_x = x[:1].repeat(2, 1, 1, 1)
    different_t = unet(same_x, t)
    assert (different_t[0] - different_t[1]).abs().max() > 1e-2  # the timestep matters
    torch.testing.assert_close(unet(same_x, t[:, None]), different_t)  # (B, 1) means the same as (B,)


def test_dropout_only_in_training():
    unet = randomised(tiny_unet(dropout=0.5))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    unet.eval()
    torch.testing.assert_close(unet(x, t), unet(x, t), rtol=0, atol=0)
    unet.train()
    assert not torch.allclose(unet(x, t), unet(x, t))


def test_training_lowers_the_loss_on_a_fixed_batch():
    """Algorithm 1 with t and eps fixed: a few Adam steps on the freshly initialised network fit the batch."""
    model = DiffusionModel(tiny_unet(), num_timesteps=100)
    x0, noise, t = torch.randn(8, 1, 8, 8), torch.randn(8, 1, 8, 8), torch.randint(1, 101, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def eval_loss():
        model.eval()
        with torch.no_grad():
            return model(x0, t=t, noise=noise).item()

    before = eval_loss()
    assert before == pytest.approx((noise**2).mean().item())  # the untrained network predicts eps = 0
    for _ in range(10):
        model.train()
        optimizer.zero_grad()
        model(x0, t=t, noise=noise).backward()
        optimizer.step()
    assert eval_loss() < 0.7 * before


def test_bf16_autocast_on_cpu():
    unet = randomised(tiny_unet(3)).eval()
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    expected = unet(x, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = unet(x, t)
    assert actual.dtype == torch.bfloat16 and torch.isfinite(actual).all()
    assert ((actual.float() - expected).norm() / expected.norm()).item() < 0.05


@pytest.mark.slow
def test_torch_compile_matches_eager():
    """The whole forward is one graph, and inductor's CPU code computes what eager does.

    One level keeps the number of generated kernels small, and scalar C++ kernels compile several times
    faster than vectorised ones; neither changes what is checked here."""
    from torch._inductor import config as inductor_config

    unet = randomised(tiny_unet(image_size=4, channel_mult=(1,))).eval()
    x, t = torch.randn(2, 1, 4, 4), torch.rand(2)
    with inductor_config.patch({"cpp.vec_isa_ok": False}):
        compiled = torch.compile(unet, fullgraph=True)(x, t)
    torch.testing.assert_close(compiled, unet(x, t), rtol=1e-4, atol=1e-5)


def test_no_tensor_is_created_on_a_default_device():
    """On the meta device (a stand-in for a GPU), a tensor created without device= would raise."""
    model = DiffusionModel(tiny_unet(), num_timesteps=3).to("meta")
    x0 = torch.empty(2, 1, 8, 8, device="meta")
    assert model.eps_model(x0, torch.rand(2, device="meta")).device.type == "meta"
    assert model(x0).device.type == "meta"
    assert model.sample(2, (1, 8, 8), device="meta").device.type == "meta"
    assert model.sample(2, (1, 8, 8), device="meta", steps=2).device.type == "meta"


def test_sampling_reads_its_shape_from_the_network():
    images = generate(DiffusionModel(randomised(tiny_unet(3)).eval(), num_timesteps=2), 3, batch_size=2)
    assert images.shape == (3, 3, 8, 8) and images.dtype == torch.uint8


VALID = dict(hidden_size=32, image_size=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(16,),
             dropout=0.1)


@pytest.mark.parametrize("overrides, field, allowed", [
    (dict(hidden_size=48), "hidden_size", "positive multiple of 32"),
    (dict(hidden_size=0), "hidden_size", "positive multiple of 32"),
    (dict(hidden_size=32.0), "hidden_size", "positive multiple of 32"),
    (dict(image_size=2, channel_mult=(1,), attention_resolutions=()), "image_size", "integer >= 4"),
    (dict(channel_mult=()), "channel_mult", "non-empty list of positive integers"),
    (dict(channel_mult=(1, 0)), "channel_mult", "non-empty list of positive integers"),
    (dict(channel_mult=(1, 2.0)), "channel_mult", "non-empty list of positive integers"),
    (dict(image_size=8, channel_mult=(1, 2, 2), attention_resolutions=()), "channel_mult", "at most 2 levels"),
    (dict(image_size=36, channel_mult=(1, 2, 2, 2), attention_resolutions=()), "image_size",
     r"divisible by 2\*\*\(len\(channel_mult\) - 1\) = 8"),
    (dict(attention_resolutions=(8,)), "attention_resolutions", r"from \[32, 16\]"),
    (dict(attention_resolutions=16), "attention_resolutions", r"from \[32, 16\]"),
    (dict(num_res_blocks=0), "num_res_blocks", "integer >= 1"),
    (dict(dropout=1.0), "dropout", r"number in \[0, 1\)"),
    (dict(dropout=-0.1), "dropout", r"number in \[0, 1\)"),
])
def test_bad_settings_are_refused_naming_the_field(overrides, field, allowed):
    settings = {**VALID, **overrides}
    with pytest.raises(ValueError, match=rf"^{field} .*{allowed}"):
        check_ddpm_unet(**settings)
    with pytest.raises(ValueError, match=rf"^{field} "):
        DDPMUNet(3, 3, **settings)
