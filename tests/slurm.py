"""The tiny workflow's training half on a real SLURM cluster, through profiles/slurm, as a process of its own.

Started by the `slurm_run` fixture (tests/conftest.py) beside the suite's local run of the same config, since it
spends most of its time waiting on the cluster; tests/test_slurm.py waits for it and checks it.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.workflow import ROOT, snakemake_command

# wall-clock limit of the snakemake run; snakemake ignores SIGTERM while it
# waits for cluster jobs, so a run over the limit gets SIGKILL
TIMEOUT = int(os.environ.get("SLURM_TEST_TIMEOUT", "900"))
# download, train (GPU) for both experiments, sample (GPU), aggregate_losses: every kind of job of the
# training half that needs the cluster's GPUs or the data (the plots and FID are the local run's part)
TARGETS = ["results/losses.csv", "results/base/samples/epoch_2.npy"]
OPTIONS = [
    "--profile",
    str(ROOT / "profiles" / "slurm"),
    # one thread per job on both sides: identical float results,
    # and jobs fit on the 2-CPU test node
    "--max-threads",
    "1",
    "--verbose",  # prints each sbatch call
    "--slurm-keep-successful-logs",
]


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


def _env():
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
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


def tail(path: Path, n=60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


def slurm_logs(workdir: Path, n=30) -> str:
    parts = []
    for p in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")):
        parts.append(f"--- {p.relative_to(workdir)}\n{tail(p, n)}")
    return "\n".join(parts) or "(no SLURM job logs)"


class ClusterRun:
    """snakemake on TARGETS through the SLURM profile in `workdir`, its output in `log`; started at once unless no
    cluster answers (then `problem` says why)."""

    def __init__(self, workdir: Path, log: Path):
        self.workdir, self.log = workdir, log
        self.problem = _cluster_problem()
        self.process = None if self.problem else _start(workdir, OPTIONS, log)
        self.deadline = time.monotonic() + TIMEOUT

    def wait(self) -> int:
        """The run's exit code; -9 if it ran past TIMEOUT and was killed (with its cluster jobs)."""
        try:
            return self.process.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            return -9

    def stop(self):
        """Leave no snakemake and no cluster job behind (e.g. after Ctrl-C)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            _cancel_jobs_in(self.workdir)
