"""The quality benchmark runs end to end at a tiny size, and the peer trains for the project's seconds."""

import json
import math

import pytest
import torch
import yaml

from ddpm.data import load_dataset, prepare_dataset
from tests.workflow import ROOT, TINY as TINY_CONFIG  # the tiny workflow config

TINY_ARGS = ["--experiment", "lr_high", "--budgets", "1.5", "--num-samples", "24",
        "--classifier-epochs", "1", "--peer-width", "8", "--peer-layers", "1", "--peer-ddim-steps", "4",
        "--threads", "1", "--peer-lrs", "8e-3", "--peer-ema-decays", "0.9999", "--peer-etas", "0", "1"]


@pytest.fixture
def conditional_config(tmp_path):
    """The tiny config with `lr_high` class-conditional and sampled under classifier-free guidance at scale 2."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["experiments"]["lr_high"]["class_conditional"] = True
    config["sampling"].update(guidance="cfg", guidance_scale=2.0)
    path = tmp_path / "conditional.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", str(path)]


@pytest.fixture(scope="module")
def quality():
    pytest.importorskip("diffusers", reason="the quality benchmark's peer needs diffusers (pip install -e '.[bench]')")
    from benchmarks import quality

    return quality


def test_quality_writes_json_with_every_number(quality, conditional_config, tmp_path, monkeypatch):
    args = conditional_config + TINY_ARGS
    out = tmp_path / "quality.json"
    quality.main(args + ["--out", str(out)])
    results = json.loads(out.read_text())

    assert results["recipe"]["experiment"] == "lr_high"
    assert results["recipe"]["train_config"]["lr"] == 3.0e-3 and results["recipe"]["train_config"]["device"] == "cpu"
    assert results["recipe"]["train_config"]["class_conditional"]  # trained on the digits' labels
    assert results["sampling_seeds"] == [0, 1]  # the tiny config's two draws
    assert results["device"]["threads"] == 1 and results["device"]["diffusers"]
    assert results["parameters"]["project"] > 0 and results["parameters"]["peer"] > 0
    assert results["peer_recipe"]["unet"]["block_out_channels"] == [8, 16, 16]
    assert 0 < results["classifier"]["val_accuracy"] <= 1 and results["classifier"]["num_reference"] == 1797
    (row,) = results["budgets"]
    assert row["budget_seconds"] == 1.5
    for side in ("project", "peer"):
        for key in ("train_seconds", "train_cpu_seconds", "sample_seconds", "steps"):
            assert row[side][key] > 0, (side, key)
        assert math.isfinite(row[side]["fid"]) and row[side]["fid"] > 0, side
        assert math.isfinite(row[side]["final_loss"]), side
        draws = row[side]["fid_draws"]  # each side's FID is the mean over the two sampling draws
        assert len(draws) == 2 and draws[0] != draws[1], side
        assert row[side]["fid"] == pytest.approx(sum(draws) / 2), side
        assert row[side]["fid_sampling_se"] == pytest.approx(abs(draws[0] - draws[1]) / 2), side
    assert row["project"]["epochs"] >= 1 and row["project"]["steps"] == row["project"]["epochs"] * (1797 // 64)
    # the peer is the best of its sweep: both schedules, each sampled at both etas
    sweep = row["peer_sweep"]
    assert [(v["schedule"], v["eta"]) for v in sweep] == [("linear", 0), ("linear", 1), ("squaredcos_cap_v2", 0),
                                                          ("squaredcos_cap_v2", 1)]
    assert row["peer"] == min(sweep, key=lambda v: v["fid"]) and not row["peer_reused"]
    assert sweep[0]["fid"] != sweep[1]["fid"] and sweep[0]["steps"] == sweep[1]["steps"]  # one model, two etas
    assert row["ratio"] == pytest.approx(row["project"]["fid"] / row["peer"]["fid"])
    assert results["target_met"] == (row["ratio"] <= results["target_ratio"])
    # the peer's time-bounded loop aims within half a step of the project's measured seconds; the tolerance
    # leaves room for a step slowed down on a loaded machine
    assert results["clock"] == "wall"
    assert row["peer"]["train_seconds"] == pytest.approx(1.5, rel=0.25)

    # a second run takes the peer's sweep from the first's JSON instead of training it
    monkeypatch.setattr(quality, "run_peer", lambda *args: pytest.fail("the peer was trained again"))
    again = quality.main(args + ["--out", str(tmp_path / "again.json"), "--reuse-peer", str(out)])
    assert again["budgets"][0]["peer_sweep"] == sweep and again["budgets"][0]["peer_reused"]
    with pytest.raises(SystemExit, match=r"its peer ran with other --peer-lrs"):
        quality.main(args + ["--peer-lrs", "1e-3", "--out", str(tmp_path / "x.json"), "--reuse-peer", str(out)])
    with pytest.raises(SystemExit, match=r"its peer drew at sampling seeds \[0, 1\], this config's are \[0, 1, 2\]"):
        quality.reused_peer_sweeps(str(out), quality.parse_args(args), [0, 1, 2])


def test_peer_trains_for_the_given_cpu_seconds(quality, tmp_path):
    prepare_dataset("digits", tmp_path)
    images, _ = load_dataset(tmp_path)
    args = quality.parse_args(TINY_ARGS + ["--clock", "cpu"])
    recipe = {"schedule": "squaredcos_cap_v2", "lr": 2e-3, "ema_decay": 0.995}
    drawn = []
    results = quality.run_peer(images, 1.0, {"batch_size": 24, "seed": 5, "draws": 3}, args,
                               lambda samples: drawn.append(samples) or float(len(samples)), recipe)
    assert [result["eta"] for result in results] == [0, 1]
    assert not torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[1], drawn[2])  # seeds 5, 6, 7 differ
    for result in results:
        assert result["train_cpu_seconds"] == pytest.approx(1.0, rel=0.25)
        assert result["fid_draws"] == [24, 24, 24] and result["fid"] == 24  # the number of samples of each draw
        assert {k: result[k] for k in recipe} == recipe


def test_unknown_experiment_is_refused_with_the_allowed_names(quality):
    with pytest.raises(ValueError, match=r"--experiment must be one of \['base', 'lr_high'\].*'nope'"):
        quality.load_recipe(TINY_CONFIG, "nope")


def test_recipe_is_defaults_plus_overrides_on_the_cpu(quality):
    name, config, sampling = quality.load_recipe(TINY_CONFIG, None)
    assert name == "base"  # the first experiment
    assert (config.hidden_size, config.num_timesteps, config.lr, config.device) == (8, 20, 1.0e-3, "cpu")
    assert sampling["sampler"] == "ddim" and sampling["steps"] == 5 and sampling["seed"] == 0  # schema default


def test_an_experiments_own_sampling_is_used_and_autoguidance_refused(quality):
    guidance_config = ROOT / "config" / "guidance.yaml"
    _, config, sampling = quality.load_recipe(guidance_config, "ddpm_cond")
    assert config.class_conditional and sampling["guidance"] == "cfg" and sampling["sampler"] == "dpm_solver_sde"
    assert quality.load_recipe(guidance_config, "small")[2]["guidance"] == "none"
    with pytest.raises(ValueError, match=r"experiment 'ddpm' .*sampling.guidance must be 'none' or 'cfg'.*'auto'"):
        quality.load_recipe(guidance_config, "ddpm")


def test_other_datasets_are_refused(quality, tmp_path):
    config = tmp_path / "cifar.yaml"
    config.write_text(TINY_CONFIG.read_text().replace("name: digits", "name: cifar10"))
    with pytest.raises(ValueError, match="dataset.name must be 'digits'"):
        quality.load_recipe(config, None)
