"""Starting training (ddpm.launch): the command line and the launcher the workflow calls."""

import json
import subprocess
import sys

import pytest

from ddpm.data import prepare_dataset
from ddpm.launch import main, run_experiment
from tests.conftest import ROOT
from tests.test_training import tiny


def test_help_names_the_command_and_keeps_the_torchrun_example_whole():
    result = subprocess.run([sys.executable, "-m", "ddpm.launch", "--help"], capture_output=True, text=True, cwd=ROOT,
                            check=True)
    assert result.stdout.startswith("usage: ddpm-train ")
    assert "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \\\n" in result.stdout
    assert "checkpoint_epochs" in result.stdout


def test_without_checkpoint_epochs_the_last_epochs_checkpoint_is_kept(tmp_path, capsys):
    prepare_dataset("digits", tmp_path / "data")
    values = {**tiny(epochs=1, checkpoint_epochs=[1]).to_dict(), "batch_size": 600}
    del values["checkpoint_epochs"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    main(["--config", str(tmp_path / "config.json"), "--data", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"),
          "--state-dir", str(tmp_path / "state")])
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == ["checkpoints", "epoch_1.pt", "losses.csv"]
    assert f"in {tmp_path / 'run' / 'checkpoints'}, epoch_1.pt" in capsys.readouterr().out


def test_run_experiment_removes_its_config_file_however_training_ends(digits, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with pytest.raises(FileNotFoundError):
        run_experiment(tiny(), tmp_path / "no_dataset_here", run_dir, tmp_path / "state")
    assert not (run_dir / "train_config.json").exists()

    def interrupted_by_the_user(*args, **kwargs):
        assert (run_dir / "train_config.json").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr("ddpm.launch.train", interrupted_by_the_user)
    monkeypatch.setattr("ddpm.launch.load_dataset", lambda path: (digits, None))
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tiny(), tmp_path / "data", run_dir, tmp_path / "state")
    assert not (run_dir / "train_config.json").exists()


def test_the_old_command_python_m_ddpm_training_names_ddpm_train():
    """Where the command line used to be: one line to stderr naming the command, and exit status 2, not a silent 0."""
    result = subprocess.run([sys.executable, "-m", "ddpm.training", "--config", "c.json"], capture_output=True, text=True,
                            cwd=ROOT)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "ddpm.training has no command line: train with ddpm-train (see ddpm-train --help)\n"
