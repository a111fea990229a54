"""Atomic file writes: a reader sees the old file or the complete new one, never a partial file."""

import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write through `write(file)` to a temporary name beside `path`, fsync, then rename over `path`.

    Readers see the old file or the complete new one, never a partial file, even after SIGKILL. The file gets
    mode 0o666 & ~umask, as from open(path, "w"), not tempfile.mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
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


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create `.{name}.{random}.tmp` beside `path` exclusively, like tempfile.mkstemp, but with mode 0o666.

    The kernel applies the umask (and any default ACL) at creation, exactly as for open(path, "w"), so the
    umask is never read: no os.umask(0) window in which another thread would create world-writable files.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_csv(frame, path: str | Path) -> Path:
    """A pandas DataFrame as CSV, without its index, written atomically."""
    return atomic_write(path, lambda f: f.write(frame.to_csv(index=False).encode()))


def publish(source: str | Path, target: str | Path) -> Path:
    """`source` at `target` too, atomically: a hard link (no second copy on disk), or a copy across file systems."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    link = target.with_name(f".{target.name}.{secrets.token_hex(4)}.link")
    try:
        os.link(source, link)
    except OSError:  # another file system, or one without hard links
        with open(source, "rb") as f:
            return atomic_write(target, lambda out: shutil.copyfileobj(f, out))
    os.replace(link, target)
    return target
