"""The sampler benchmark scores every sampler and step count on a checkpoint of the shared tiny workflow run, as
the workflow's own sample and evaluate jobs would."""

import json
import math

import numpy as np
import pytest

from benchmarks import samplers
from ddpm.metrics import evaluate_samples
from ddpm.sampling import sample_checkpoint


def test_every_sampler_and_step_count_is_scored_as_the_workflow_would(tiny_run, tmp_path):
    checkpoint = tiny_run / "results" / "base" / "checkpoints" / "epoch_2.pt"
    out = tmp_path / "samplers.json"
    samplers.main([str(checkpoint), "--steps", "2", "4", "--num-samples", "16", "--results", str(tiny_run / "results"),
                   "--data", str(tiny_run / "data" / "digits"), "--batch-size", "8", "--device", "cpu",
                   "--seeds", "0", "1", "--out", str(out)])
    rows = [row for row in json.loads(out.read_text())["rows"] if row["seed"] == 0]
    assert [(row["sampler"], row["eta"], row["steps"]) for row in rows] == [
        ("ddim", 0.0, 2), ("ddim", 0.0, 4), ("ddim", 0.7, 2), ("ddim", 0.7, 4), ("dpm_solver", 0.0, 2),
        ("dpm_solver", 0.0, 4), ("dpm_solver_sde", 0.0, 2), ("dpm_solver_sde", 0.0, 4)]
    assert len(json.loads(out.read_text())["rows"]) == 2 * len(rows)
    assert all(math.isfinite(row["fid"]) and row["sample_seconds"] > 0 for row in rows)
    # a row is the FID of the samples the same sampler, steps and seed draw through ddpm.sampling
    images = sample_checkpoint(checkpoint, 16, 4, 0, 8, "cpu", sampler="dpm_solver")
    np.save(tmp_path / "samples.npy", images.numpy())
    reference = tiny_run / "results" / "reference"
    expected = evaluate_samples(tmp_path / "samples.npy", reference / "classifier_stats.pt", tiny_run / "data" / "digits",
                                tmp_path / "metrics.json", "x", 0, "classifier", reference / "classifier.pt", device="cpu",
                                log=lambda message: None)
    assert rows[5]["fid"] == pytest.approx(expected["fid"], rel=1e-6)
    assert rows[5]["fid_balanced"] == pytest.approx(expected["fid_balanced"], rel=1e-6)


def test_a_missing_reference_is_refused_naming_the_workflow(tmp_path, capsys):
    with pytest.raises(SystemExit):
        samplers.main(["some.pt", "--results", str(tmp_path)])
    assert "classifier_stats.pt does not exist: run the workflow first" in capsys.readouterr().err
