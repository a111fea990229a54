"""Quality per CPU-second: the project's recipe against a stock diffusers DDPM on 8x8 digits, in one run.

    python -m benchmarks.quality --experiment ddpm --budgets 60 180 --threads 1 --clock cpu   # ~75 min on one core
    python -m benchmarks.quality --config my.yaml --experiment big --budgets 300 --out results/quality.json

(from the repository root; needs the `bench` extra: diffusers.)

For each budget B (seconds of training), in order, alternating so that load on a shared machine hits both alike:

1. Project: the recipe is the config's `defaults` plus the experiment's overrides, resolved as the workflow
   resolves them (schema defaults, then ddpm.experiments.experiment_configs), on the CPU. One epoch of it is timed
   first (calibration, not counted); then `ddpm.training.train` runs from scratch for round(B / that) epochs,
   and its training seconds are the loss CSV's last `elapsed_seconds` (saving excluded); a class_conditional
   recipe trains on the digits' labels. `--num-samples` images are then drawn with `ddpm.sampling.generate` from
   the EMA weights, with the config's `sampling` sampler, steps, eta, guidance and batch size (class-balanced for
   a class-conditional recipe), once per sampling draw.
2. Peer: the recipe of diffusers' examples/unconditional_image_generation/train_unconditional.py at 8x8x1: a
   UNet2DModel with block_out_channels (w, 2w, 2w), `--peer-layers` ResNet layers per block and self-attention at
   4x4 (the example puts it at its second-deepest level), DDPMScheduler(1000 steps), epsilon MSE, AdamW(betas
   (0.95, 0.999), weight decay 1e-6), a cosine learning rate with `--peer-warmup-steps` of warmup from
   diffusers.optimization.get_scheduler, gradient clipping at 1.0, EMAModel with the example's warmup (inv_gamma 1,
   power 3/4), batch 64 in a fresh random order every epoch, sampled with DDIMScheduler over 50 steps from the EMA
   weights (diffusers' DDIMPipeline), once per sampling draw. What a diffusers user tunes for their own run is
   swept at every budget, and the best FID is the peer's: the beta schedule (`--peer-schedules`: linear,
   squaredcos_cap_v2), the lr (`--peer-lrs`), the EMA's maximum decay (`--peer-ema-decays`) and, on each trained
   model, DDIM's eta (`--peer-etas`). Each variant trains for the budget itself (a time-bounded loop that stops
   within half a step of it); the cosine lr schedule's length is the step count the budget allows at the peer's
   speed, timed first over a few throwaway steps (not counted). The sweep's table is printed. `--reuse-peer JSON`
   takes the peer's sweep from an earlier run's JSON with the same budgets, clock, threads, seed, sweep and
   sampling seeds (the peer does not depend on the project's recipe), so that trying project recipes does not train
   the peer again.

A budget counts wall seconds (`--clock wall`, the default: the loss CSV's `elapsed_seconds`), or, with `--clock
cpu`, the CPU seconds of this process (for the project, of its whole train() call), which keeps the two sides
even on a machine that other jobs share; both are recorded either way. Both sides run at
`torch.set_num_threads(--threads)`. Scores are the project's classifier FID (ddpm.metrics: a
small CNN trained once per run on the digits' labels, with `--seed`; 128-d features) of the samples against
all 1,797 digits. Both sides draw at the config's sampling seeds (`sampling.seed`, seed + 1, ... for its
`draws`, as the workflow does), and a side's FID is the mean over those draws, with its standard error. The
target is project FID <= 0.6 x the best peer FID at every budget. (The best of a sweep, scored on the draws it
was chosen by, is biased in the peer's favour.)

Seeds: the project trains with its recipe's `seed`, as the workflow would; `--seed` seeds the peer's training
(weights, noise, order) and the classifier. Training to a time bound is not
bit-reproducible (the step count follows the machine's speed), but reruns start from the same state.
"""

import argparse
import copy
import csv
import dataclasses
import itertools
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from benchmarks.bench import device_name, fmt, write_json
from ddpm.config import TrainConfig
from ddpm.data import load_dataset, prepare_dataset, to_model_range, to_uint8
from ddpm.dataset_info import check_dataset
from ddpm.experiments import expand_runs, experiment_configs
from ddpm.extractors import extract_features, load_extractor, train_classifier
from ddpm.metrics import feature_statistics, frechet_distance, mean_and_standard_error, reference_statistics
from ddpm.sampling import generate, sampler_arguments
from ddpm.training import train

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "config" / "schema.yaml"
TARGET_RATIO = 0.6  # project FID <= TARGET_RATIO x peer FID
PEER_SCHEDULES = ("linear", "squaredcos_cap_v2")  # DDPMScheduler's beta_schedule: Ho et al.'s, Nichol & Dhariwal's
PEER_CALIBRATION_STEPS = 8  # timed peer steps (after one warm-up step) that size the cosine schedule
# the clock that budgets training: wall seconds (the loss CSV's elapsed_seconds) or this process's CPU seconds
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
BUDGET_KEY = {"wall": "train_seconds", "cpu": "train_cpu_seconds"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"), help="the workflow config")
    parser.add_argument("--experiment", help="experiment of the config (default: the first)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 180.0], help="training seconds per side")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both sides")
    parser.add_argument("--clock", default="wall", choices=tuple(CLOCKS),
                        help="what a budget counts: wall seconds, or CPU seconds of this process (fairer on a busy "
                             "machine)")
    parser.add_argument("--num-samples", type=int, default=1000, help="images each side draws for FID")
    parser.add_argument("--seed", type=int, default=0, help="seeds the peer and the FID classifier")
    parser.add_argument("--classifier-epochs", type=int, default=10, help="FID classifier epochs (the workflow's 10)")
    parser.add_argument("--peer-width", type=int, default=20, help="UNet2DModel block_out_channels (w, 2w, 2w)")
    parser.add_argument("--peer-layers", type=int, default=2, help="UNet2DModel layers_per_block (the example's 2)")
    parser.add_argument("--peer-schedules", nargs="+", default=list(PEER_SCHEDULES), choices=PEER_SCHEDULES,
                        help="the peer's beta schedules to sweep")
    parser.add_argument("--peer-lrs", type=float, nargs="+", default=[2e-3, 8e-3],
                        help="the peer's AdamW learning rates to sweep (the example's 1e-4 leaves the model untrained "
                             "in a CPU minute)")
    parser.add_argument("--peer-ema-decays", type=float, nargs="+", default=[0.995, 0.9999],
                        help="the peer's EMA maximum decays to sweep (the example: 0.9999)")
    parser.add_argument("--peer-etas", type=float, nargs="+", default=[0.0, 1.0], help="DDIM etas to sweep")
    parser.add_argument("--peer-warmup-steps", type=int, default=50, help="peer lr warmup (the example: 500)")
    parser.add_argument("--reuse-peer", help="a JSON of an earlier run whose peer sweep to take instead of training")
    parser.add_argument("--peer-batch-size", type=int, default=64)
    parser.add_argument("--peer-ddim-steps", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/quality.json", help="where the JSON goes")
    args = parser.parse_args(argv)
    if min(args.budgets) <= 0:
        parser.error(f"--budgets must be > 0 seconds, got {args.budgets}")
    for name in ("threads", "classifier_epochs", "peer_layers", "peer_batch_size", "peer_ddim_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_samples < 2:
        parser.error(f"--num-samples must be >= 2 (FID needs a covariance), got {args.num_samples}")
    if args.peer_width < 8 or args.peer_width % 4:
        parser.error(f"--peer-width must be a multiple of 4 and >= 8 (GroupNorm, 8-channel attention heads), "
                     f"got {args.peer_width}")
    if args.peer_warmup_steps < 0 or min(args.peer_lrs) <= 0:
        parser.error("--peer-warmup-steps must be >= 0 and every --peer-lrs > 0")
    if not all(0 < decay < 1 for decay in args.peer_ema_decays) or not all(0 <= eta <= 1 for eta in args.peer_etas):
        parser.error("--peer-ema-decays must be in (0, 1) and --peer-etas in [0, 1]")
    return args


def load_recipe(config_path: str | Path, experiment: str | None) -> tuple[str, TrainConfig, dict]:
    """(experiment name, its TrainConfig on the CPU, its sampling section), resolved as the Snakefile does: the
    schema's defaults filled in by Snakemake's validate(), then ddpm.experiments.experiment_configs, and the
    experiment's own `sampling` over the config's (ddpm.experiments.expand_runs). Autoguidance is refused: its guide
    is another trained checkpoint, which this benchmark does not train."""
    from snakemake.utils import validate

    with open(config_path) as f:
        workflow_config = yaml.safe_load(f)
    validate(workflow_config, str(SCHEMA))
    if workflow_config["dataset"]["name"] != "digits":
        raise ValueError(f"{config_path}: dataset.name must be 'digits' for this benchmark, "
                         f"got {workflow_config['dataset']['name']!r}")
    dataset = check_dataset(**workflow_config["dataset"])
    configs = experiment_configs(workflow_config, dataset)
    name = experiment if experiment is not None else next(iter(configs))
    if name not in configs:
        raise ValueError(f"--experiment must be one of {list(configs)} (the experiments of {config_path}), "
                         f"got {name!r}")
    sampling = next(run.sampling for run in expand_runs(workflow_config, dataset).values() if run.parent == name)
    if sampling["guidance"] == "auto":
        raise ValueError(f"experiment {name!r} of {config_path}: sampling.guidance must be 'none' or 'cfg' for this "
                         f"benchmark, got 'auto' (its guide is another checkpoint, which the benchmark does not train)")
    return name, dataclasses.replace(configs[name], device="cpu"), sampling


# ---------------------------------------------------------------- FID


class ClassifierFID:
    """The project's classifier FID against the whole dataset: the classifier is trained once, seeded."""

    def __init__(self, data_dir: Path, work_dir: Path, seed: int, epochs: int):
        start = time.perf_counter()
        classifier = train_classifier(data_dir, work_dir / "classifier.pt", epochs=epochs, seed=seed, device="cpu",
                                      log=lambda message: None)
        self.reference = reference_statistics(data_dir, work_dir / "reference.pt", "classifier",
                                              work_dir / "classifier.pt", device="cpu", log=lambda message: None)
        self.extractor = load_extractor("classifier", work_dir / "classifier.pt")
        self.info = {"val_accuracy": classifier["val_accuracy"], "epochs": epochs, "seed": seed,
                     "num_reference": self.reference["num_images"], "seconds": time.perf_counter() - start}

    def __call__(self, samples: torch.Tensor) -> float:
        """FID of uint8 samples (N, C, H, W) against the reference statistics."""
        return frechet_distance(feature_statistics(extract_features(self.extractor, samples)), self.reference)


def sampling_seeds(sampling: dict) -> list[int]:
    """The seeds of the config's sampling draws, as the workflow draws them: seed, seed + 1, ... (`draws` of them)."""
    return [sampling["seed"] + draw for draw in range(sampling["draws"])]


def score_draws(draw, seeds: list[int], fid: ClassifierFID) -> dict:
    """The FID of each seed's samples (`draw(seed)`: uint8 images), their mean and its standard error
    (ddpm.metrics.mean_and_standard_error), and the wall seconds of all the drawing."""
    start = time.perf_counter()
    scores = [{"fid": fid(draw(seed))} for seed in seeds]
    return {"sample_seconds": time.perf_counter() - start, "fid_draws": [score["fid"] for score in scores],
            **mean_and_standard_error(scores)}


# ---------------------------------------------------------------- the project


def train_project(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None,
                  work_dir: Path) -> tuple[torch.nn.Module, dict]:
    """A real train() run; returns the model (EMA weights) and its parameters, steps, training seconds and final
    loss."""
    cpu_start = time.process_time()
    model = train(config, images, work_dir / "run", work_dir / "state", log=lambda message: None, labels=labels)
    cpu_seconds = time.process_time() - cpu_start
    with (work_dir / "run" / "losses.csv").open(newline="") as f:
        last = list(csv.DictReader(f))[-1]
    return model, {"parameters": sum(p.numel() for p in model.parameters()), "epochs": config.epochs,
                   "steps": int(last["step"]), "train_seconds": float(last["elapsed_seconds"]),
                   "train_cpu_seconds": cpu_seconds, "final_loss": float(last["loss"])}


def run_project(config: TrainConfig, sampling: dict, images: torch.Tensor, labels: torch.Tensor | None, budget: float,
                num_samples: int, fid: ClassifierFID, clock: str) -> dict:
    """Calibrate the epoch time with a one-epoch run, train for about `budget` seconds of `clock`, then sample and
    score each sampling draw."""
    with tempfile.TemporaryDirectory() as tmp:
        _, calibration = train_project(dataclasses.replace(config, epochs=1, checkpoint_epochs=[]), images, labels,
                                       Path(tmp) / "calibration")
        epochs = max(1, round(budget / calibration[BUDGET_KEY[clock]]))
        model, result = train_project(dataclasses.replace(config, epochs=epochs, checkpoint_epochs=[]), images, labels,
                                      Path(tmp) / "budget")
    model.eval()
    result.update(score_draws(lambda seed: generate(model, num_samples, seed=seed, batch_size=sampling["batch_size"],
                                                    device="cpu", progress=False, **sampler_arguments(sampling)),
                              sampling_seeds(sampling), fid))
    result["calibration_epoch_seconds"] = calibration[BUDGET_KEY[clock]]
    return result


# ---------------------------------------------------------------- the peer: diffusers' example recipe


def peer_unet(width: int, layers: int, channels: int, image_size: int):
    """UNet2DModel for small images, shaped like the example's (attention at the second-deepest level)."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels, layers_per_block=layers,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=math.gcd(32, width),  # the example's 32 groups where the width allows
    )


class PeerTrainer:
    """train_unconditional.py's loop, in memory: one optimisation step at a time, with the `recipe`'s beta
    schedule, lr and EMA maximum decay."""

    def __init__(self, unet, images: torch.Tensor, args, recipe: dict, num_training_steps: int):
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        self.unet, self.data, self.batch_size = unet, to_model_range(images), args.peer_batch_size  # ToTensor+Normalize
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule=recipe["schedule"])
        self.optimizer = torch.optim.AdamW(unet.parameters(), lr=recipe["lr"], betas=(0.95, 0.999), weight_decay=1e-6,
                                           eps=1e-8)
        self.lr_scheduler = get_scheduler("cosine", optimizer=self.optimizer, num_warmup_steps=args.peer_warmup_steps,
                                          num_training_steps=num_training_steps)
        self.num_training_steps = num_training_steps
        self.ema = EMAModel(unet.parameters(), decay=recipe["ema_decay"], use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
        self.order = torch.Generator().manual_seed(args.seed)
        self.batches, self.steps = iter(()), 0

    def next_batch(self) -> torch.Tensor:
        """The next batch of a random order, redrawn every epoch (DataLoader(shuffle=True))."""
        index = next(self.batches, None)
        if index is None:
            self.batches = iter(torch.randperm(len(self.data), generator=self.order).split(self.batch_size))
            index = next(self.batches)
        return self.data[index]

    def step(self) -> torch.Tensor:
        """Noise at t ~ U{0..999}, epsilon MSE, clip to norm 1, AdamW, the lr schedule, EMA; returns the loss."""
        clean = self.next_batch()
        noise = torch.randn(clean.shape)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (clean.shape[0],)).long()
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        loss = F.mse_loss(self.unet(noisy, timesteps).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        if self.steps < self.num_training_steps:  # past its end, the cosine would climb again
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.unet.parameters())
        self.steps += 1
        return loss.detach()


def peer_step_seconds(unet, images: torch.Tensor, args, recipe: dict) -> float:
    """Median seconds (of --clock) of one peer step, on a throwaway copy of the model (the calibration)."""
    trainer = PeerTrainer(copy.deepcopy(unet), images, args, recipe, num_training_steps=PEER_CALIBRATION_STEPS + 1)
    trainer.step()  # warm-up
    clock, seconds = CLOCKS[args.clock], []
    for _ in range(PEER_CALIBRATION_STEPS):
        start = clock()
        trainer.step()
        seconds.append(clock() - start)
    return statistics.median(seconds)


def sample_peer(unet, noise_scheduler, num_samples: int, batch_size: int, ddim_steps: int, seed: int,
                eta: float) -> torch.Tensor:
    """uint8 samples (N, C, H, W) from diffusers' DDIMPipeline over `ddim_steps` steps with noise `eta`."""
    from diffusers import DDIMPipeline, DDIMScheduler

    pipeline = DDIMPipeline(unet=unet.eval(), scheduler=DDIMScheduler.from_config(noise_scheduler.config))
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for first in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - first)
        images = pipeline(batch_size=count, generator=generator, eta=eta, num_inference_steps=ddim_steps,
                          output_type="pt").images  # (N, C, H, W) in [0, 1]
        batches.append(to_uint8(images * 2 - 1))
    return torch.cat(batches)


def run_peer(images: torch.Tensor, seconds: float, sampling: dict, args, fid, recipe: dict) -> list[dict]:
    """Train the peer with `recipe` for `seconds` of --clock (stopping within half a step of them), then sample
    from its EMA at each of --peer-etas, at each of the sampling draws' seeds, and score: one result per eta."""
    torch.manual_seed(args.seed)
    unet = peer_unet(args.peer_width, args.peer_layers, images.shape[1], images.shape[-1])
    step_seconds = peer_step_seconds(unet, images, args, recipe)
    torch.manual_seed(args.seed + 1)  # the same noise however long the calibration ran
    trainer = PeerTrainer(unet, images, args, recipe, num_training_steps=max(1, round(seconds / step_seconds)))
    unet.train()
    clock, loss = CLOCKS[args.clock], None
    start = {name: timer() for name, timer in CLOCKS.items()}
    elapsed = 0.0
    while elapsed + 0.5 * (elapsed / trainer.steps if trainer.steps else 0.0) < seconds:
        loss = trainer.step()
        elapsed = clock() - start[args.clock]
    trained = {**recipe, "steps": trainer.steps, "planned_steps": trainer.num_training_steps,
               "calibration_step_seconds": step_seconds, "train_seconds": time.perf_counter() - start["wall"],
               "train_cpu_seconds": time.process_time() - start["cpu"], "final_loss": loss.item()}
    trainer.ema.copy_to(unet.parameters())
    return [{**trained, "eta": eta,
             **score_draws(lambda seed: sample_peer(unet, trainer.noise_scheduler, args.num_samples,
                                                    sampling["batch_size"], args.peer_ddim_steps, seed, eta),
                           sampling_seeds(sampling), fid)}
            for eta in args.peer_etas]


def peer_sweep(images: torch.Tensor, seconds: float, sampling: dict, args, fid) -> list[dict]:
    """Every variant of the peer's sweep (schedules x lrs x EMA decays, each sampled at every eta), in order."""
    rows = []
    for schedule, lr, ema_decay in itertools.product(args.peer_schedules, args.peer_lrs, args.peer_ema_decays):
        rows += run_peer(images, seconds, sampling, args, fid, {"schedule": schedule, "lr": lr, "ema_decay": ema_decay})
    return rows


def reused_peer_sweeps(path: str, args, seeds: list[int]) -> dict[float, list[dict]]:
    """budget -> peer sweep, from an earlier run's JSON that ran the same peer at the same sampling `seeds` (else a
    SystemExit naming what differs)."""
    earlier = json.loads(Path(path).read_text())
    if earlier.get("sampling_seeds") != seeds:
        raise SystemExit(f"--reuse-peer {path}: its peer drew at sampling seeds {earlier.get('sampling_seeds')}, "
                         f"this config's are {seeds}")
    same = ("budgets", "clock", "threads", "seed", "num_samples", "classifier_epochs", "peer_width", "peer_layers",
            "peer_schedules", "peer_lrs", "peer_ema_decays", "peer_etas", "peer_warmup_steps", "peer_batch_size",
            "peer_ddim_steps")
    differ = [name for name in same if earlier["args"][name] != vars(args)[name]]
    if differ:
        raise SystemExit(f"--reuse-peer {path}: its peer ran with other {', '.join('--' + d.replace('_', '-') for d in differ)}")
    return {row["budget_seconds"]: row["peer_sweep"] for row in earlier["budgets"]}


def peer_recipe(args, unet) -> dict:
    """What the peer ran with, for the JSON; each sweep row names its schedule, lr, EMA decay and eta."""
    return {"unet": dict(unet.config), "noise_scheduler": "DDPMScheduler(num_train_timesteps=1000)",
            "optimizer": {"name": "AdamW", "betas": [0.95, 0.999], "weight_decay": 1e-6, "eps": 1e-8},
            "lr_schedule": {"name": "cosine", "warmup_steps": args.peer_warmup_steps}, "grad_clip": 1.0,
            "ema": {"use_ema_warmup": True, "inv_gamma": 1.0, "power": 0.75},
            "batch_size": args.peer_batch_size, "sampler": f"DDIMScheduler, {args.peer_ddim_steps} steps"}


# ---------------------------------------------------------------- output


def fid_cell(result: dict) -> str:
    """A side's FID: the draws' mean ± its standard error (the mean alone from one draw)."""
    error = result["fid_sampling_se"]
    return fmt(result["fid"]) + (f" ± {fmt(error)}" if error is not None else "")


def print_sweep(rows: list[dict]) -> None:
    """The peer's sweep at every budget, best first."""
    print("the peer's sweep (classifier FID, best first at each budget):")
    columns = (("budget s", 9), ("schedule", 19), ("lr", 8), ("EMA", 8), ("eta", 5), ("steps", 7), ("FID", 15))
    print("".join(f"{name:>{width}}" for name, width in columns))
    for row in rows:
        for variant in sorted(row["peer_sweep"], key=lambda v: v["fid"]):
            cells = [fmt(row["budget_seconds"]), variant["schedule"], f"{variant['lr']:g}", f"{variant['ema_decay']:g}",
                     f"{variant['eta']:g}", str(variant["steps"]), fid_cell(variant)]
            print("".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns)))


def print_table(results: dict) -> None:
    print_sweep(results["budgets"])
    params = results["parameters"]
    print(f"{results['device']['name']}, {results['device']['threads']} thread(s), torch {results['device']['torch']}, "
          f"diffusers {results['device']['diffusers']}; load average {results['device']['load_average_start']} "
          f"at the start, {results['device']['load_average_end']} at the end")
    print(f"project: {results['recipe']['experiment']} ({params['project']:,} parameters); "
          f"peer: diffusers UNet2DModel ({params['peer']:,} parameters); classifier FID, "
          f"{results['num_samples']} samples per draw vs {results['classifier']['num_reference']} images, "
          f"draws at sampling seeds {results['sampling_seeds']}: their mean ± its standard error")
    print(f"budgets in {results['clock']} seconds of training; each pair is project / the best peer of the sweep")
    columns = (("budget s", 9), ("project FID", 16), ("peer FID", 16), ("ratio", 7), ("train wall s", 17),
               ("train CPU s", 17), ("sample wall s", 17), ("steps", 13))
    print("".join(f"{name:>{width}}" for name, width in columns))
    for row in results["budgets"]:
        project, peer = row["project"], row["peer"]
        pairs = [f"{fmt(project[key])} / {fmt(peer[key])}"
                 for key in ("train_seconds", "train_cpu_seconds", "sample_seconds")]
        cells = [fmt(row["budget_seconds"]), fid_cell(project), fid_cell(peer), fmt(row["ratio"]), *pairs,
                 f"{project['steps']} / {peer['steps']}"]
        print("".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns)))
    verdict = "met" if results["target_met"] else "NOT met"
    print(f"target project FID <= {TARGET_RATIO} x the best peer FID at every budget: {verdict}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        import diffusers
    except ImportError as error:
        raise SystemExit("the peer needs diffusers: pip install -e '.[bench]'") from error
    experiment, config, sampling = load_recipe(args.config, args.experiment)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        prepare_dataset("digits", Path(tmp) / "digits")
        images, labels = load_dataset(Path(tmp) / "digits")
        fid = ClassifierFID(Path(tmp) / "digits", Path(tmp), args.seed, args.classifier_epochs)
    seeds = sampling_seeds(sampling)
    reused = reused_peer_sweeps(args.reuse_peer, args, seeds) if args.reuse_peer else {}
    rows = []
    for budget in args.budgets:
        load = [round(x, 2) for x in os.getloadavg()]
        project = run_project(config, sampling, images, labels, budget, args.num_samples, fid, args.clock)
        sweep = reused[budget] if budget in reused else peer_sweep(images, budget, sampling, args, fid)
        peer = min(sweep, key=lambda variant: variant["fid"])
        rows.append({"budget_seconds": budget, "load_average_start": load, "project": project, "peer": peer,
                     "peer_sweep": sweep, "peer_reused": budget in reused, "ratio": project["fid"] / peer["fid"]})
        print(f"budget {budget:g} s: project FID {project['fid']:.2f}, best peer FID {peer['fid']:.2f}", flush=True)

    peer = peer_unet(args.peer_width, args.peer_layers, images.shape[1], images.shape[-1])
    results = {
        "device": {"name": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "diffusers": diffusers.__version__,
                   "load_average_start": [round(x, 2) for x in load_start],
                   "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "args": vars(args),
        "clock": args.clock,
        "recipe": {"experiment": experiment, "train_config": config.to_dict(), "sampling": sampling},
        "peer_recipe": peer_recipe(args, peer),
        "parameters": {"project": rows[0]["project"]["parameters"], "peer": sum(p.numel() for p in peer.parameters())},
        "classifier": fid.info,
        "num_samples": args.num_samples,
        "sampling_seeds": seeds,
        "budgets": rows,
        "target_ratio": TARGET_RATIO,
        "target_met": all(row["ratio"] <= TARGET_RATIO for row in rows),
    }
    print_table(results)
    write_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
