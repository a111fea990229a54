"""Exact resume: SIGKILL a real training process at random moments, or stop it with SIGTERM and SIGUSR1,
restart it, compare bit for bit; a resume state of the earlier EMA (AveragedModel) goes on bit for bit too. What
the console and the dry run say about a stopped run."""

import csv
import json
import os
import random
import signal
import subprocess
import time

import pytest
import torch

from ddpm.checkpoint import ResumeStore, load_checkpoint, save_checkpoint
from ddpm.data import prepare_dataset
from ddpm.experiments import Run
from ddpm.reruns import resume_notes
from ddpm.launch import INTERRUPTED_EXIT_CODE, training_command
from ddpm.training import train
from tests.test_training import interrupted, read_csv, run, tiny
from tests.workflow import ONE_THREAD_ENV, finish, snakemake, start_snakemake, tiny_config

DETERMINISTIC_COLUMNS = ("step", "epoch", "loss", "lr")
CONFIG = dict(hidden_size=8, num_timesteps=50, batch_size=32, epochs=4, lr=1e-3, ema_decay=0.9, flip=True,
              checkpoint_epochs=[2, 4], state_every=5, keep_states=2, device="cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    prepare_dataset("digits", root / "data")
    (root / "config.json").write_text(json.dumps(CONFIG))
    return root


@pytest.fixture(scope="module")
def reference(setup):
    """The uninterrupted run, started at once so that it trains on the other core while the tests interrupt theirs;
    call it to wait for it."""
    process = start(setup, "reference", setup / "reference.log")

    def finished():
        assert process.wait(timeout=300) == 0, (setup / "reference.log").read_text()
        return "reference"

    yield finished
    process.kill()
    process.wait()


def start(root, name, log):
    """Train run `name` in a process of its own, its output going to the file `log`: a pipe nobody reads
    while the test waits would fill with progress lines and stall the run."""
    command = training_command(root / "config.json", root / "data", root / name, root / "state" / name)
    with open(log, "w") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=ONE_THREAD_ENV, cwd=root)


def rows(path):
    with open(path, newline="") as f:
        return [tuple(r[c] for c in DETERMINISTIC_COLUMNS) for r in csv.DictReader(f)]


def assert_same_run(root, a, b):
    assert rows(root / a / "losses.csv") == rows(root / b / "losses.csv")
    largest = 0.0
    for epoch in CONFIG["checkpoint_epochs"]:
        first, second = (load_checkpoint(root / d / "checkpoints" / f"epoch_{epoch}.pt") for d in (a, b))
        for part in ("model", "ema"):
            for key, value in first[part].items():
                largest = max(largest, (value.double() - second[part][key].double()).abs().max().item())
    assert largest == 0.0
    return largest


def wait_for_state(process, store, step):
    while process.poll() is None and max(store.steps(), default=0) < step:
        time.sleep(0.005)
    assert process.poll() is None, "training ended before the signal could be sent"


def test_sigterm_and_sigusr1_lose_no_step_and_the_rerun_resumes_bit_identically(setup, reference):
    """A time limit's signal mid-run: the process finishes its step, saves a state of it with the loss rows up to
    it, says so and exits with INTERRUPTED_EXIT_CODE; the rerun continues from exactly there."""
    store = ResumeStore(setup / "state" / "signalled")
    for number, (signal_number, after) in enumerate([(signal.SIGTERM, 40), (signal.SIGUSR1, 120)]):
        log = setup / f"signalled_{number}.log"
        process = start(setup, "signalled", log)
        wait_for_state(process, store, after)
        process.send_signal(signal_number)
        assert process.wait(timeout=120) == INTERRUPTED_EXIT_CODE, log.read_text()
        output = log.read_text()
        message = f"training interrupted by {signal_number.name} at step "
        assert message in output, output
        step = int(output.split(message)[1].split()[0])
        assert store.steps()[-1] == step > after  # the state of the last step done
        assert rows(store.directory / "losses.csv")[-1][0] == str(step)  # and its loss row: 0 steps lost
        assert f"resumes from step {step}" in output
        if number:
            assert "resumed from step" in output
    process = start(setup, "signalled", setup / "signalled_2.log")
    assert process.wait(timeout=300) == 0, (setup / "signalled_2.log").read_text()
    assert f"resumed from step {step} " in (setup / "signalled_2.log").read_text()
    assert_same_run(setup, reference(), "signalled")


def test_killed_at_random_moments_resumes_bit_identically(setup, reference):
    """After the second kill the newest state is also truncated, as by a full disk: the restart skips it and
    resumes from the one before, and the run still ends bit-identical."""
    rng = random.Random(1234)
    store = ResumeStore(setup / "state" / "killed")
    kills, outputs, target, truncated = 0, [], 0, None
    while True:
        log = setup / f"killed_{len(outputs)}.log"
        process = start(setup, "killed", log)
        target += rng.randint(30, 50)  # at least 4 kills before the last of 4 x 56 steps
        while process.poll() is None and (max(store.steps(), default=0) < target):
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.2))  # anywhere: mid-step, mid-state-write, mid-log
        if process.poll() is not None:
            outputs.append(log.read_text())
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        outputs.append(log.read_text())
        if kills == 2:
            truncated = store.path(store.steps()[-1])
            truncated.write_bytes(truncated.read_bytes()[:100])
    assert process.returncode == 0, outputs[-1]
    resumed_from = [line for output in outputs for line in output.splitlines() if line.startswith("resumed from step")]
    print(f"{kills} kills; restarts {'; '.join(resumed_from)}")
    assert kills >= 4, f"only {kills} kills landed before training finished"
    assert len(resumed_from) >= kills - 1  # every restart after the first kill resumed
    assert f"skipping resume state: checkpoint {truncated} is corrupted or truncated" in outputs[2]
    assert_same_run(setup, reference(), "killed")


SIX_EPOCHS = tiny_config(experiments={"base": {"epochs": 6, "state_every": 5}}, sample_epochs=[6])


def signal_train_job(workdir, signum: int):
    """Start the six-epoch tiny run's training in `workdir`, send `signum` to its train job once the first resume
    state is written, and return the snakemake process and the run's resume store."""
    process = start_snakemake(workdir, "results/base/losses.csv", config=SIX_EPOCHS)
    store = ResumeStore(workdir / "results" / "resume" / "base")
    deadline = time.time() + 600
    while not store.steps() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    job = subprocess.run(["pgrep", "-f", f"{workdir}/.snakemake/scripts/.*train.py"], capture_output=True, text=True)
    assert job.stdout.strip(), "the train job was not found running"
    for pid in job.stdout.split():
        os.kill(int(pid), signum)
    return process, store


def test_workflow_train_job_killed_then_rerun_resumes(tmp_path):
    """Snakemake deletes a failed job's outputs; the resume state lives elsewhere, so a plain rerun continues."""
    process, store = signal_train_job(tmp_path, signal.SIGKILL)
    assert "Error in rule train" in finish(process, timeout=300).output
    assert not (tmp_path / "results" / "base" / "losses.csv").exists()
    assert store.steps()

    result = snakemake(tmp_path, "results/base/losses.csv", config=SIX_EPOCHS)
    assert result.returncode == 0, result.output
    log = (tmp_path / "results" / "logs" / "train" / "base.log").read_text()
    assert "resumed from step" in log
    resumed_step = int(log.split("resumed from step ")[1].split()[0])
    assert resumed_step >= 5
    steps = [int(r[0]) for r in rows(tmp_path / "results" / "base" / "losses.csv")]
    assert steps == list(range(1, steps[-1] + 1)) and steps[-1] == 6 * (1797 // 64)


def test_workflow_ctrl_c_says_so_on_the_console_and_the_dry_run_says_from_which_step(tmp_path):
    """Ctrl-C reaches the train job: the job says on its stderr, which Snakemake shows, at which step it stopped and
    that the same command resumes; `snakemake -n` then says from which step the run resumes."""
    process, _ = signal_train_job(tmp_path, signal.SIGINT)
    console = finish(process, timeout=300).stderr
    message = "training interrupted by SIGINT at step "
    assert message in console, console
    step = int(console.split(message)[1].split()[0])
    assert f"running the same command again resumes from step {step}\n" in console

    dry_run = snakemake(tmp_path, "-n", "results/base/losses.csv", config=SIX_EPOCHS)
    assert dry_run.returncode == 0, dry_run.output
    assert f"run base: resumes from step {step} (epoch {step // (1797 // 64) + 1} of 6)" in dry_run.output


def test_the_resume_note_names_the_step_the_rerun_resumes_from(digits, tmp_path):
    """From the state a signal left at step 5 (epoch 1 of 6 steps): the note says the step that train() then resumes
    from; a state of another training config or number of processes, or past a new sample epoch whose checkpoint
    it does not hold, is not resumed; a finished run gets no note."""

    def notes(config, recorded=None, name="run"):
        return resume_notes({name: Run(name, name, name, 0, {}, config, {})}, {name: recorded}, tmp_path / "state")

    def again(name, step):
        return [f"run {name}: the resume state in {tmp_path / 'state' / name} (step {step}) does not fit its config "
                "now: trains again from step 0"]

    assert notes(tiny()) == []  # no state
    interrupted(tiny(), digits, tmp_path, "run", after_state=4)
    state = tmp_path / "state" / "run"
    resumes = f"run run: resumes from step 5 (epoch 1 of {{}}), from the state its stopped training left in {state}"
    assert notes(tiny()) == [resumes.format(2)]
    assert notes(tiny(epochs=3, checkpoint_epochs=[1, 3])) == [resumes.format(3)]  # constant lr: epochs may change
    assert notes(tiny(lr=2e-3)) == notes(tiny(gpus=2)) == again("run", 5)
    assert notes(tiny(), recorded=tiny()) == []  # finished: what a change of epochs does is epoch_changes' note
    messages = []
    train(tiny(), digits, tmp_path / "run", state, log=messages.append)
    assert messages[0].startswith("resumed from step 5 (epoch 1,")
    assert notes(tiny()) == []  # the final state: nothing to resume

    interrupted(tiny(checkpoint_epochs=[2]), digits, tmp_path, "late", after_state=8)  # step 9, past epoch 1
    assert notes(tiny(checkpoint_epochs=[2]), name="late")[0].startswith("run late: resumes from step 9 (epoch 2 of 2)")
    assert notes(tiny(), name="late") == again("late", 9)  # no checkpoint of epoch 1


def test_a_resume_state_of_the_averaged_model_ema_resumes_bit_identically(digits, tmp_path):
    """States saved while the EMA was torch.optim.swa_utils.AveragedModel hold it as "module.*" with "n_averaged",
    a float lr and a "scheduler": converted on load, the run goes on bit-identical to one never stopped."""
    reference = run(tiny(), digits, tmp_path, "reference")
    interrupted(tiny(), digits, tmp_path, "old", after_state=4)
    store = ResumeStore(tmp_path / "state" / "old")
    path = store.path(store.steps()[-1])
    state = load_checkpoint(path)
    state["ema"] = {**{f"module.{key}": value for key, value in state["ema"].items()},
                    "n_averaged": torch.tensor(state["step"])}
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = float(group["lr"])
    state["scheduler"] = {"last_epoch": state["step"], "base_lrs": [1e-3]}
    save_checkpoint(state, path)
    messages = []
    train(tiny(), digits, tmp_path / "old", tmp_path / "state" / "old", log=messages.append)
    assert messages[0].startswith("resumed from step 5 ")
    assert read_csv(tmp_path / "old" / "losses.csv", DETERMINISTIC_COLUMNS) == \
        read_csv(reference / "losses.csv", DETERMINISTIC_COLUMNS)
    for epoch in (1, 2):
        checkpoint = f"checkpoints/epoch_{epoch}.pt"
        first, second = load_checkpoint(reference / checkpoint), load_checkpoint(tmp_path / "old" / checkpoint)
        for part in ("model", "ema"):
            assert all(torch.equal(value, second[part][key]) for key, value in first[part].items()), (epoch, part)
