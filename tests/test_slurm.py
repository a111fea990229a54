"""The workflow on a real SLURM cluster, through profiles/slurm.

Needs a cluster that answers: locally `sudo .ci/slurm-up.sh` starts a one-node
cluster (partition `debug`, two fake GPUs); `.ci/slurm-down.sh` stops it.
Without one the test is skipped. Run only this test with `pytest -m slurm`.

It runs the tiny config's training half through the SLURM profile (tests/slurm.py,
started beside the local run) and compares it with the suite's local run of the same config (the `tiny_run` fixture), checking that
  1. every job that is not a localrule went through sbatch and COMPLETED,
  2. the results are the same (loss CSVs, sample arrays: training on the CPU
     with one thread is deterministic),
  3. the train jobs asked SLURM for a GPU (`--gpus=N` in the sbatch call).
"""

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.slurm import TIMEOUT, slurm_logs, tail

LOSS_COLUMNS = ["step", "epoch", "loss", "lr"]
# The cluster is probed in a fixture, not at collection time: `sinfo` takes
# ~10 s to give up on a stopped controller, and `-m "not slurm"` should not pay it.
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _job_state(jobid: str) -> str | None:
    """JobState from scontrol, None once SLURM forgot the job (after MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True, timeout=15)
    m = re.search(r"JobState=(\S+)", out.stdout)
    return m.group(1) if m else None


def _results(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs(slurm_run, tiny_run):
    """The tiny workflow's training half on SLURM (started with the suite's local run), waited for; its dir and log
    beside the local run's dir."""
    if slurm_run.problem:
        pytest.skip(f"no SLURM cluster: {slurm_run.problem}")
    rc_slurm = slurm_run.wait()
    assert rc_slurm == 0, (
        f"SLURM run failed (rc={rc_slurm}{', killed after %d s' % TIMEOUT if rc_slurm == -9 else ''}):\n"
        f"{tail(slurm_run.log)}\n{slurm_logs(slurm_run.workdir)}"
    )
    return {"slurm": slurm_run.workdir, "local": tiny_run, "log": slurm_run.log.read_text(errors="replace")}


def test_every_job_went_through_sbatch(runs):
    log = runs["log"]
    # snakemake prints "rule X:" for a job it hands to the executor, "localrule X:" for one it runs itself
    remote = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", log, flags=re.M)
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    assert remote, "no job was handed to the SLURM executor"
    missing = [(rule, j) for rule, j in remote if j not in submitted]
    assert not missing, f"jobs not submitted with sbatch: {missing}"
    assert "train" in {rule for rule, _ in remote}
    finished = set(re.findall(r"Finished jobid: (\d+)", log))
    assert {j for _, j in remote} <= finished
    # SLURM itself agrees (it keeps finished jobs for MinJobAge = 300 s)
    states = {sid: _job_state(sid) for sid in submitted.values()}
    bad = {sid: st for sid, st in states.items() if st not in (None, "COMPLETED")}
    assert not bad, f"SLURM jobs not COMPLETED: {bad}"


def test_train_jobs_asked_for_a_gpu(runs):
    calls = [line for line in runs["log"].splitlines() if line.startswith("sbatch call:")]
    train_calls = [c for c in calls if "--comment rule_train" in c]
    assert train_calls, "no sbatch call for a train job in the --verbose log"
    for call in train_calls:
        assert re.search(r"--gpus=(\w+:)?[1-9]|--gres=gpu", call), f"train job without a GPU request: {call[:400]}"
    # and SLURM granted it: AllocTRES / TresPerJob of a job it still remembers
    train_ids = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*rule_train", runs["log"])
    for sid in train_ids:
        out = subprocess.run(["scontrol", "show", "job", sid], capture_output=True, text=True, timeout=15).stdout
        if out.strip():
            assert re.search(r"gres[:/]gpu", out), f"SLURM job {sid} has no GPU in TresPerJob/TRES:\n{out}"


def test_same_results_as_local_run(runs):
    slurm, local = runs["slurm"], runs["local"]
    produced = {f for f in _results(slurm) if "/logs/" not in f and "/benchmarks/" not in f}
    assert produced <= _results(local)  # the local run made everything (it ran all targets)
    for rel in ("results/losses.csv", "results/base/samples/epoch_2.npy"):
        assert (slurm / rel).is_file(), rel
    loss_files = sorted((slurm / "results").glob("*/losses.csv"))
    assert loss_files, "no results/<exp>/losses.csv"
    for lf in loss_files:
        rel = lf.relative_to(slurm)
        a, b = pd.read_csv(lf), pd.read_csv(local / rel)
        pd.testing.assert_frame_equal(a[LOSS_COLUMNS], b[LOSS_COLUMNS], check_exact=True, obj=str(rel))
    samples = sorted((slurm / "results").glob("*/samples/epoch_*.npy"))
    assert samples, "no results/<exp>/samples/epoch_<E>.npy"
    for sf in samples:
        rel = sf.relative_to(slurm)
        a, b = np.load(sf), np.load(local / rel)
        assert a.shape == b.shape and a.dtype == b.dtype, rel
        assert np.array_equal(a, b), f"{rel} differs between the SLURM and the local run"
