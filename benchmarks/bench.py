"""Speed benchmark: the project's training loop, samplers and data path against the homework baseline.

    python benchmarks/bench.py --device cuda --out results/bench.json                # CIFAR-shaped default
    python benchmarks/bench.py --device cuda --preset ddpm-cifar10 --out results/bench_ddpm.json  # the paper's UNet
    python benchmarks/bench.py --device cpu --preset digits --threads 1 --steps 20 --repeats 7 \
        --sample-steps 10 --out results/bench_digits_cpu.json                        # about 2 minutes
    python benchmarks/bench.py --device cpu --threads 1 --steps 1 --repeats 3 --sample-steps 1 \
        --out results/bench_cifar_cpu.json                                           # about 10 minutes

Training: the project side is the real `ddpm.training.train`, called once per repeat for two epochs of
`--steps` steps each over synthetic uint8 images (steps x batch of them); its first epoch is warm-up and the
time of the second is read from the loss CSV it writes (log_every = one epoch; no resume states). The
baseline is the homework loop on the same images and the same network (`--architecture`: the course UNet or
the paper's): fp32, torch.optim.Adam, a DataLoader over PIL images with per-item ToTensor + Normalize,
loss.item() every step; one warm-up epoch, then one timed epoch per repeat. Project and baseline repeats
alternate, so load on a shared machine hits both alike.

Sampling: `ddpm.sampling.generate` (bf16 on CUDA) with the ancestral sampler over all T timesteps and with
DDIM over `--ddim-steps`, at equal batch. With `--sample-steps K` only K reverse steps of each are timed
and the time of a full run is extrapolated as (time of K steps) x (full steps) / K; the output says so.

Batch size and compilation as levers: the project's training at each of `--batch-sizes` (default: the batch,
twice and four times it), eager and with `compile: true` (`--modes`), one run each (its second epoch timed), with
its MFU and peak GPU memory. On CUDA the best of them is held against the network's target (TARGETS) and DDIM
against ancestral sampling against SAMPLING_TARGET; when one is missed, or with `--profile`, torch.profiler's
table of the top kernels of the best configuration follows (by CUDA time; by CPU time on the CPU).

Every other number is a median over `--repeats`, after warm-up. MFU = training FLOPs per image (forward +
backward, counted by FlopCounterMode) x images/s / the GPU's dense bf16 peak; n/a off the table's GPUs.
"""

import argparse
import contextlib
import csv
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from ddpm.config import TrainConfig
from ddpm.diffusion import DiffusionModel
from ddpm.files import atomic_write
from ddpm.sampling import generate
from ddpm.launch import use_fast_cuda_kernels
from ddpm.models import build_model, resolve_device
from ddpm.training import Batches, build_parts, train, training_step

PRESETS = {
    "cifar": dict(channels=3, image_size=32, hidden_size=128, batch_size=128, architecture="course"),  # the course model
    "ddpm-cifar10": dict(channels=3, image_size=32, hidden_size=128, batch_size=128, architecture="ddpm"),  # the paper's model
    "digits": dict(channels=1, image_size=8, hidden_size=32, batch_size=64, architecture="course"),  # the default digits model
}
ARCHITECTURES = ("course", "ddpm")
# the DDPM paper's CIFAR-10 network (Ho et al. 2020, Appendix B) as TrainConfig fields, with `hidden_size` 128
PAPER_UNET = dict(channel_mult=[1, 2, 2, 2], num_res_blocks=2, attention_resolutions=[16], dropout=0.1)
PEAK_BF16_FLOPS = (("H100 SXM", 989e12), ("H100 80GB HBM3", 989e12), ("H200", 989e12), ("A100", 312e12))
MODES = ("eager", "compiled")
TARGETS = {"course": 10_000, "ddpm": 6_000}  # training images/s at bf16 on an H100 or H200, CIFAR-10 shapes
SAMPLING_TARGET = 15  # DDIM over ancestral images/s, at the same batch
PROFILED_STEPS = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", default="benchmarks/results/bench.json", help="where the JSON goes")
    parser.add_argument("--preset", default="cifar", choices=tuple(PRESETS), help="sizes the flags below override")
    parser.add_argument("--architecture", choices=ARCHITECTURES,
                        help="the network: the course UNet or the DDPM paper's at its CIFAR-10 settings (default: the preset's)")
    parser.add_argument("--channels", type=int, choices=(1, 3))
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--hidden-size", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=50, help="training steps per timed epoch")
    parser.add_argument("--num-timesteps", type=int, default=1000, help="diffusion timesteps T")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--sample-steps", type=int, help="reverse steps timed per sampler (default: full runs)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loader-workers", type=int, default=0, help="baseline DataLoader workers")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batch-sizes", type=_int_list, help="training batches, eager and compiled (default: the "
                        "batch, twice and four times it)")
    parser.add_argument("--modes", type=_mode_list, default=list(MODES), help="comma-separated: eager, compiled")
    parser.add_argument("--profile", action="store_true", help="torch.profiler's top kernels of the best training "
                        "configuration, also when the targets are met")
    args = parser.parse_args(argv)
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.batch_sizes = args.batch_sizes or [args.batch_size * k for k in (1, 2, 4)]
    if args.ddim_steps > args.num_timesteps:
        parser.error(f"--ddim-steps ({args.ddim_steps}) must not exceed --num-timesteps ({args.num_timesteps})")
    if min(args.steps, args.repeats, args.ddim_steps, args.sample_steps or 1, *args.batch_sizes) < 1:
        parser.error("--steps, --repeats, --ddim-steps, --sample-steps and --batch-sizes must be >= 1")
    return args


def _int_list(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def _mode_list(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",")]
    if not modes or not set(modes) <= set(MODES):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(MODES)}")
    return modes


def network_fields(architecture: str) -> dict:
    """TrainConfig's network fields: none for the course UNet (TrainConfig's default network), the paper's
    CIFAR-10 settings for its UNet."""
    return {} if architecture == "course" else {"architecture": architecture, **PAPER_UNET}


def project_config(args, device: torch.device, batch_size: int | None = None, mode: str = "eager") -> TrainConfig:
    """TrainConfig defaults (EMA, auto amp/channels_last/data_on_device) at the benchmark's sizes and network,
    compiled in mode "compiled".

    AdamW with weight_decay 0 is Adam's update; make_optimizer fuses it (eager) or lets inductor fuse it."""
    return TrainConfig(
        hidden_size=args.hidden_size, num_timesteps=args.num_timesteps, batch_size=batch_size or args.batch_size,
        optimizer="adamw", epochs=2, device=device.type, compile=mode == "compiled",
        log_every=args.steps, state_every=2 * args.steps + 1, **network_fields(args.architecture),
    )


def synthetic_images(args, batch_size: int) -> torch.Tensor:
    """`--steps` batches of seeded uint8 noise images: one epoch."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (args.steps * batch_size, args.channels, args.image_size, args.image_size),
                         dtype=torch.uint8, generator=generator)


# ---------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds `fn()` takes, with the device idle before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def training_process_flags(device: torch.device):
    """TF32 and cudnn.benchmark on CUDA, as a training process sets them when it starts (ddpm.launch), put back
    afterwards: the homework loop runs without them."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    use_fast_cuda_kernels(device)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


# ---------------------------------------------------------------- the baseline: homework data and loop


class PILImages(Dataset):
    """torchvision-style: HWC uint8 array in memory, a PIL image per item, then the transform."""

    def __init__(self, images: torch.Tensor):
        self.data = images.permute(0, 2, 3, 1).numpy()
        self.data = self.data[..., 0] if self.data.shape[-1] == 1 else self.data  # mode L for one channel
        channels = images.shape[1]
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * channels, (0.5,) * channels)])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.data[index]))


def baseline_loader(images: torch.Tensor, args) -> DataLoader:
    return DataLoader(PILImages(images), batch_size=args.batch_size, shuffle=True, drop_last=True,
                      num_workers=args.loader_workers)


def baseline_epoch(model, optimizer, loader, device: torch.device) -> None:
    for x in loader:
        x = x.to(device)
        optimizer.zero_grad()
        loss = model(x)
        loss.backward()
        loss.item()  # the homework logs every step's loss
        optimizer.step()


def baseline_loader_epoch(loader, device: torch.device) -> None:
    for x in loader:
        x.to(device)


# ---------------------------------------------------------------- the project


def project_train_images_per_second(config: TrainConfig, images: torch.Tensor) -> float:
    """images/s of the second (timed) epoch of a real two-epoch train() run, from its loss CSV.

    One CSV row per epoch; the epoch's seconds are the difference of the elapsed_seconds column (to the
    microsecond), finer than its images_per_second column (0.1 images/s) when a CPU manages a few images/s."""
    with tempfile.TemporaryDirectory() as tmp, training_process_flags(resolve_device(config.device)):
        train(config, images, Path(tmp) / "run", Path(tmp) / "state", log=lambda message: None)
        with (Path(tmp) / "run" / "losses.csv").open(newline="") as f:
            warmup, timed_epoch = list(csv.DictReader(f))
    seconds = float(timed_epoch["elapsed_seconds"]) - float(warmup["elapsed_seconds"])
    return len(images) // config.batch_size * config.batch_size / seconds


def project_data_epoch(batches: Batches, epoch: int) -> None:
    """train()'s per-step batch path (ddpm.training.Batches) for one epoch, from 0: shuffled order, gather, to the
    device, scale to [-1, 1]."""
    for step in range(epoch * batches.steps_per_epoch, (epoch + 1) * batches.steps_per_epoch):
        batches(step)


# ---------------------------------------------------------------- the measurements


def median_rate(count: int, seconds: list[float]) -> float:
    return count / statistics.median(seconds)


def bench_training(args, config: TrainConfig, images: torch.Tensor, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = build_model(config, args.channels, args.image_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loader = baseline_loader(images, args)
    model.train()
    baseline_epoch(model, optimizer, loader, device)  # warm-up
    project, baseline = [], []
    for _ in range(args.repeats):
        baseline.append(timed(lambda: baseline_epoch(model, optimizer, loader, device), device))
        project.append(project_train_images_per_second(config, images))
    baseline_rate = median_rate(len(images), baseline)
    project_rate = statistics.median(project)
    return {"project_images_per_second": project_rate, "baseline_images_per_second": baseline_rate,
            "ratio": project_rate / baseline_rate, "project_repeats_images_per_second": project,
            "baseline_repeats_seconds": baseline, "images_per_epoch": len(images)}


def bench_data_path(args, config: TrainConfig, images: torch.Tensor, device: torch.device) -> dict:
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format  # channels_last: auto
    batches = Batches(images, config, device, memory_format)  # data_on_device 'auto': the data on the GPU
    loader = baseline_loader(images, args)
    project_data_epoch(batches, 0)  # warm-up
    baseline_loader_epoch(loader, device)
    project, baseline = [], []
    for repeat in range(args.repeats):
        project.append(timed(lambda: project_data_epoch(batches, repeat + 1), device))
        baseline.append(timed(lambda: baseline_loader_epoch(loader, device), device))
    project_rate, baseline_rate = median_rate(len(images), project), median_rate(len(images), baseline)
    return {"project_images_per_second": project_rate, "baseline_images_per_second": baseline_rate,
            "ratio": project_rate / baseline_rate, "project_repeats_seconds": project,
            "baseline_repeats_seconds": baseline}


def bench_sampling(args, config: TrainConfig, device: torch.device) -> dict:
    """Ancestral over T vs DDIM over ddim_steps, timing `sample_steps` reverse steps of each if given."""
    model = build_model(config, args.channels, args.image_size).to(device).eval()
    ancestral_timed = min(args.sample_steps or args.num_timesteps, args.num_timesteps)
    ddim_timed = min(args.sample_steps or args.ddim_steps, args.ddim_steps)
    # a model over `ancestral_timed` timesteps runs exactly that many ancestral steps with the same network
    ancestral_model = DiffusionModel(model.eps_model, model.betas, ancestral_timed).to(device).eval()
    runs = {"ancestral": lambda: generate(ancestral_model, args.batch_size, None, batch_size=args.batch_size, device=device),
            "ddim": lambda: generate(model, args.batch_size, ddim_timed, batch_size=args.batch_size, device=device)}
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats + 1):  # the first round is warm-up
        for name, run in runs.items():
            seconds[name].append(timed(run, device))
    full = {"ancestral": (ancestral_timed, args.num_timesteps), "ddim": (ddim_timed, args.ddim_steps)}
    extrapolated = ancestral_timed < args.num_timesteps or ddim_timed < args.ddim_steps
    result = {"batch_size": args.batch_size, "extrapolated": extrapolated}
    for name, (measured, steps) in full.items():
        run_seconds = statistics.median(seconds[name][1:]) * steps / measured
        result[name] = {"steps": steps, "timed_steps": measured, "repeats_seconds": seconds[name][1:],
                        "seconds_per_run": run_seconds, "images_per_second": args.batch_size / run_seconds}
    result["ratio"] = result["ddim"]["images_per_second"] / result["ancestral"]["images_per_second"]
    return result


def bench_levers(args, device: torch.device, flops_per_image: float, peak: float | None) -> list[dict]:
    """The project's training at each batch size, eager and compiled: images/s of one run's second epoch, MFU, peak
    GPU memory."""
    rows = []
    for mode in args.modes:
        for batch_size in args.batch_sizes:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            rate = project_train_images_per_second(project_config(args, device, batch_size, mode),
                                                   synthetic_images(args, batch_size))
            memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
            rows.append({"mode": mode, "batch_size": batch_size, "images_per_second": rate,
                         "mfu": flops_per_image * rate / peak if peak else None, "peak_memory_bytes": memory})
    return rows


def check_targets(args, device: torch.device, levers: list[dict], sampling: dict) -> dict:
    """The best training row against TARGETS and the sampling ratio against SAMPLING_TARGET; judged on CUDA only."""
    best = max(levers, key=lambda row: row["images_per_second"])
    training_met = sampling_met = None
    if device.type == "cuda":
        training_met = best["images_per_second"] >= TARGETS[args.architecture]
        sampling_met = sampling["ratio"] >= SAMPLING_TARGET
    return {"training_target": TARGETS[args.architecture], "best": best, "training_met": training_met,
            "sampling_target": SAMPLING_TARGET, "sampling_met": sampling_met}


def profile_training(config: TrainConfig, images: torch.Tensor, device: torch.device) -> str:
    """torch.profiler's table of the top kernels over PROFILED_STEPS training steps after 3 warm-up ones (compiling,
    recording CUDA graphs), by CUDA time on a GPU, by CPU time on the CPU."""
    cuda = device.type == "cuda"
    with training_process_flags(device):
        parts = build_parts(config, images.shape[1], images.shape[-1], device, total_steps=PROFILED_STEPS + 3)
        batches = Batches(images, config, device, parts.memory_format)
        for step in range(3):
            training_step(parts, batches(step), step)
        with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as profiler:
            for step in range(3, PROFILED_STEPS + 3):
                training_step(parts, batches(step), step)
            synchronize(device)
    return profiler.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=15)


def train_flops_per_image(args, config: TrainConfig) -> float:
    """Matmul and convolution FLOPs of one training forward + backward, per image (batch of 2 on the CPU)."""
    model = build_model(config, args.channels, args.image_size)
    x = torch.zeros(2, args.channels, args.image_size, args.image_size)
    with FlopCounterMode(display=False) as counter:
        model(x).backward()
    return counter.get_total_flops() / 2


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    return models[0] if models else platform.processor() or platform.machine()


# ---------------------------------------------------------------- output


def fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def format_table(results: dict) -> str:
    """The results as the benchmark prints them: a line on the device and the network, then a row per measure."""
    train_, data, sampling, flops = results["training"], results["data_path"], results["sampling"], results["flops"]
    how = (f"{sampling['ancestral']['timed_steps']} and {sampling['ddim']['timed_steps']} steps timed, extrapolated"
           if sampling["extrapolated"] else "full runs")
    rows = [
        ("measure", "project", "baseline", "ratio"),
        ("training images/s", train_["project_images_per_second"], train_["baseline_images_per_second"], train_["ratio"]),
        ("data path images/s", data["project_images_per_second"], data["baseline_images_per_second"], data["ratio"]),
        ("training MFU (bf16 peak)", flops["project_mfu"], flops["baseline_mfu"], None),
        ("", f"DDIM-{sampling['ddim']['steps']}", f"ancestral-{sampling['ancestral']['steps']}", ""),
        (f"sampling images/s ({how})", sampling["ddim"]["images_per_second"],
         sampling["ancestral"]["images_per_second"], sampling["ratio"]),
    ]
    device, args = results["device"], results["config"]["args"]
    memory = f", peak GPU memory {device['peak_memory_bytes'] / 2**30:.2f} GiB" if device["peak_memory_bytes"] else ""
    lines = [f"{device['name']} ({device['type']}), torch {device['torch']}, {args['architecture']} UNet "
             f"(hidden_size {args['hidden_size']}, {args['channels']}x{args['image_size']}x{args['image_size']}, "
             f"batch {args['batch_size']}), training FLOPs/image {flops['train_flops_per_image']:.4g}{memory}"]
    for row in rows:
        cells = [cell if isinstance(cell, str) else fmt(cell) for cell in row]
        lines.append(f"{cells[0]:<52}{cells[1]:>14}{cells[2]:>16}{cells[3]:>8}")
    lines.append(f"{'training, the levers: mode':<30}{'batch':>8}{'images/s':>14}{'MFU':>8}{'peak GPU GiB':>14}")
    for row in results["levers"]:
        mfu = "n/a" if row["mfu"] is None else f"{row['mfu']:.1%}"
        memory = "n/a" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**30:.2f}"
        lines.append(f"{row['mode']:<30}{row['batch_size']:>8}{fmt(row['images_per_second']):>14}{mfu:>8}{memory:>14}")
    lines += target_lines(results["targets"], sampling)
    if results["profile"]:
        best = results["targets"]["best"]
        lines += [f"torch.profiler, {best['mode']} at batch {best['batch_size']}, {PROFILED_STEPS} steps:", results["profile"]]
    return "\n".join(lines)


def target_lines(targets: dict, sampling: dict) -> list[str]:
    """One line per target: met, MISSED, or not judged (off CUDA)."""
    def verdict(met):
        return "not judged off CUDA" if met is None else "met" if met else "MISSED"

    best = targets["best"]
    mfu = "" if best["mfu"] is None else f", MFU {best['mfu']:.1%}"
    return [f"target: training >= {targets['training_target']:,} images/s: best {fmt(best['images_per_second'])} "
            f"({best['mode']}, batch {best['batch_size']}{mfu}): {verdict(targets['training_met'])}",
            f"target: DDIM-{sampling['ddim']['steps']} >= {targets['sampling_target']}x ancestral-"
            f"{sampling['ancestral']['steps']}: {sampling['ratio']:.3g}x: {verdict(targets['sampling_met'])}"]




def print_table(results: dict) -> None:
    print(format_table(results))


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = project_config(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    images = synthetic_images(args, args.batch_size)
    flops_per_image, peak = train_flops_per_image(args, config), peak_flops(device)
    results = {
        "device": {"type": device.type, "name": device_name(device), "torch": torch.__version__,
                   "cpu_threads": torch.get_num_threads(), "peak_bf16_flops": peak},
        "config": {"args": vars(args), "project_train_config": config.to_dict()},
        "training": bench_training(args, config, images, device),
        "data_path": bench_data_path(args, config, images, device),
        "sampling": bench_sampling(args, config, device),
    }
    mfu = {side: flops_per_image * results["training"][f"{side}_images_per_second"] / peak if peak else None
           for side in ("project", "baseline")}
    results["flops"] = {"train_flops_per_image": flops_per_image, "project_mfu": mfu["project"],
                        "baseline_mfu": mfu["baseline"]}
    results["device"]["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    results["levers"] = bench_levers(args, device, flops_per_image, peak)
    results["targets"] = check_targets(args, device, results["levers"], results["sampling"])
    missed = False in (results["targets"]["training_met"], results["targets"]["sampling_met"])
    best, results["profile"] = results["targets"]["best"], None
    if args.profile or missed:
        results["profile"] = profile_training(project_config(args, device, best["batch_size"], best["mode"]),
                                              synthetic_images(args, best["batch_size"]), device)
    print_table(results)
    write_json(results, args.out)
    return results


def write_json(results: dict, path: str | Path) -> None:
    """The benchmark's results as indented JSON, written atomically; says where."""
    out = atomic_write(path, lambda f: f.write(json.dumps(results, indent=2).encode()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
