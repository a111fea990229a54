import os
import stat
import subprocess
import sys

import pytest

from ddpm.files import atomic_write, publish
from tests.workflow import ROOT


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def failing(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temporary left behind


def test_publish_copies_the_whole_file(tmp_path):
    source = tmp_path / "source.csv"
    source.write_bytes(bytes(range(256)) * 1000)
    publish(source, tmp_path / "out" / "copy.csv")
    assert (tmp_path / "out" / "copy.csv").read_bytes() == source.read_bytes()


def test_tables_and_plots_load_without_torch():
    """The aggregate and plot jobs start in about a second: they must not import torch (seconds) on the way."""
    code = "import sys, ddpm.workflow, ddpm.plots; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def test_atomic_write_respects_the_umask(tmp_path, umask, mode):
    """Outputs get 0o666 & ~umask, the mode a plain open(path, "w") gives, not mkstemp's private 0600."""
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.bin", lambda f: f.write(b"x"))
        atomic_write(tmp_path / "new.bin", lambda f: f.write(b"y"))  # replacing keeps the mode too
        publish(tmp_path / "new.bin", tmp_path / "out" / "copy.bin")
        with open(tmp_path / "plain.bin", "w"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == mode
    for name in ("new.bin", "out/copy.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.bin", "out", "plain.bin"]  # no temporary left
