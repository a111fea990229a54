r"""Starting training: the command line, the torchrun launcher for several GPUs, and the process-wide settings
made once where a training process starts.

One GPU or CPU:   ddpm-train --config c.json --data data/cifar10 --run-dir results/x --state-dir results/resume/x
N GPUs, one node: torchrun --standalone --nproc_per_node=N --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
                      --shutdown-timeout=300 -m ddpm.launch --config c.json ...
(`ddpm-train` is `python -m ddpm.launch`; the workflow does this for an experiment with `gpus: N`, see
run_experiment and training_command)
The config is a JSON object of TrainConfig fields; `checkpoint_epochs` (a list of epochs) names the checkpoints
kept in run-dir/checkpoints/, the last epoch's when it is not given; a class_conditional config trains on the
prepared dataset's labels (labels.npy). A run stopped by SIGTERM, SIGUSR1 or SIGINT saves its resume state and exits
with code 75 (EX_TEMPFAIL, "try again"), saying so; the same command run again continues from that step.
`--init-from PATH` (or the config's init_from) starts step 0 from a checkpoint's or a diffusers UNet2DModel's weights;
weights that do not fit the network stop it before any step, in one line naming init_from and the tensor.
"""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ddpm.config import InitFromError, TrainConfig
from ddpm.data import load_dataset
from ddpm.files import atomic_write
from ddpm.models import resolve_device
from ddpm.training import INTERRUPTED_MESSAGE, TrainingInterrupted, signals_handled, train

INTERRUPTED_EXIT_CODE = os.EX_TEMPFAIL  # 75, sysexits.h: "a temporary failure; the user is invited to retry"
# torchrun passes SIGUSR1 on to its workers too, and gives them 5 minutes (not 30 s) to save before it kills them
TORCHRUN_OPTIONS = ("--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "--shutdown-timeout=300")


def init_distributed() -> None:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); no-op without torchrun."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def use_fast_cuda_kernels(device: torch.device) -> None:
    """On CUDA, TF32 matmuls and convolutions and cuDNN's autotuner, for the whole process."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def training_command(config_file: str | Path, data_dir: str | Path, run_dir: str | Path, state_dir: str | Path,
                     processes: int = 1, tensorboard_dir: str | Path | None = None) -> list[str]:
    """`python -m ddpm.launch ...`, under torchrun (with TORCHRUN_OPTIONS) when it runs in several processes."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *TORCHRUN_OPTIONS]
    return [*launcher, "-m", "ddpm.launch", *_arguments(config_file, data_dir, run_dir, state_dir, tensorboard_dir)]


def run_experiment(config: TrainConfig, data_dir: str | Path, run_dir: str | Path, state_dir: str | Path,
                   tensorboard_dir: str | Path | None = None) -> None:
    """Train one experiment: in this process, or with `config.gpus` processes under torchrun (DDP), whose
    output is copied into this process's sys.stdout (the job log). TrainingInterrupted when a signal stopped it,
    saying from which step the same call resumes. run_dir/train_config.json, which the processes read, is removed
    however training ends."""
    run_dir = Path(run_dir)
    config_file = atomic_write(run_dir / "train_config.json", lambda f: f.write(json.dumps(config.to_dict()).encode()))
    try:
        if config.gpus > 1:
            _run_copying_output(training_command(config_file, data_dir, run_dir, state_dir, config.gpus, tensorboard_dir))
        else:
            _train(_parser().parse_args(_arguments(config_file, data_dir, run_dir, state_dir, tensorboard_dir)))
    finally:
        config_file.unlink(missing_ok=True)


@contextlib.contextmanager
def exit_when_interrupted(*streams):
    """TrainingInterrupted in the block ends the process with INTERRUPTED_EXIT_CODE, its message (the step, where the
    state is, that the same command resumes) written to each of `streams`, and no traceback."""
    try:
        yield
    except TrainingInterrupted as interrupted:
        for stream in streams:
            print(interrupted, file=stream, flush=True)
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None


def _arguments(config_file, data_dir, run_dir, state_dir, tensorboard_dir=None) -> list[str]:
    arguments = ["--config", str(config_file), "--data", str(data_dir), "--run-dir", str(run_dir), "--state-dir", str(state_dir)]
    return arguments + (["--tensorboard-dir", str(tensorboard_dir)] if tensorboard_dir is not None else [])


def _run_copying_output(command: list[str]) -> None:
    """Run `command`, copying its stdout and stderr into sys.stdout as they come (progress bars included)
    and passing SIGTERM, SIGUSR1 and SIGINT on to it; TrainingInterrupted, with the message of the processes, if
    a signal stopped them, else CalledProcessError if it fails."""
    interrupted = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        with signals_handled(process.send_signal):
            for line in io.TextIOWrapper(process.stdout, errors="replace", newline=""):  # "\r" ends a line too
                sys.stdout.write(line)
                sys.stdout.flush()
                if line.startswith(INTERRUPTED_MESSAGE):
                    interrupted = line.strip()
    if process.returncode and interrupted:
        raise TrainingInterrupted(interrupted)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)


def main(argv: list[str] | None = None) -> None:
    """ddpm-train --config C.json --data DIR --run-dir DIR --state-dir DIR (what torchrun runs)."""
    parser = _parser()
    args = parser.parse_args(argv)
    with exit_when_interrupted(sys.stderr):
        try:
            _train(args)
        except InitFromError as error:  # before any training step
            parser.error(str(error))


def _parser():
    import argparse

    parser = argparse.ArgumentParser(prog="ddpm-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a JSON file of TrainConfig fields")
    parser.add_argument("--data", required=True, help="a prepared dataset folder (ddpm.data.prepare_dataset)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--tensorboard-dir", help="write TensorBoard event files of the loss rows there")
    parser.add_argument("--init-from", metavar="PATH", help="start from these weights (the config's init_from): an "
                        "epoch checkpoint (its EMA weights when kept) or a diffusers folder of a UNet2DModel")
    return parser


def _train(args) -> None:
    """Train as the parsed command line says, in this process (one of torchrun's, or the only one)."""
    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    if not config.checkpoint_epochs:
        config = dataclasses.replace(config, checkpoint_epochs=[config.epochs])
    if args.init_from is not None:
        config = dataclasses.replace(config, init_from=args.init_from)
    init_distributed()
    use_fast_cuda_kernels(resolve_device(config.device))
    try:
        images, labels = load_dataset(args.data)
        train(config, images, args.run_dir, args.state_dir, log=lambda m: print(m, flush=True),
              tensorboard_dir=args.tensorboard_dir, labels=labels)
        if not dist.is_initialized() or dist.get_rank() == 0:  # which writes them
            checkpoints = ", ".join(f"epoch_{epoch}.pt" for epoch in config.checkpoint_epochs)
            print(f"wrote {Path(args.run_dir) / 'losses.csv'} and, in {Path(args.run_dir) / 'checkpoints'}, {checkpoints}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
