import csv
import os
import signal
import sys

import pytest
import torch

from ddpm.checkpoint import ResumeStore, load_checkpoint
from ddpm.config import TrainConfig
from ddpm.ema import EMA
from ddpm.optim import lr_factor
from ddpm.sampling import load_model, sample_checkpoint, sampler_arguments
from ddpm.run_files import CSV_COLUMNS
from ddpm.training import Batches, LogWindow, NonFiniteLossError, TrainingInterrupted, build_parts, train, training_step
from tests.conftest import DEVICES

DETERMINISTIC_COLUMNS = ("step", "epoch", "loss", "lr")
# inductor's C++ on the CPU: scalar kernels, and fewer fusions tried, compile several times faster, to the same maths
FAST_INDUCTOR = {"cpp.vec_isa_ok": False, "max_fusion_buffer_group_pairwise_attempts": 4,
                 "loop_ordering_after_fusion": False}


def tiny(**overrides):
    values = dict(hidden_size=8, num_timesteps=20, batch_size=16, epochs=2, lr=1e-3, checkpoint_epochs=[1, 2],
                  ema_decay=0.9, flip=True, state_every=4, device="cpu")
    return TrainConfig(**{**values, **overrides})


def read_csv(path, columns=CSV_COLUMNS):
    with open(path, newline="") as f:
        return [tuple(row[c] for c in columns) for row in csv.DictReader(f)]


def run(config, images, root, name="run", labels=None):
    train(config, images, root / name, root / "state" / name, log=lambda message: None, labels=labels)
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
    assert checkpoint["num_classes"] == 0  # unconditional
    assert ResumeStore(tmp_path / "state" / "run").steps()[-1] == 12  # the final state stays, to train on from it


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


@pytest.mark.parametrize("warmup_steps", [0, 3])
def test_cosine_lr_schedule_matches_torchs_cosine_annealing(warmup_steps):
    """lr_factor's cosine decay against PyTorch's own LinearLR warmup followed by CosineAnnealingLR (eta_min 0)."""
    total, lr = 20, 0.5
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup_steps)]
    if warmup_steps:
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps - 1)
        schedulers = [torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, *schedulers], milestones=[warmup_steps])]
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedulers[0].step()
    factor = lr_factor(warmup_steps, "cosine", total)
    assert [lr * factor(step) for step in range(total)] == pytest.approx(expected, abs=1e-12)
    assert lr_factor(warmup_steps, "constant", total)(total - 1) == 1.0


def test_cosine_lr_schedule_in_the_loss_csv(digits, tmp_path):
    """The lr column follows the schedule over the whole run and ends near 0."""
    config = tiny(epochs=2, warmup_steps=2, lr_schedule="cosine", checkpoint_epochs=[2])
    rows = read_csv(run(config, digits, tmp_path) / "losses.csv", ("step", "lr"))
    factor = lr_factor(2, "cosine", len(rows))
    assert [float(lr) for _, lr in rows] == pytest.approx([config.lr * factor(int(step) - 1) for step, _ in rows])
    assert float(rows[-1][1]) < 0.03 * config.lr  # 0.5 (1 + cos(pi 9/10)) of it, one step before 0


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


def test_sampler_arguments_follow_the_sampling_section():
    sampling = {"sampler": "ddim", "steps": 7, "eta": 0.5, "timestep_spacing": "trailing", "guidance": "cfg",
                "guidance_scale": 2.0}
    guided = {"timestep_spacing": "trailing", "guidance": "cfg", "guidance_scale": 2.0}
    assert sampler_arguments(sampling) == {"sampler": "ddim", "steps": 7, "eta": 0.5, **guided}
    assert sampler_arguments({**sampling, "sampler": "ancestral"}) == \
        {"sampler": "ancestral", "steps": None, "eta": 0.0, **guided}
    assert sampler_arguments({**sampling, "sampler": "dpm_solver"}) == \
        {"sampler": "dpm_solver", "steps": 7, "eta": 0.0, **guided}
    # guidance none leaves the scale unused (a sampling sweep over it keeps unguided experiments as the baseline)
    assert sampler_arguments({**sampling, "guidance": "none"})["guidance_scale"] == 1.0


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


def interrupted(config, images, root, name, after_state, signal_number=signal.SIGTERM, labels=None):
    """Train run `name` (on `labels` too, if given), sending this process `signal_number` right after the resume
    state of step `after_state` is written, as a time limit would; returns the TrainingInterrupted it ends with."""
    save = ResumeStore.save

    def save_then_signal(store, state, step):
        path = save(store, state, step)
        if step == after_state:
            os.kill(os.getpid(), signal_number)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResumeStore, "save", save_then_signal)
        with pytest.raises(TrainingInterrupted) as stopped:
            run(config, images, root, name, labels)
    return stopped.value


def test_a_signal_stops_at_the_next_row_saves_that_step_and_restores_the_handlers(digits, tmp_path):
    """SIGUSR1 after the state of step 4 stops training after step 5 (log_every 1): one more state, of step 5,
    and the CSV up to it; the handlers installed before train() are back afterwards."""
    handlers = {number: (lambda *_: None) for number in (signal.SIGTERM, signal.SIGUSR1)}
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    try:
        stopped = interrupted(tiny(), digits, tmp_path, "run", after_state=4, signal_number=signal.SIGUSR1)
        assert all(signal.getsignal(number) is handler for number, handler in handlers.items())
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert str(stopped).startswith("training interrupted by SIGUSR1 at step 5 (epoch 1); its resume state is saved in ")
    assert str(stopped).endswith("running the same command again resumes from step 5")
    state_dir = tmp_path / "state" / "run"
    assert ResumeStore(state_dir).steps() == [4, 5]
    assert [row[0] for row in read_csv(state_dir / "losses.csv", ("step",))] == [str(s) for s in range(1, 6)]
    assert not (tmp_path / "run").exists()


def test_ctrl_c_stops_like_a_time_limit(digits, tmp_path):
    """SIGINT (Ctrl-C) after the state of step 4: training finishes step 5, saves it and says so, instead of a
    KeyboardInterrupt that loses every step since the last state."""
    stopped = interrupted(tiny(), digits, tmp_path, "run", after_state=4, signal_number=signal.SIGINT)
    assert str(stopped).startswith("training interrupted by SIGINT at step 5 (epoch 1)")
    assert ResumeStore(tmp_path / "state" / "run").steps() == [4, 5]


def test_a_resume_state_outlives_a_change_of_the_checkpoint_epochs(digits, tmp_path):
    """Which epochs keep a checkpoint does not change what training computes: a state stopped at step 5 (epoch 1 of
    6 steps) resumes under new checkpoint epochs, bit-identical to a run that had them from the start. A state past
    an epoch whose checkpoint it never kept is refused, and training starts over."""
    reference = run(tiny(), digits, tmp_path, "reference")
    for name, after_state, expected in (("early", 4, "resumed from step 5"), ("late", 8, "is past epochs [1]")):
        interrupted(tiny(checkpoint_epochs=[2]), digits, tmp_path, name, after_state=after_state)
        messages = []
        train(tiny(), digits, tmp_path / name, tmp_path / "state" / name, log=messages.append)
        assert expected in messages[0], messages
        assert read_csv(tmp_path / name / "losses.csv", DETERMINISTIC_COLUMNS) == \
            read_csv(reference / "losses.csv", DETERMINISTIC_COLUMNS)
        for epoch in (1, 2):
            weights = [load_checkpoint(d / "checkpoints" / f"epoch_{epoch}.pt")["ema"] for d in (reference, tmp_path / name)]
            assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.fixture(scope="module")
def fp32(digits, tmp_path_factory):
    """An uninterrupted run with every fast-path switch off."""
    return run(tiny(epochs=4, checkpoint_epochs=[2, 4]), digits, tmp_path_factory.mktemp("fp32"))


SWITCHES = {"amp": dict(amp="on"), "channels_last": dict(channels_last="on"), "data_on_device": dict(data_on_device="on"),
            "compile": dict(compile=True)}


@pytest.fixture(scope="module", params=["amp", "channels_last", "data_on_device",
                                        pytest.param("compile", marks=pytest.mark.slow)])
def switched(request, digits, tmp_path_factory):
    """One fast-path switch `on` on the CPU: an uninterrupted run, and one stopped by SIGTERM after step 5 and rerun.

    Inductor generates scalar C++ kernels here and tries fewer fusions (FAST_INDUCTOR): they compile several times
    faster, and what is checked (learning, exact resume, sampling) does not depend on the kernels' instruction set
    or on which operations share a kernel."""
    from torch._inductor import config as inductor_config

    root = tmp_path_factory.mktemp(request.param)
    config = tiny(epochs=4, checkpoint_epochs=[2, 4], **SWITCHES[request.param])
    with inductor_config.patch(FAST_INDUCTOR):
        stopped = interrupted(config, digits, root, "resumed", after_state=4)
        run(config, digits, root, "resumed")
        return request.param, run(config, digits, root, "uninterrupted"), root / "resumed", stopped


def losses(run_dir):
    return torch.tensor([float(loss) for loss, in read_csv(run_dir / "losses.csv", ("loss",))])


def test_switch_on_the_cpu_learns_like_fp32(switched, fp32):
    """Step 1 (the same weights and draws) agrees to the switch's rounding: bf16 keeps 8 significant bits, NHWC
    only reorders fp32 sums, data_on_device changes nothing on the CPU. Later rows may drift by a few percent,
    because Adam's scale-free update turns rounding differences in tiny gradients into steps of up to lr. The
    compiled network draws t and noise with inductor's own generator, so there only the mean over the run agrees,
    to the sampling noise of a mean of 24 rows (rows scatter by a few percent)."""
    name, run_dir, _, _ = switched
    loss, reference = losses(run_dir), losses(fp32)
    assert loss.shape == reference.shape and torch.isfinite(loss).all()
    if name == "compile":
        assert loss.mean().item() == pytest.approx(reference.mean().item(), rel=0.03)  # measured: 0.07 %
    elif name == "data_on_device":
        assert torch.equal(loss, reference)
    else:
        assert loss[0].item() == pytest.approx(reference[0].item(), rel=1e-2 if name == "amp" else 1e-5)
        torch.testing.assert_close(loss, reference, rtol=0.05, atol=0)
        assert not torch.equal(loss, reference)  # the switch does change the computation on the CPU


def test_switch_on_the_cpu_resumes_bit_identically(switched):
    name, uninterrupted, resumed, stopped = switched
    assert "at step 5 " in str(stopped)
    assert read_csv(resumed / "losses.csv", DETERMINISTIC_COLUMNS) == read_csv(uninterrupted / "losses.csv", DETERMINISTIC_COLUMNS)
    for epoch in (2, 4):
        first, second = (load_checkpoint(d / "checkpoints" / f"epoch_{epoch}.pt") for d in (uninterrupted, resumed))
        for part in ("model", "ema"):
            assert all(torch.equal(value, second[part][key]) for key, value in first[part].items()), (name, epoch, part)


def test_switch_on_the_cpu_checkpoint_samples_also_in_bf16(switched):
    """The checkpoint of each switch samples; with amp the network runs in bf16 on the CPU too, which moves some
    pixels by a level or so of 255."""
    name, run_dir, _, _ = switched
    checkpoint = run_dir / "checkpoints" / "epoch_4.pt"
    fp32_samples = sample_checkpoint(checkpoint, 8, steps=5, seed=1, device="cpu")
    bf16_samples = sample_checkpoint(checkpoint, 8, steps=5, seed=1, device="cpu", amp=True)
    assert fp32_samples.shape == bf16_samples.shape == (8, 1, 8, 8) and bf16_samples.dtype == torch.uint8
    assert torch.equal(fp32_samples, sample_checkpoint(checkpoint, 8, steps=5, seed=1, device="cpu", amp=False))
    difference = (fp32_samples.int() - bf16_samples.int()).abs().float()
    assert 0 < difference.mean() <= 0.5 and difference.max() <= 3, name  # measured: 0.1 to 0.14, and 1


def test_a_training_step_makes_its_tensors_on_the_model_device(digits, monkeypatch):
    """The meta device stands in for a GPU (as in test_diffusion.py): every tensor of a step, the batch, the loss,
    the window's sum, the gradients, the lr, optimizer and EMA state, must be made on it, not on a default device.
    Without fused kernels there, Adam runs capturable, whose device check is told of meta. (SGD there would read its
    tensor lr on the host: CUDA and the CPU have fused kernels.)"""
    meta = torch.device("meta")
    adam = sys.modules[torch.optim.Adam.__module__]
    monkeypatch.setattr(adam, "_get_capturable_supported_devices", lambda **_: ["meta"])
    for optimizer in ("adam", "adamw"):
        config = tiny(optimizer=optimizer, channels_last="on", data_on_device="on", grad_clip=1.0)
        parts = build_parts(config, 1, 8, meta, total_steps=10)
        x = Batches(digits, config, meta, parts.memory_format)(0)
        window = LogWindow(meta, None, config.batch_size, 0, 10, 0.0)
        loss, _ = training_step(parts, x, 0)
        window.add(loss)
        assert x.device == loss.device == window.loss_sum.device == meta
        assert x.is_contiguous(memory_format=torch.channels_last)
        tensors = [*parts.model.parameters(), *(p.grad for p in parts.model.parameters()), *parts.ema.module.parameters(),
                   parts.lr, parts.ema.weight, *(v for state in parts.optimizer.state.values() for v in state.values())]
        assert all(t.device == meta for t in tensors)


def test_the_lr_tensor_holds_each_steps_lr_and_the_csv_writes_it(digits):
    """The optimizer reads its lr from one device tensor that every step overwrites from the schedule, and
    training_step returns the lr that step used: the warmup's (k + 1) / 4 of lr at step k."""
    config = tiny(warmup_steps=4, grad_clip=1.0)
    parts = build_parts(config, 1, 8, torch.device("cpu"), total_steps=10)
    batches = Batches(digits, config, torch.device("cpu"), parts.memory_format)
    for step in range(5):
        _, lr = training_step(parts, batches(step), step)
        assert lr == config.lr * min(1.0, (step + 1) / 4)
        assert all(group["lr"] is parts.lr for group in parts.optimizer.param_groups)
        assert parts.lr.item() == pytest.approx(lr)


def test_ema_warms_up_then_keeps_its_decay():
    """ema_n = d_n ema_{n-1} + (1 - d_n) w_n with d_n = min(decay, (1 + n) / (10 + n)), the first update a copy;
    checked against the same recurrence in float64 over weights that change every step. The buffers are copied."""
    decay = 0.95
    model = torch.nn.Linear(3, 1, bias=False)
    model.register_buffer("counter", torch.zeros(1))
    ema, expected = EMA(model, decay), None
    for n in range(300):  # the warm-up ends at n = 170, where (1 + n) / (10 + n) reaches 0.95
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[n, -2.0 * n, n % 7]]))
            model.counter.fill_(n)
        ema.set_step(n)
        ema.update()
        w = model.weight.detach().double()
        d = min(decay, (1 + n) / (10 + n))
        expected = w.clone() if n == 0 else d * expected + (1 - d) * w
        torch.testing.assert_close(ema.module.weight.double(), expected, rtol=1e-5, atol=1e-4)
        assert ema.module.counter.item() == n
    assert sorted(ema.module.state_dict()) == sorted(model.state_dict())  # a plain state dict of the model


def test_tensorboard_gets_every_loss_row(digits, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny(epochs=1, log_every=2, checkpoint_epochs=[1])
    train(config, digits, tmp_path / "run", tmp_path / "state", log=lambda message: None,
          tensorboard_dir=tmp_path / "tensorboard")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    rows = read_csv(tmp_path / "run" / "losses.csv", ("step", "loss", "lr"))
    assert [e.step for e in events.Scalars("loss")] == [int(step) for step, _, _ in rows]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([float(loss) for _, loss, _ in rows])
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([float(lr) for _, _, lr in rows])
    assert len(events.Scalars("images_per_second")) == len(rows)


def test_tensorboard_shows_one_curve_after_a_retrain_and_after_a_resume(digits, tmp_path):
    """A run with another lr first, in the same TensorBoard folder (a retrain); then this run, stopped by SIGTERM
    after the state of step 4 and resumed: TensorBoard holds each of this run's loss rows once, the resume step too."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board, config = tmp_path / "tensorboard", tiny(epochs=1, checkpoint_epochs=[1])
    train(tiny(epochs=1, checkpoint_epochs=[1], lr=2e-3), digits, tmp_path / "old", tmp_path / "state_old",
          log=lambda message: None, tensorboard_dir=board)
    save = ResumeStore.save

    def save_then_signal(store, state, step):
        path = save(store, state, step)
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResumeStore, "save", save_then_signal)
        with pytest.raises(TrainingInterrupted):
            train(config, digits, tmp_path / "run", tmp_path / "state", log=lambda message: None, tensorboard_dir=board)
    train(config, digits, tmp_path / "run", tmp_path / "state", log=lambda message: None, tensorboard_dir=board)
    events = EventAccumulator(str(board))
    events.Reload()
    rows = read_csv(tmp_path / "run" / "losses.csv", ("step", "loss"))
    assert [e.step for e in events.Scalars("loss")] == [int(step) for step, _ in rows]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([float(loss) for _, loss in rows])



def test_a_finished_run_extends_and_shortens_without_training_again(digits, tmp_path):
    """2 epochs, then the same call with 4: only epochs 3 and 4 are trained, and the result is bit-identical to a run
    asked for 4 from the start (loss rows, weights and EMA at every checkpoint). Then back to 2: nothing is
    trained, and the first 2 epochs are published. Under the cosine lr schedule, which depends on the total, the
    longer run starts over."""
    reference = run(tiny(epochs=4, checkpoint_epochs=[1, 2, 4]), digits, tmp_path, "reference")
    messages = []
    for epochs, checkpoints in ((2, [1, 2]), (4, [1, 2, 4])):
        train(tiny(epochs=epochs, checkpoint_epochs=checkpoints), digits, tmp_path / "run", tmp_path / "state",
              log=messages.append)
    assert messages == ["resumed from step 12 (epoch 3, " + messages[0].split("(epoch 3, ")[1]]
    assert read_csv(tmp_path / "run" / "losses.csv", DETERMINISTIC_COLUMNS) == \
        read_csv(reference / "losses.csv", DETERMINISTIC_COLUMNS)
    for epoch in (1, 2, 4):
        extended, whole = (load_checkpoint(d / "checkpoints" / f"epoch_{epoch}.pt") for d in (tmp_path / "run", reference))
        for part in ("model", "ema"):
            assert all(torch.equal(extended[part][k], whole[part][k]) for k in whole[part]), (epoch, part)

    shortened = train(tiny(epochs=2, checkpoint_epochs=[1, 2]), digits, tmp_path / "run", tmp_path / "state",
                      log=messages.append)
    assert messages[-1].endswith("its first 2 epochs are published, and nothing is trained")
    assert read_csv(tmp_path / "run" / "losses.csv", DETERMINISTIC_COLUMNS) == \
        read_csv(reference / "losses.csv", DETERMINISTIC_COLUMNS)[:12]
    ema = load_checkpoint(reference / "checkpoints" / "epoch_2.pt")["ema"]
    assert all(torch.equal(shortened.state_dict()[k], ema[k]) for k in ema)

    cosine = []
    for epochs in (2, 4):
        train(tiny(epochs=epochs, lr_schedule="cosine"), digits, tmp_path / "cosine", tmp_path / "state_cosine",
              log=cosine.append)
    assert cosine == [f"resume state in {tmp_path / 'state_cosine'} belongs to another config or dataset; "
                      "starting from scratch"]
