import random
import shutil
from pathlib import Path

import coverage
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]
# The test files that take longest on 2 CPU cores (docs/testing.md), longest first. The two pytest-xdist workers
# take whole files in collection order (pyproject.toml: --no-loadscope-reorder), so these start first and the many
# short files fill in beside them, rather than a long file running alone at the end.
LONGEST_FIRST = ("test_workflow.py", "test_guided_workflow.py", "test_compiled_step.py", "test_distributed.py",
                 "test_training.py", "test_seeds_and_sweeps.py", "test_resume.py", "test_slurm.py")


def pytest_collection_modifyitems(items):
    """Run the LONGEST_FIRST files first, in that order; the others follow in collection order (a stable sort keeps
    each file's tests in their order)."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same RNG state, so the suite is deterministic."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return 0


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The first 96 of scikit-learn's digits as uint8 images (N, 1, 8, 8)."""
    from ddpm.data import load_dataset, prepare_dataset

    root = tmp_path_factory.mktemp("digits")
    prepare_dataset("digits", root)
    return load_dataset(root)[0][:96]


@pytest.fixture(scope="session")
def slurm_run(tmp_path_factory):
    """The tiny workflow's training half, started on SLURM (tests/slurm.py), or why no cluster could take it."""
    from tests.slurm import ClusterRun

    workdir = tmp_path_factory.mktemp("slurm")
    run = ClusterRun(workdir / "slurm", workdir / "slurm.log")
    yield run
    run.stop()


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_worker(worker_id):
    """Under pytest-xdist the workers share the cores: one torch thread each, so that no thread spins waiting for a
    core that another worker holds."""
    if worker_id != "master":
        torch.set_num_threads(1)


def pytest_runtest_setup(item):
    """Under `--cov`, coverage's line tracer is paused while torch.compile compiles (between Dynamo's compile
    callbacks): compiling runs a great deal of Python of its own (Dynamo, AOTAutograd, inductor), 1.5x slower
    traced. Dynamo interprets the compiled functions' bytecode rather than running their lines, so the pause hides
    no line of ddpm from the report. The callbacks are added before each test's fixtures are made, again where
    torch._dynamo.reset() (explain() calls it) dropped them. Without `--cov`, Dynamo is not imported for this
    (3 s)."""
    if coverage.Coverage.current() is None:
        return
    from torch._dynamo.callback import callback_handler

    if pause_coverage not in callback_handler.start_callbacks:
        callback_handler.register_start_callback(pause_coverage)
        callback_handler.register_end_callback(resume_coverage)


PAUSED_COVERAGE = []


def pause_coverage(*_):
    """Stop every running coverage, the innermost first (under pytest-xdist a worker runs two, one above the
    other, and stopping the top one alone resumes the other)."""
    while (running := coverage.Coverage.current()) is not None:
        running.stop()
        PAUSED_COVERAGE.append(running)


def resume_coverage(*_):
    while PAUSED_COVERAGE:
        PAUSED_COVERAGE.pop().start()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, request, worker_id):
    """One complete local run of the workflow on tests/data/tiny.yaml, shared by the workflow tests.

    Under pytest-xdist the first worker to ask makes it in the folder all workers share, and the others wait for it.
    In one process, when the SLURM tests are to run, their cluster run starts first: it spends most of its time
    waiting on the cluster, so it goes on beside this one."""
    from filelock import FileLock

    from tests.workflow import snakemake

    if worker_id == "master" and any(item.get_closest_marker("slurm") for item in request.session.items):
        request.getfixturevalue("slurm_run")
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    workdir, done = shared / "tiny_run", shared / "tiny_run.done"
    with FileLock(shared / "tiny_run.lock"):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # what a failed attempt left
            workdir.mkdir()
            result = snakemake(workdir)
            assert result.returncode == 0, result.output
            done.touch()
    return workdir
