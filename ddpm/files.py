"""Atomic file writes: a reader sees the old file or the complete new one, never a partial file."""

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write through `write(file)` to a temporary name beside `path`, fsync, then rename over `path`.

    Readers see the old file or the complete new one, never a partial file, even after SIGKILL.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(frame, path: str | Path) -> Path:
    """A pandas DataFrame as CSV, without its index, written atomically."""
    return atomic_write(path, lambda f: f.write(frame.to_csv(index=False).encode()))


def publish(source: str | Path, target: str | Path) -> Path:
    """Copy `source` to `target` atomically."""
    with open(source, "rb") as f:
        return atomic_write(target, lambda out: shutil.copyfileobj(f, out))
