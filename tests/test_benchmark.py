"""The speed benchmark runs end to end at a tiny size and writes complete JSON (no speed assertions)."""

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest

from ddpm.config import TrainConfig

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"

TINY = ["--device", "cpu", "--preset", "digits", "--hidden-size", "8", "--batch-size", "8", "--steps", "2",
        "--repeats", "1", "--num-timesteps", "10", "--ddim-steps", "5", "--sample-steps", "2", "--threads", "1",
        "--modes", "eager"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)  # importable however pytest is started
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tiny(bench, out: Path, *extra: str) -> dict:
    bench.main([*TINY, *extra, "--out", str(out)])
    return json.loads(out.read_text())


def test_benchmark_writes_json_with_every_number(bench, tmp_path, capsys):
    results = run_tiny(bench, tmp_path / "bench.json", "--profile")

    assert results["device"]["type"] == "cpu" and results["device"]["torch"]
    assert results["device"]["peak_memory_bytes"] is None  # GPU memory only
    assert results["config"]["args"]["hidden_size"] == 8
    assert results["config"]["args"]["architecture"] == "course"
    assert results["config"]["project_train_config"]["batch_size"] == 8
    for section in ("training", "data_path"):
        for key in ("project_images_per_second", "baseline_images_per_second", "ratio"):
            assert results[section][key] > 0, (section, key)
    sampling = results["sampling"]
    assert sampling["extrapolated"] is True
    assert (sampling["ancestral"]["steps"], sampling["ddim"]["steps"]) == (10, 5)
    assert (sampling["ancestral"]["timed_steps"], sampling["ddim"]["timed_steps"]) == (2, 2)
    assert sampling["ancestral"]["images_per_second"] > 0 and sampling["ddim"]["images_per_second"] > 0
    assert sampling["ratio"] > 0
    assert results["flops"]["train_flops_per_image"] > 0
    assert results["flops"]["project_mfu"] is None  # no bf16 peak for a CPU
    levers = results["levers"]
    assert [(row["mode"], row["batch_size"]) for row in levers] == [("eager", 8), ("eager", 16), ("eager", 32)]
    assert all(row["images_per_second"] > 0 and row["mfu"] is row["peak_memory_bytes"] is None for row in levers)
    targets = results["targets"]
    assert targets["best"] == max(levers, key=lambda row: row["images_per_second"])
    assert (targets["training_target"], targets["sampling_target"]) == (10_000, 15)
    assert targets["training_met"] is None and targets["sampling_met"] is None  # judged on CUDA only
    assert "Self CPU" in results["profile"] and "aten::convolution" in results["profile"]  # --profile: the top ops
    printed = capsys.readouterr().out
    assert "target: training >= 10,000 images/s: best " in printed and "not judged off CUDA" in printed
    assert f"torch.profiler, eager at batch {targets['best']['batch_size']}, 10 steps:" in printed


@pytest.mark.parametrize("argv, message", [
    (["--architecture", "resnet"], "argument --architecture: invalid choice: 'resnet'"),
    (["--preset", "imagenet"], "argument --preset: invalid choice: 'imagenet'"),
    (["--ddim-steps", "20", "--num-timesteps", "10"], r"--ddim-steps \(20\) must not exceed --num-timesteps \(10\)"),
    (["--steps", "0"], "--steps, --repeats, --ddim-steps, --sample-steps and --batch-sizes must be >= 1"),
    (["--batch-sizes", "128,0"], "--batch-sizes must be >= 1"),
    (["--modes", "eager,jit"], r"argument --modes: 'eager,jit': choose from eager, compiled"),
])
def test_bad_flags_stop_with_a_message(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert re.search(message, capsys.readouterr().err)


def test_presets_choose_the_network(bench):
    assert bench.parse_args([]).architecture == "course"
    assert (bench.parse_args([]).batch_sizes, bench.parse_args([]).modes) == ([128, 256, 512], ["eager", "compiled"])
    ddpm = bench.parse_args(["--preset", "ddpm-cifar10"])
    assert (ddpm.architecture, ddpm.hidden_size, ddpm.batch_size, ddpm.image_size) == ("ddpm", 128, 128, 32)
    assert bench.parse_args(["--preset", "digits", "--architecture", "ddpm"]).architecture == "ddpm"
    assert bench.network_fields("course") == {}  # TrainConfig's default network
    assert bench.network_fields("ddpm") == {"architecture": "ddpm", "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
                                            "attention_resolutions": [16], "dropout": 0.1}


@pytest.mark.skipif("architecture" not in {f.name for f in dataclasses.fields(TrainConfig)},
                    reason="TrainConfig has no 'architecture' field to choose the paper's UNet by")
def test_benchmark_of_the_paper_unet_times_the_same_network_on_both_sides(bench, tmp_path):
    """The paper's UNet at 32x32 (its levels need 32 pixels), hidden_size 32, batch 2: both loops train it."""
    results = run_tiny(bench, tmp_path / "bench.json", "--preset", "ddpm-cifar10", "--hidden-size", "32",
                       "--batch-size", "2", "--batch-sizes", "2")
    config = results["config"]["project_train_config"]
    assert (config["architecture"], config["channel_mult"], config["attention_resolutions"]) == ("ddpm", [1, 2, 2, 2], [16])
    assert results["training"]["ratio"] > 0 and results["sampling"]["ratio"] > 0
    from ddpm.models import build_model

    network = type(build_model(TrainConfig.from_dict(config), 3, 32).eps_model).__name__
    assert network == "DDPMUNet"
    assert results["targets"]["training_target"] == 6_000 and results["profile"] is None
