"""Multi-process training with DistributedDataParallel: 2 CPU processes under torchrun (gloo)."""

import contextlib
import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from ddpm.checkpoint import ResumeStore, load_checkpoint
from ddpm.config import TrainConfig
from ddpm.data import load_dataset, prepare_dataset
from ddpm.launch import run_experiment, training_command
from ddpm.run_files import RunFiles
from ddpm.training import build_parts
from tests.test_training import interrupted
from tests.workflow import ONE_THREAD_ENV, ROOT

CONFIG = dict(hidden_size=8, num_timesteps=50, batch_size=64, epochs=3, lr=2e-3, ema_decay=0.9, checkpoint_epochs=[3],
              state_every=5, device="cpu")
STEPS = CONFIG["epochs"] * (1797 // 64)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    prepare_dataset("digits", root / "data")
    return root


@pytest.fixture(scope="module")
def uninterrupted(data):
    """CONFIG trained by run_experiment in one process and in two: gpus1/, gpus2/ and what the second printed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setenv("PYTHONPATH", str(ROOT))
        run_experiment(TrainConfig(**CONFIG, gpus=1), data / "data", data / "gpus1", data / "state" / "gpus1")
        with contextlib.redirect_stdout(io.StringIO()) as output:
            run_experiment(TrainConfig(**CONFIG, gpus=2), data / "data", data / "gpus2", data / "state" / "gpus2")
    return output.getvalue()


def losses(run_dir):
    with open(run_dir / "losses.csv", newline="") as f:
        return [(r["step"], r["epoch"], r["loss"], r["lr"]) for r in csv.DictReader(f)]


def epoch_means(rows):
    by_epoch = {}
    for _, epoch, loss, _ in rows:
        by_epoch.setdefault(int(epoch), []).append(float(loss))
    return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]


def assert_same_run(run_dir, reference_dir):
    assert losses(run_dir) == losses(reference_dir)
    first, second = (load_checkpoint(d / "checkpoints" / "epoch_3.pt") for d in (run_dir, reference_dir))
    for part in ("model", "ema"):
        assert all((first[part][k] == v).all() for k, v in second[part].items())


def two_processes(data, name):
    config_file = data / "config2.json"
    config_file.write_text(json.dumps({**CONFIG, "gpus": 2}))
    return training_command(config_file, data / "data", data / name, data / "state" / name, processes=2)


def start(command, log):
    with open(log, "w") as output:
        return subprocess.Popen(command, env=ONE_THREAD_ENV, stdout=output, stderr=subprocess.STDOUT)


def wait_for_state(process, store, step):
    while process.poll() is None and max(store.steps(), default=0) < step:
        time.sleep(0.01)
    assert process.poll() is None, "training ended before it could be interrupted"


def test_ddp_weights_agree_every_step_and_match_one_process(data, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "tests" / "ddp_worker.py"), str(data / "data"), str(tmp_path / "run"), str(tmp_path / "state")]
    result = subprocess.run(command, capture_output=True, text=True, env=ONE_THREAD_ENV, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for rank in (0, 1):
        assert f"rank {rank}: 5 steps, weights equal" in result.stdout
        assert f"rank {rank}: train() ended with the same weights" in result.stdout


def test_two_processes_learn_like_one_and_their_output_reaches_sys_stdout(data, uninterrupted):
    """run_experiment copies torchrun's output into sys.stdout, where a job's log is: the progress bar too."""
    single, double = epoch_means(losses(data / "gpus1")), epoch_means(losses(data / "gpus2"))
    assert len(losses(data / "gpus2")) == len(losses(data / "gpus1")) == STEPS
    assert single[-1] < 0.8 * single[0] and double[-1] < 0.8 * double[0]
    assert double[-1] == pytest.approx(single[-1], rel=0.25)
    assert not (data / "gpus2" / "train_config.json").exists()
    assert f"{STEPS}/{STEPS}" in uninterrupted


def test_two_process_run_resumes_after_a_kill(data, uninterrupted):
    command = two_processes(data, "killed")
    store = ResumeStore(data / "state" / "killed")
    process = start(command, data / "killed.log")
    wait_for_state(process, store, 30)
    # torchrun starts its workers in sessions of their own: kill every process of this run, as a preemption would
    subprocess.run(["pkill", "-KILL", "-f", str(data / "state" / "killed")])
    process.wait()

    result = subprocess.run(command, env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resumed from step" in result.stdout + result.stderr
    assert_same_run(data / "killed", data / "gpus2")


@pytest.fixture(scope="module")
def stopped_by_sigterm(data):
    """A two-process run stopped by SIGTERM to torchrun: its output, and a copy of its state folder."""
    store = ResumeStore(data / "state" / "signalled")
    process = start(two_processes(data, "signalled"), data / "signalled_0.log")
    wait_for_state(process, store, 20)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) != 0
    shutil.copytree(store.directory, data / "saved_by_two")
    return (data / "signalled_0.log").read_text(), data / "saved_by_two"


def assert_stopped_together(output, signal_name, store, launched: bool = False):
    """Both ranks said they stopped, and a run_experiment launcher (`launched`) once more for the console, all at
    the same step, whose state and loss row are the last ones: 0 steps lost."""
    message = f"training interrupted by {signal_name} at step "
    stops = {int(part.split()[0]) for part in output.split(message)[1:]}
    assert output.count(message) == 2 + launched and len(stops) == 1, output
    step = stops.pop()
    with open(store.directory / "losses.csv", newline="") as f:
        assert int(list(csv.DictReader(f))[-1]["step"]) == store.steps()[-1] == step
    return step


RUN_EXPERIMENT = ("import json, sys; from ddpm.config import TrainConfig; from ddpm.launch import run_experiment; "
                  "run_experiment(TrainConfig(**json.loads(sys.argv[1])), *sys.argv[2:])")


def test_two_processes_stop_together_on_sigterm_and_sigusr1_and_resume_bit_identically(data, uninterrupted,
                                                                                      stopped_by_sigterm):
    """SIGTERM to torchrun, which passes it on to both workers; then SIGUSR1 to a run_experiment process (as a
    job's script), which passes it on to torchrun, which passes it on too (TORCHRUN_OPTIONS). The workers agree
    on the step to stop at through the loss's all_reduce and save one state of it; the reruns go on from there."""
    store = ResumeStore(data / "state" / "signalled")
    step = assert_stopped_together(stopped_by_sigterm[0], "SIGTERM", store)

    command = [sys.executable, "-c", RUN_EXPERIMENT, json.dumps({**CONFIG, "gpus": 2}), str(data / "data"),
               str(data / "signalled"), str(store.directory)]
    process = start(command, data / "signalled_1.log")
    wait_for_state(process, store, step + 20)
    process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=120) != 0
    output = (data / "signalled_1.log").read_text()
    assert f"resumed from step {step} " in output
    assert_stopped_together(output, "SIGUSR1", store, launched=True)

    result = subprocess.run(two_processes(data, "signalled"), env=ONE_THREAD_ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_run(data / "signalled", data / "gpus2")


def test_a_state_of_fewer_processes_is_reported_and_not_used(data):
    """Raising gpus after a failure: a one-process state has no RNG state for rank 1 (an IndexError before)."""
    config = TrainConfig(**CONFIG, gpus=1)
    images = load_dataset(data / "data")[0]
    interrupted(config, images, data, "raised", after_state=10)
    store = ResumeStore(data / "state" / "raised")
    for rank in (1, 0):  # rank 0 last: it removes the state
        messages = []
        files = RunFiles(config, images, data / "raised", store.directory, rank=rank, world=2)
        assert files.resume(build_parts(config, 1, 8, torch.device("cpu"), 10, rank), 10, messages.append) == (0, 0.0)
        assert messages == [f"resume state in {store.directory} was saved by 1 processes but this run has 2 "
                            "(a resume needs the same number); starting from scratch"]
        files.close()
    assert store.steps() == []


def test_a_state_of_more_processes_is_reported_and_training_starts_afresh(data, uninterrupted, stopped_by_sigterm):
    """Lowering gpus after a failure: resuming would continue the two-process run with one process's RNG."""
    shutil.copytree(stopped_by_sigterm[1], data / "state" / "lowered")
    with contextlib.redirect_stdout(io.StringIO()) as output:
        run_experiment(TrainConfig(**CONFIG, gpus=1), data / "data", data / "lowered", data / "state" / "lowered")
    assert "was saved by 2 processes but this run has 1" in output.getvalue(), output.getvalue()
    assert_same_run(data / "lowered", data / "gpus1")


def test_two_processes_train_a_class_conditional_run(data, tmp_path):
    """Each rank conditions on the labels of its shard (ddpm.training.Batches): a class-conditional run in two
    processes trains every step and checkpoints the conditional network."""
    config = TrainConfig(**{**CONFIG, "epochs": 1, "batch_size": 256, "checkpoint_epochs": [1]}, gpus=2,
                         class_conditional=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setenv("PYTHONPATH", str(ROOT))
        with contextlib.redirect_stdout(io.StringIO()):
            run_experiment(config, data / "data", tmp_path / "run", tmp_path / "state")
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_1.pt")
    assert checkpoint["num_classes"] == 10 and checkpoint["model"]["eps_model.class_embedding.weight"].shape == (11, 16)
    assert len(losses(tmp_path / "run")) == 1797 // 256
