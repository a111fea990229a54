"""The training step with `compile: true`: compiled regions that trace without a graph break, the optimizer and
the EMA inside one, the same losses and weights as eager for the same batches, t and noise; on CUDA, no host sync
between two loss rows, eager or compiled.

One compiled run is shared by the CPU tests (inductor compiles C++ there, slowly): a course UNet of hidden_size 16
on 8x8 digits, 3 steps."""

import pytest
import torch
from torch._inductor import config as inductor_config

from ddpm.config import TrainConfig
from ddpm.training import Batches, LogWindow, build_parts, training_step, weight_update
from tests.test_training import FAST_INDUCTOR

# SGD with momentum: Adam's first steps are scale-free (about lr times the gradient's sign), so rounding in a gradient
# near 0 moves a weight by up to 2 lr, which hides what is compared; Adam's compiled update is traced below
CONFIG = dict(hidden_size=16, num_timesteps=20, batch_size=8, optimizer="sgd", lr=0.05, warmup_steps=2, grad_clip=1.0,
              ema_decay=0.9, flip=True, device="cpu")
STEPS = 3


def steps(parts, batches, draws):
    """STEPS training steps on the given t and noise; their losses and lrs."""
    results = [training_step(parts, batches(step), step, *draws[step]) for step in range(STEPS)]
    return torch.stack([loss for loss, _ in results]), [lr for _, lr in results]


@pytest.fixture(scope="module")
def runs(digits):
    """The same STEPS steps, eager and compiled (the parts, their losses and lrs), from the same weights, on the same
    batches (flips included), t and noise."""
    generator = torch.Generator().manual_seed(1)
    draws = [(torch.randint(1, CONFIG["num_timesteps"] + 1, (CONFIG["batch_size"],), generator=generator),
              torch.randn(CONFIG["batch_size"], 1, 8, 8, generator=generator)) for _ in range(STEPS)]
    results = {}
    with inductor_config.patch(FAST_INDUCTOR):
        for compiled in (False, True):
            config = TrainConfig(**CONFIG, compile=compiled)
            parts = build_parts(config, 1, 8, torch.device("cpu"), total_steps=10)
            results[compiled] = (parts, *steps(parts, Batches(digits, config, torch.device("cpu"), parts.memory_format),
                                               draws))
    return results


def test_the_compiled_step_computes_what_the_eager_one_does(runs):
    """The losses agree to fp32 rounding (inductor orders sums its own way), and so do the weights, EMA and momentum
    after 3 steps, to the rounding the network magnifies: its GroupNorm over 2 channels of 1x1 pixels in the
    bottleneck makes eager runs on one thread and on two differ by up to 5.5e-5 in the weights; the steps moved the
    weights by 0.019, over a hundred times the tolerance. The lr follows the warmup in both."""
    (eager, eager_losses, eager_lrs), (compiled, compiled_losses, compiled_lrs) = runs[False], runs[True]
    assert eager_lrs == compiled_lrs == [0.025, 0.05, 0.05]
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=1e-5, atol=1e-6)
    close = dict(rtol=1e-3, atol=1e-4)
    weights, averaged = eager.model.state_dict(), eager.ema.module.state_dict()
    for name, value in compiled.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], **close)
        torch.testing.assert_close(compiled.ema.module.state_dict()[name], averaged[name], **close)
    for first, second in zip(eager.optimizer.state.values(), compiled.optimizer.state.values()):  # gradients: / lr
        torch.testing.assert_close(second["momentum_buffer"], first["momentum_buffer"], rtol=0, atol=close["atol"] / 0.05)
    initial = build_parts(TrainConfig(**CONFIG), 1, 8, torch.device("cpu"), total_steps=10).model.state_dict()
    assert max((weights[name] - value).abs().max() for name, value in initial.items()) > 100 * close["atol"]
    assert all((averaged[name] - value).abs().max() > 0 for name, value in initial.items() if value.is_floating_point()
               and name in dict(eager.model.named_parameters()))  # the EMA moved too


def test_each_compiled_region_traces_as_one_graph_holding_the_optimizer_and_the_ema(runs, digits):
    """The network's forward and loss, and the update (clipping, Adam, EMA), each trace into one graph without a
    break; the update's graph holds Adam's moment updates, the EMA's and its buffer copies. (The update compiled
    in the run has fullgraph=True, so the run itself would have failed on a break.)"""
    assert isinstance(runs[True][0].forward, torch._dynamo.eval_frame.OptimizedModule)
    config = TrainConfig(**{**CONFIG, "optimizer": "adam"}, compile=True)
    parts = build_parts(config, 1, 8, torch.device("cpu"), total_steps=10)
    x = Batches(digits, config, torch.device("cpu"), parts.memory_format)(0)
    parts.model(x).backward()
    forward = torch._dynamo.explain(parts.model)(x)
    assert (forward.graph_count, forward.graph_break_count) == (1, 0), forward.break_reasons
    update = torch._dynamo.explain(weight_update(parts.model, parts.optimizer, parts.ema, 1.0, compiled=True))()
    assert (update.graph_count, update.graph_break_count) == (1, 0), update.break_reasons
    ops = {getattr(op, "__name__", str(op)) for op in update.ops_per_graph[0]}
    assert {"_foreach_norm", "_foreach_lerp_", "_foreach_addcdiv_", "_foreach_mul_", "_foreach_copy_"} <= ops, ops


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager-cuda", "compiled-cuda"])
def test_no_host_sync_between_loss_rows_on_cuda(digits, compiled):
    """Steps 3 to 14 (across an epoch's end: a new order) under torch.cuda.set_sync_debug_mode("error"), which
    raises on any host sync: none in a step, with bf16, channels_last, the data on the GPU, flips, warmup, clipping,
    EMA, compiled as CUDA graphs or not. The first 3 steps compile, record the graphs and warm up."""
    cuda = torch.device("cuda")
    config = TrainConfig(**{**CONFIG, "device": "cuda"}, compile=compiled)
    parts = build_parts(config, 1, 8, cuda, total_steps=30)
    batches, window = Batches(digits, config, cuda, parts.memory_format), LogWindow(cuda, None, 8, 0, 30, 0.0)
    for step in range(15):
        if step == 3:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            window.add(training_step(parts, batches(step), step)[0])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert window.sync(stop_requested=False)[0] > 0
