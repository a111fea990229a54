"""The FID-spread benchmark scores each sampling draw of a checkpoint of the shared tiny workflow run as the
workflow's evaluate job would, and summarises the draws."""

import json

import numpy as np
import pytest

from benchmarks import fid_spread
from ddpm.metrics import evaluate_samples
from ddpm.sampling import sample_checkpoint


def test_each_draw_is_scored_as_the_workflow_would(tiny_run, tmp_path):
    checkpoint = tiny_run / "results" / "base" / "checkpoints" / "epoch_2.pt"
    out = tmp_path / "spread.json"
    fid_spread.main([str(checkpoint), "--seeds", "0", "1", "2", "3", "--num-samples", "16", "--steps", "4",
                     "--group", "2", "--results", str(tiny_run / "results"), "--data", str(tiny_run / "data" / "digits"),
                     "--batch-size", "8", "--cache", str(tmp_path / "draws"), "--out", str(out)])
    result = json.loads(out.read_text())
    assert [row["seed"] for row in result["rows"]] == [0, 1, 2, 3]
    assert set(result["summary"]) == {"fid", "fid_balanced", "class_mix_error", "fid_mean_of_2",
                                      "fid_balanced_mean_of_2", "fid_pooled_2", "fid_balanced_pooled_2"}
    images = sample_checkpoint(checkpoint, 16, 4, 3, 8, "cpu", eta=0.7, sampler="ddim")  # seed 3's draw
    np.save(tmp_path / "samples.npy", images.numpy())
    reference = tiny_run / "results" / "reference"
    expected = evaluate_samples(tmp_path / "samples.npy", reference / "classifier_stats.pt", tiny_run / "data" / "digits",
                                tmp_path / "metrics.json", "x", 0, "classifier", reference / "classifier.pt",
                                device="cpu", log=lambda message: None)
    for key in ("fid", "fid_balanced", "class_mix_error"):
        assert result["rows"][3][key] == pytest.approx(expected[key], rel=1e-6), key
