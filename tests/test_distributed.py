"""Multi-process training with DistributedDataParallel: 2 CPU processes under torchrun (gloo)."""

import csv
import json
import subprocess
import sys
import time

import pytest

from ddpm.checkpoint import ResumeStore, load_checkpoint
from ddpm.config import TrainConfig
from ddpm.data import prepare_dataset
from ddpm.training import run_experiment
from tests.workflow import ONE_THREAD_ENV, ROOT, training_command

CONFIG = dict(hidden_size=8, num_timesteps=50, batch_size=64, epochs=3, lr=2e-3, ema_decay=0.9, checkpoint_epochs=[3],
              state_every=5, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    prepare_dataset("digits", root / "data")
    return root


def losses(run_dir):
    with open(run_dir / "losses.csv", newline="") as f:
        return [(r["step"], r["epoch"], r["loss"], r["lr"]) for r in csv.DictReader(f)]


def epoch_means(rows):
    by_epoch = {}
    for _, epoch, loss, _ in rows:
        by_epoch.setdefault(int(epoch), []).append(float(loss))
    return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]


def test_ddp_weights_agree_every_step_and_match_one_process(data, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "tests" / "ddp_worker.py"), str(data / "data"), str(tmp_path / "run"), str(tmp_path / "state")]
    result = subprocess.run(command, capture_output=True, text=True, env=ONE_THREAD_ENV, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for rank in (0, 1):
        assert f"rank {rank}: 5 steps, weights equal" in result.stdout
        assert f"rank {rank}: train() ended with the same weights" in result.stdout


def test_two_processes_learn_like_one(data, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    for gpus in (1, 2):
        run_experiment(TrainConfig(**CONFIG, gpus=gpus), data / "data", data / f"gpus{gpus}", data / "state" / f"gpus{gpus}")
    single, double = epoch_means(losses(data / "gpus1")), epoch_means(losses(data / "gpus2"))
    assert len(losses(data / "gpus2")) == len(losses(data / "gpus1")) == CONFIG["epochs"] * (1797 // 64)
    assert single[-1] < 0.8 * single[0] and double[-1] < 0.8 * double[0]
    assert double[-1] == pytest.approx(single[-1], rel=0.25)
    assert not (data / "gpus2" / "train_config.json").exists()


def test_two_process_run_resumes_after_a_kill(data):
    config_file = data / "config2.json"
    config_file.write_text(json.dumps({**CONFIG, "gpus": 2}))
    command = training_command(config_file, data / "data", data / "killed", data / "state" / "killed", processes=2)
    store = ResumeStore(data / "state" / "killed")
    process = subprocess.Popen(command, env=ONE_THREAD_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while process.poll() is None and max(store.steps(), default=0) < 30:
        time.sleep(0.01)
    assert process.poll() is None, "training ended before it could be killed"
    # torchrun starts its workers in sessions of their own: kill every process of this run, as a preemption would
    subprocess.run(["pkill", "-KILL", "-f", str(data / "state" / "killed")])
    process.wait()

    result = subprocess.run(command, env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resumed from step" in result.stdout + result.stderr
    if not (data / "gpus2").exists():  # the uninterrupted 2-process run of the test above
        run_experiment(TrainConfig(**CONFIG, gpus=2), data / "data", data / "gpus2", data / "state" / "gpus2")
    assert losses(data / "killed") == losses(data / "gpus2")
    resumed, uninterrupted = (load_checkpoint(d / "checkpoints" / "epoch_3.pt") for d in (data / "killed", data / "gpus2"))
    for part in ("model", "ema"):
        assert all((resumed[part][k] == v).all() for k, v in uninterrupted[part].items())
