"""Sampling a checkpoint from the command line (ddpm.sampling.main, `ddpm-sample`)."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ddpm.sampling import main
from tests.workflow import ONE_THREAD_ENV, ROOT, tiny_config


def sample_command(*args) -> list[str]:
    return [sys.executable, "-m", "ddpm.sampling", *map(str, args)]


def test_the_command_line_draws_the_workflows_samples(tiny_run, tmp_path):
    """The tiny run's sample job at its last epoch, repeated from the command line with the same arguments."""
    sampling = tiny_config()["sampling"]
    checkpoint = tiny_run / "results" / "base" / "checkpoints" / "epoch_2.pt"
    out = tmp_path / "samples.npy"
    subprocess.run(sample_command(checkpoint, "--num-samples", sampling["num_samples"], "--out", out, "--sampler", "ddim",
                                  "--steps", sampling["steps"], "--batch-size", sampling["batch_size"]),
                   env=ONE_THREAD_ENV, cwd=ROOT, check=True, capture_output=True)
    assert np.array_equal(np.load(out), np.load(tiny_run / "results" / "base" / "samples" / "epoch_2.npy"))
    grid = tmp_path / "grid.png"
    result = subprocess.run(sample_command(checkpoint, "--num-samples", 9, "--out", grid), env=ONE_THREAD_ENV, cwd=ROOT,
                            check=True, capture_output=True, text=True)
    assert result.stdout.startswith(f"wrote {grid}: 9 samples of (1, 8, 8)")
    with Image.open(grid) as image:  # 3 x 3 cells of 8x8 images, upscaled 4x, 4 borders of equal width a side
        side = image.size[0] // 4
        assert image.size[0] == image.size[1] and side > 3 * 8 and (side - 3 * 8) % 4 == 0


@pytest.mark.parametrize("args, message", [
    (["--num-samples", "0", "--out", "x.npy"], "argument --num-samples: must be an integer >= 1, got '0'"),
    (["--num-samples", "4", "--out", "x.jpg"], "argument --out: must end in .png or .npy, got 'x.jpg'"),
    (["--num-samples", "4", "--out", "x.npy", "--steps", "5"], "argument --steps: applies to the samplers ddim, "
                                                               "dpm_solver and dpm_solver_sde only"),
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "dpm_solver", "--eta", "0.5"],
     "argument --eta: applies to --sampler ddim only"),
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "ddim", "--eta", "2"], "argument --eta: must be in [0, 1], got 2.0"),
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "euler"], "argument --sampler: invalid choice: 'euler'"),
    (["--num-samples", "4", "--out", "x.npy"], "argument checkpoint: checkpoint {missing} does not exist"),
])
def test_bad_arguments_get_one_line_naming_the_argument(tmp_path, capsys, args, message):
    missing = tmp_path / "missing.pt"
    with pytest.raises(SystemExit) as exit_status:
        main([str(missing), *args])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message.format(missing=missing) in error, error


def test_steps_beyond_the_checkpoints_timesteps_are_refused_by_name(tiny_run, capsys):
    checkpoint = tiny_run / "results" / "base" / "checkpoints" / "epoch_1.pt"
    with pytest.raises(SystemExit):
        main([str(checkpoint), "--num-samples", "2", "--out", "x.npy", "--sampler", "ddim", "--steps", "21"])
    assert capsys.readouterr().err == "ddpm-sample: error: argument --steps: steps must be an integer in [1, 20], got 21\n"


@pytest.mark.parametrize("script, usage", [("ddpm-sample", "usage: ddpm-sample "), ("ddpm-train", "usage: ")])
def test_the_console_scripts_are_installed(script, usage):
    path = shutil.which(script)
    assert path is not None, f"{script} is not on PATH: pip install -e . installs it"
    assert subprocess.run([path, "--help"], capture_output=True, text=True, check=True).stdout.startswith(usage)
