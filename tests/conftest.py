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
def tiny_run(tmp_path_factory):
    """One complete local run of the workflow on tests/data/tiny.yaml, shared by the workflow tests."""
    from tests.workflow import snakemake

    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir)
    assert result.returncode == 0, result.output
    return workdir
