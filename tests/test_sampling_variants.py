"""Sampling variants and class accuracy in the tables: which columns name a variant, the metric table's columns
and order, and which run and epoch a variant's file belongs to."""

import json
import math

import pandas as pd
import pytest

from ddpm.checks import METRICS, metric_columns, variant_columns, variant_label
from ddpm.workflow import aggregate_metrics, run_of

ROW_END = {"extractor": "classifier", "num_samples": 8, "sampling_draws": 2, "num_reference": 1797,
           "num_reference_features": 1797}


def metric_row(epoch: int, fid: float, variant: dict | None = None, class_accuracy: float | None = None) -> dict:
    """A metric row as ddpm.metrics.evaluate_samples writes it."""
    scores = {f"{m}{s}": fid if m == "fid" and not s else 0.5 for m in METRICS for s in ("", "_sampling_se")}
    if class_accuracy is not None:
        scores |= {"class_accuracy": class_accuracy, "class_accuracy_sampling_se": 0.01}
    return {"experiment": "exp", "epoch": epoch, **(variant or {}), **scores, **ROW_END}


def write_rows(folder, rows: dict[str, dict]) -> list:
    paths = []
    for name, row in rows.items():
        path = folder / name
        path.write_text(json.dumps(row, indent=2))
        paths.append(path)
    return paths


def test_the_columns_of_a_variant_are_all_but_the_rows_own():
    row = metric_row(3, 1.0, {"guidance_scale": 2.0, "sampling_seed": 4}, class_accuracy=0.9)
    assert variant_columns(["seed", *row]) == ["guidance_scale", "sampling_seed"]
    assert variant_columns(metric_row(3, 1.0)) == []
    assert metric_columns(row) == [*METRICS, "class_accuracy"] and metric_columns(metric_row(3, 1.0)) == list(METRICS)
    assert variant_label({"guidance_scale": 2.0, "sampler": "ddim", "steps": 20, "eta": math.nan}) == \
        "guidance_scale=2, sampler=ddim, steps=20"


def test_metric_table_of_rows_without_variants_keeps_its_columns_and_order(tmp_path):
    paths = write_rows(tmp_path, {"epoch_2.json": metric_row(2, 3.0), "epoch_1.json": metric_row(1, 4.0)})
    frame = aggregate_metrics({("exp", 0): paths}, tmp_path / "metrics.csv")
    assert list(frame.columns) == ["experiment", "seed", *[k for k in metric_row(1, 0.0) if k != "experiment"]]
    assert frame["epoch"].tolist() == [1, 2]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), frame)


def test_metric_table_puts_the_variant_after_the_epoch_and_sorts_by_it(tmp_path):
    """Whatever order the files come in, the variant's columns follow the epoch and class_accuracy the other
    metrics; rows sort by experiment, seed, epoch and then the variant, a row without one first."""
    rows = {"epoch_2.guidance_scale-3.0.json": metric_row(2, 1.0, {"guidance_scale": 3.0}, class_accuracy=0.9),
            "epoch_2.json": metric_row(2, 2.0),
            "epoch_2.guidance_scale-1.5.json": metric_row(2, 3.0, {"guidance_scale": 1.5}, class_accuracy=0.8),
            "epoch_1.guidance_scale-3.0.json": metric_row(1, 4.0, {"guidance_scale": 3.0}, class_accuracy=0.7),
            "epoch_2.guidance_scale-1.5.seed0.json": metric_row(2, 5.0, {"guidance_scale": 1.5}, class_accuracy=0.6)}
    paths = write_rows(tmp_path, rows)
    frame = aggregate_metrics({("exp", 1): paths[2:4], ("exp", 0): [*paths[:2], paths[4]]}, tmp_path / "metrics.csv")
    scores = [f"{m}{s}" for m in (*METRICS, "class_accuracy") for s in ("", "_sampling_se")]
    assert list(frame.columns) == ["experiment", "seed", "epoch", "guidance_scale", *scores, *ROW_END]
    assert frame[["seed", "epoch", "guidance_scale", "fid"]].fillna(0).values.tolist() == [
        [0, 2, 0, 2.0], [0, 2, 1.5, 5.0], [0, 2, 3.0, 1.0], [1, 1, 3.0, 4.0], [1, 2, 1.5, 3.0]]
    assert math.isnan(frame["class_accuracy"][0]) and frame["class_accuracy"].tolist()[1:] == [0.6, 0.9, 0.7, 0.8]


@pytest.mark.parametrize("name, epoch", [("epoch_40.json", 40), ("epoch_40.guidance_scale-2.0.json", 40),
                                         ("epoch_7.eta-0.5.steps-20.json", 7), ("epoch_12.png", 12),
                                         ("epoch_3.sampler-dpm_solver.png", 3)])
def test_run_of_reads_the_epoch_before_the_variant(name, epoch):
    assert run_of(f"results/base.lr-1.5/metrics/{name}") == ("base.lr-1.5", epoch)
    assert run_of("results/base.lr-1.5/losses.csv") == ("base.lr-1.5", None)
