"""Running the real `snakemake` as a process of its own, in temporary folders."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"
# one thread per process: the machine's cores are shared by the processes a test starts
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def tiny_config(**changes) -> dict:
    """The tiny test config with top-level sections replaced or updated."""
    config = yaml.safe_load(TINY.read_text())
    for key, value in changes.items():
        config[key] = value
    return config


def snakemake_command(workdir: Path, *args, configfile: Path | None = TINY) -> list[str]:
    """The command line of the project's `snakemake` working in `workdir` with `configfile` (None: the
    workflow's default, `config/config.yaml` of `workdir`)."""
    configfile_args = ["--configfile", str(configfile)] if configfile is not None else []
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
            *configfile_args, *args]


def start_snakemake(workdir: Path, *args, config: dict | None = None, configfile: Path | None = TINY) -> subprocess.Popen:
    """Start `snakemake` in `workdir` with the tiny config (or `config`, or `configfile`), capturing its output:
    two jobs at a time with one thread each, so the 2-core machine is kept busy and every job computes alike."""
    if config is not None:
        configfile = workdir / "config.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        configfile.write_text(yaml.safe_dump(config))
    command = snakemake_command(workdir, "--cores", "2", "--max-threads", "1", *args, configfile=configfile)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: int = 900) -> subprocess.CompletedProcess:
    """Wait for a started snakemake; the result's `output` is its stdout and stderr together."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    result.output = stdout + stderr
    return result


def snakemake(workdir: Path, *args, config: dict | None = None, configfile: Path | None = TINY,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """`snakemake` in `workdir` with the tiny config (or `config`, or `configfile`), run to the end (see
    `start_snakemake`)."""
    return finish(start_snakemake(workdir, *args, config=config, configfile=configfile), timeout)
