import random
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same RNG state, so the suite is deterministic."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return 0


@pytest.fixture(scope="session")
def slurm_run(tmp_path_factory):
    """The tiny workflow's training half, started on SLURM (tests/slurm.py), or why no cluster could take it."""
    from tests.slurm import ClusterRun

    workdir = tmp_path_factory.mktemp("slurm")
    run = ClusterRun(workdir / "slurm", workdir / "slurm.log")
    yield run
    run.stop()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, request):
    """One complete local run of the workflow on tests/data/tiny.yaml, shared by the workflow tests. When the SLURM
    tests are to run, their cluster run starts first: it spends most of its time waiting on the cluster, so it goes
    on beside this one."""
    from tests.workflow import snakemake

    if any(item.get_closest_marker("slurm") for item in request.session.items):
        request.getfixturevalue("slurm_run")
    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir)
    assert result.returncode == 0, result.output
    return workdir
