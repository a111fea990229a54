"""The workflow on a real SLURM cluster, through profiles/slurm.

Needs a cluster that answers: locally `sudo .ci/slurm-up.sh` starts a one-node
cluster (partition `debug`, two fake GPUs); `.ci/slurm-down.sh` stops it.
Without one the test is skipped. Run only this test with `pytest -m slurm`.

It runs the tiny config through the SLURM profile and compares it with the
suite's local run of the same config (the `tiny_run` fixture), checking that
  1. every job that is not a localrule went through sbatch and COMPLETED,
  2. the results are the same (loss CSVs, sample arrays: training on the CPU
     with one thread is deterministic),
  3. the train jobs asked SLURM for a GPU (`--gpus=N` in the sbatch call).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.workflow import ROOT, TINY, snakemake_command

# wall-clock limit of each snakemake run; snakemake ignores SIGTERM while it
# waits for cluster jobs, so a run over the limit gets SIGKILL
TIMEOUT = int(os.environ.get("SLURM_TEST_TIMEOUT", "900"))
LOSS_COLUMNS = ["step", "epoch", "loss", "lr"]
# download, train (GPU) for both experiments, sample (GPU), aggregate_losses: every kind of job of the
# training half that needs the cluster's GPUs or the data (the plots and FID are the local run's part)
TARGETS = ["results/losses.csv", "results/base/samples/epoch_2.npy"]


def _cluster_problem():
    """None if a SLURM cluster answers with a usable node, else why not."""
    for tool in ("sbatch", "sinfo", "squeue", "scontrol"):
        if shutil.which(tool) is None:
            return f"`{tool}` not on PATH (start a local cluster: sudo .ci/slurm-up.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "`sinfo` did not answer within 15 s (slurmctld down? run .ci/slurm-up.sh)"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.startswith(("idle", "mixed")) for s in states):
        detail = (out.stderr.strip() or " ".join(states) or "no nodes")[:200]
        return f"no idle/mixed SLURM node ({detail}); run .ci/slurm-up.sh"
    return None


# The cluster is probed in the fixture, not at collection time: `sinfo` takes
# ~10 s to give up on a stopped controller, and `-m "not slurm"` should not pay it.
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _env():
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    # not measured for coverage: the local run it is compared with runs the same code, and tracing every
    # job's imports would only slow the cluster run down
    for name in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"):
        env.pop(name, None)
    # the venv's python and the ddpm package, also inside the jobs (sbatch --export=ALL)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, like the local run it is compared with
    return env


def _start(workdir: Path, extra: list[str], log: Path) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = snakemake_command(workdir, *extra, *TARGETS)
    with open(log, "w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        # own process group, so a timeout can SIGKILL snakemake and its children
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _cancel_jobs_in(workdir: Path):
    """scancel the cluster jobs that still run in `workdir` (after a killed run)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=15).stdout
    ids = [
        line.split()[0]
        for line in out.splitlines()
        if len(line.split()) == 2 and Path(line.split()[1]).resolve() == workdir.resolve()
    ]
    if ids:
        subprocess.run(["scancel", *ids], timeout=15, check=False)


def _wait(proc: subprocess.Popen, deadline: float, workdir: Path) -> int:
    try:
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _cancel_jobs_in(workdir)
        return -9


def _tail(path: Path, n=60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


def _slurm_logs(workdir: Path, n=30) -> str:
    parts = []
    for p in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")):
        parts.append(f"--- {p.relative_to(workdir)}\n{_tail(p, n)}")
    return "\n".join(parts) or "(no SLURM job logs)"


def _job_state(jobid: str) -> str | None:
    """JobState from scontrol, None once SLURM forgot the job (after MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True, timeout=15)
    m = re.search(r"JobState=(\S+)", out.stdout)
    return m.group(1) if m else None


def _results(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run):
    """Run the tiny workflow on SLURM; return its dir and log beside the local run's dir."""
    problem = _cluster_problem()
    if problem:
        pytest.skip(f"no SLURM cluster: {problem}")
    assert TINY.is_file(), f"missing {TINY}"
    base = tmp_path_factory.mktemp("slurm")
    slurm_dir, slurm_log = base / "slurm", base / "slurm.log"
    slurm = _start(
        slurm_dir,
        [
            "--profile",
            str(ROOT / "profiles" / "slurm"),
            # one thread per job on both sides: identical float results,
            # and jobs fit on the 2-CPU test node
            "--max-threads",
            "1",
            "--verbose",  # prints each sbatch call
            "--slurm-keep-successful-logs",
        ],
        slurm_log,
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        rc_slurm = _wait(slurm, deadline, slurm_dir)
    finally:  # e.g. Ctrl-C: leave no snakemake and no cluster job behind
        if slurm.poll() is None:
            os.killpg(slurm.pid, signal.SIGKILL)
            slurm.wait()
            _cancel_jobs_in(slurm_dir)
    assert rc_slurm == 0, (
        f"SLURM run failed (rc={rc_slurm}{', killed after %d s' % TIMEOUT if rc_slurm == -9 else ''}):\n"
        f"{_tail(slurm_log)}\n{_slurm_logs(slurm_dir)}"
    )
    return {"slurm": slurm_dir, "local": tiny_run, "log": slurm_log.read_text(errors="replace")}


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
