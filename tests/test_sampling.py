"""Sampling a checkpoint from the command line (ddpm.sampling.main, `ddpm-sample`)."""

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ddpm import sampling
from ddpm.checkpoint import save_checkpoint
from ddpm.config import TrainConfig
from ddpm.models import build_model
from ddpm.sampling import main
from tests.workflow import ONE_THREAD_ENV, ROOT, tiny_config

T = 20  # the timesteps of the tests' checkpoint


def epoch_checkpoint(path: Path, **config_changes) -> Path:
    """An untrained course UNet on 8x8 images saved as training saves it at an epoch, its config changed by
    `config_changes`."""
    config = TrainConfig(hidden_size=8, num_timesteps=T, epochs=1)
    model = build_model(config, 1, 8)
    return save_checkpoint({"config": {**config.to_dict(), **config_changes}, "channels": 1, "image_size": 8,
                            "epoch": 1, "step": 1, "model": model.state_dict(), "ema": None}, path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return epoch_checkpoint(tmp_path_factory.mktemp("run") / "epoch_1.pt")


def error_line(capsys, argv: list[str]) -> str:
    """The one line that `main(argv)` writes to stderr before it exits with status 2."""
    with pytest.raises(SystemExit) as exit_status:
        main(argv)
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error


def sample_command(*args) -> list[str]:
    return [sys.executable, "-m", "ddpm.sampling", *map(str, args)]


def test_the_command_line_draws_the_workflows_samples(tiny_run, tmp_path):
    """The tiny run's sample job at its last epoch, repeated from the command line with the same arguments."""
    sampling = tiny_config()["sampling"]
    checkpoint = tiny_run / "results" / "base" / "checkpoints" / "epoch_2.pt"
    out = tmp_path / "samples.npy"
    subprocess.run(sample_command(checkpoint, "--num-samples", sampling["num_samples"], "--out", out, "--sampler", "ddim",
                                  "--steps", sampling["steps"], "--eta", sampling.get("eta", 0),  # the schema's default
                                  "--batch-size", sampling["batch_size"]),
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
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "ancestral", "--steps", "5"],
     "argument --steps: applies to the samplers ddim, dpm_solver, dpm_solver_sde only"),
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "dpm_solver", "--eta", "0.5"],
     "argument --eta: applies to the samplers ddim only"),
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "ddim", "--eta", "2"], "argument --eta: must be in [0, 1], got 2.0"),
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "euler"], "argument --sampler: invalid choice: 'euler'"),
    (["--num-samples", "4", "--out", "x.npy"], "argument checkpoint: checkpoint {missing} does not exist"),
    (["--num-samples", "4", "--out", "x.npy", "--sampler", "ancestral", "--timestep-spacing", "leading"],
     "argument --timestep-spacing: applies to the samplers ddim, dpm_solver, dpm_solver_sde only"),
    (["--num-samples", "4", "--out", "x.npy", "--guidance", "auto"],
     "argument --guide: guidance auto needs the guiding checkpoint"),
    (["--num-samples", "4", "--out", "x.npy", "--guide", "other.pt"], "argument --guide: applies to --guidance auto only"),
    (["--num-samples", "4", "--out", "x.npy", "--guidance-scale", "2"],
     "argument --guidance-scale: needs --guidance cfg or auto"),
    (["--num-samples", "4", "--out", "x.npy", "--guidance", "cfg", "--guidance-scale", "-1"],
     "argument --guidance-scale: must be a number >= 0, got '-1'"),
    (["--num-samples", "4", "--out", "x.npy", "--guidance", "classifier"], "argument --guidance: invalid choice"),
])
def test_bad_arguments_get_one_line_naming_the_argument(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing.pt"
    error = error_line(capsys, [str(missing), *args])
    assert message.format(missing=missing) in error, error


def never_sample(*args, **kwargs):
    raise AssertionError("sampled although an argument was wrong")


@pytest.mark.parametrize("args, message", [
    (["--guidance", "cfg", "--guidance-scale", "2"], "argument --guidance: cfg needs a class-conditional checkpoint"),
    (["--label", "3"], "argument --label: the checkpoint is not class-conditional"),
    (["--guidance", "auto", "--guide", "{missing}"], "argument --guide: checkpoint {missing} does not exist"),
])
def test_guidance_an_unconditional_checkpoint_cannot_take_is_refused_before_sampling(checkpoint, tmp_path, monkeypatch,
                                                                                     capsys, args, message):
    monkeypatch.setattr(sampling, "generate", never_sample)
    missing = tmp_path / "missing.pt"
    error = error_line(capsys, [str(checkpoint), "--num-samples", "2", "--out", str(tmp_path / "x.npy"),
                                *(arg.format(missing=missing) for arg in args)])
    assert message.format(missing=missing) in error, error


def test_a_guide_that_cannot_guide_the_checkpoint_is_refused_before_sampling(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sampling, "generate", never_sample)
    guide = epoch_checkpoint(tmp_path / "guide.pt", prediction="v")
    error = error_line(capsys, [str(checkpoint), "--num-samples", "2", "--out", str(tmp_path / "x.npy"),
                                "--guidance", "auto", "--guide", str(guide)])
    assert error == "ddpm-sample: error: argument --guide: guide must have the model's prediction ('eps'), got 'v'\n"


def test_an_error_while_sampling_is_not_blamed_on_an_argument(checkpoint, tmp_path, monkeypatch):
    def failing_sample(*args, **kwargs):
        raise ValueError("an error of the sampler")

    monkeypatch.setattr(sampling, "generate", failing_sample)
    with pytest.raises(ValueError, match="^an error of the sampler$"):
        main([str(checkpoint), "--num-samples", "2", "--out", str(tmp_path / "x.npy"), "--guidance", "auto",
              "--guide", str(checkpoint), "--guidance-scale", "2"])


def test_steps_beyond_the_checkpoints_timesteps_are_refused_by_name(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sampling, "generate", never_sample)
    error = error_line(capsys, [str(checkpoint), "--num-samples", "2", "--out", str(tmp_path / "x.npy"),
                                "--steps", "21"])
    assert error == (f"ddpm-sample: error: argument --steps: must be at most the checkpoint's num_timesteps ({T}), "
                     "got 21\n")


def foreign_files(folder: Path) -> dict[str, Path]:
    """Files that a user may take for a checkpoint, by what they are."""
    classifier = {"hparams": {"channels": 1}, "model": {"w": torch.ones(2)}, "val_accuracy": 0.9, "num_train": 8,
                  "num_val": 2, "training": {"epochs": 1}}  # what ddpm.metrics saves for the FID classifier
    resume = {"fingerprint": "0f", "world_size": 1, "step": 10, "elapsed_seconds": 1.0, "model": {}, "optimizer": {},
              "rng": [None], "ema": None}
    Image.new("L", (8, 8)).save(folder / "grid.png")
    return {"classifier": save_checkpoint(classifier, folder / "classifier.pt"),
            "resume state": save_checkpoint(resume, folder / "state_000000010.pt"),
            "tensor": save_checkpoint(torch.zeros(3), folder / "tensor.pt"),
            "python object": save_checkpoint(TrainConfig(), folder / "object.pt"),
            "png": folder / "grid.png",
            "old config": epoch_checkpoint(folder / "old.pt", ddim_steps=50)}


@pytest.mark.parametrize("kind, message", [
    ("classifier", "was not saved by training: it has no config, channels, image_size, ema; "
                   "sample results/<run>/checkpoints/epoch_<E>.pt"),
    ("resume state", "is a resume state of training, not an epoch checkpoint: sample "
                     "results/<run>/checkpoints/epoch_<E>.pt"),
    ("tensor", "holds a Tensor, not the dict that training saves at an epoch"),
    ("python object", "was not saved by training: it holds Python objects other than tensors"),
    ("png", "is not a PyTorch checkpoint: torch.save writes a zip archive"),
    ("old config", "holds a training config that this version of ddpm cannot read: unknown config keys ['ddim_steps']"),
])
def test_a_file_that_is_not_an_epoch_checkpoint_is_named_in_one_line(tmp_path, capsys, kind, message):
    path = foreign_files(tmp_path)[kind]
    error = error_line(capsys, [str(path), "--num-samples", "2", "--out", str(tmp_path / "x.npy")])
    assert error.startswith(f"ddpm-sample: error: argument checkpoint: checkpoint {path} {message}"), error
    assert "weights_only" not in error


@pytest.mark.parametrize("out, message", [
    ("/proc/x.npy", "argument --out: cannot create a file in /proc: "),
    ("{tmp}/file.txt/x.npy", "argument --out: cannot create a file in {tmp}/file.txt: Not a directory"),
    ("{tmp}/folder.png", "argument --out: '{tmp}/folder.png' is a folder"),
])
def test_the_output_is_checked_before_sampling(checkpoint, tmp_path, monkeypatch, capsys, out, message):
    if out.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "folder.png").mkdir()
    monkeypatch.setattr(sampling, "generate", never_sample)
    error = error_line(capsys, [str(checkpoint), "--num-samples", "2", "--out", out.format(tmp=tmp_path)])
    assert message.format(tmp=tmp_path) in error, error


def test_a_missing_output_folder_is_made(checkpoint, tmp_path, capsys):
    main([str(checkpoint), "--num-samples", "2", "--out", str(tmp_path / "new" / "x.npy")])
    assert np.load(tmp_path / "new" / "x.npy").shape == (2, 1, 8, 8)


def test_cuda_without_a_gpu_is_refused_by_name(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sampling, "generate", never_sample)
    error = error_line(capsys, [str(checkpoint), "--num-samples", "2", "--out", str(tmp_path / "x.npy"),
                                "--device", "cuda"])
    assert error == ("ddpm-sample: error: argument --device: cuda, but no CUDA GPU is visible: use --device auto "
                     "or cpu\n")


def test_ctrl_c_stops_with_one_line_and_leaves_the_output_alone(checkpoint, tmp_path):
    out = tmp_path / "x.npy"
    out.write_bytes(b"earlier samples")
    code = textwrap.dedent(f"""
        import signal, time, ddpm.sampling
        def interrupted(*args, **kwargs):
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C, while sampling ...
            time.sleep(60)  # ... which goes on until Python raises KeyboardInterrupt
        ddpm.sampling.generate = interrupted
        ddpm.sampling.main([{str(checkpoint)!r}, "--num-samples", "2", "--out", {str(out)!r}])
    """)
    # as in a terminal: Ctrl-C not ignored (a pytest-xdist worker ignores SIGINT, and a child inherits that)
    result = subprocess.run([sys.executable, "-c", code], env=ONE_THREAD_ENV, cwd=ROOT, capture_output=True, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (result.returncode, result.stderr) == (130, f"ddpm-sample: interrupted, {out} not written\n")
    assert out.read_bytes() == b"earlier samples"


def test_the_defaults_are_the_default_runs_sampling(checkpoint, tmp_path, capsys):
    """The default config's sampler, steps (at most the checkpoint's T) and eta (the schema's 0 where it sets
    none), said so by --help."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["sampling"]
    assert (sampling.DEFAULT_SAMPLER, sampling.DEFAULT_SAMPLER_STEPS, sampling.DEFAULT_ETA) == (
        config["sampler"], config["steps"], config.get("eta", 0.0))
    main([str(checkpoint), "--num-samples", "3", "--out", str(tmp_path / "default.npy")])
    main([str(checkpoint), "--num-samples", "3", "--out", str(tmp_path / "explicit.npy"), "--sampler",
          config["sampler"], "--steps", str(min(T, config["steps"]))])
    assert np.array_equal(np.load(tmp_path / "default.npy"), np.load(tmp_path / "explicit.npy"))
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = " ".join(capsys.readouterr().out.split())
    for default in (f"(default {config['sampler']})", f"(default {config['steps']}, or T when it is smaller)",
                    f"(default {config.get('eta', 0.0)})"):
        assert default in usage


def test_sampling_loads_no_plotting_library():
    """A sample job or ddpm-sample does not spend seconds importing matplotlib and pandas."""
    code = "import sys, ddpm.sampling; print(sorted(m for m in ('matplotlib', 'pandas') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("script, usage", [("ddpm-sample", "usage: ddpm-sample "), ("ddpm-train", "usage: ")])
def test_the_console_scripts_are_installed(script, usage):
    path = shutil.which(script)
    assert path is not None, f"{script} is not on PATH: pip install -e . installs it"
    assert subprocess.run([path, "--help"], capture_output=True, text=True, check=True).stdout.startswith(usage)


def test_sampling_reports_each_denoising_step_on_stderr_and_nothing_on_stdout(checkpoint, capsys):
    model = sampling.load_model(checkpoint)
    steps = []
    model.sample(3, (1, 8, 8), "cpu", steps=4, sampler="ddim", callback=lambda i, n: steps.append((i, n)))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    capsys.readouterr()
    images = sampling.generate(model, 5, steps=4, batch_size=2, device="cpu", sampler="ddim")
    quiet = sampling.generate(model, 5, steps=4, batch_size=2, device="cpu", sampler="ddim", progress=False)
    assert torch.equal(images, quiet)  # the bar changes nothing drawn
    out, err = capsys.readouterr()
    assert out == "" and "12/12" in err  # 3 batches of 4 steps
