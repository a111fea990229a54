"""The speed benchmark runs end to end at a tiny size and writes complete JSON (no speed assertions)."""

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"

TINY = ["--device", "cpu", "--preset", "digits", "--hidden-size", "8", "--batch-size", "8", "--steps", "2",
        "--repeats", "1", "--num-timesteps", "10", "--ddim-steps", "5", "--sample-steps", "2", "--threads", "1"]


def test_benchmark_writes_json_with_every_number(tmp_path):
    out = tmp_path / "bench.json"
    spec = importlib.util.spec_from_file_location("bench", BENCH)  # importable however pytest is started
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(TINY + ["--out", str(out)])
    results = json.loads(out.read_text())

    assert results["device"]["type"] == "cpu" and results["device"]["torch"]
    assert results["config"]["args"]["hidden_size"] == 8
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
