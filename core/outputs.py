"""Checks that a command's outputs can be written, made before it does any
work: a log, report, dataset or job directory that cannot be created is one
line naming the option, not a traceback after minutes of training, and
nothing already written is replaced without the user saying so."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from core.errors import HarnessError


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _given(path: str | Path, option: str, what: str) -> Path:
    # Path("") is the current directory: an empty option must not mean "here".
    if isinstance(path, str) and not path.strip():
        raise HarnessError(f"{option} needs a {what} path, got '{path}'")
    return Path(path)


def writable_dir(path: str | Path, option: str) -> Path:
    """A directory that exists and is writable, or can be created."""
    path = _given(path, option, "directory")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise HarnessError(f"{option} {path}: {base} is a file, not a directory: choose another path")
    try:
        # Permission bits say nothing for root or on special file systems
        # (/proc): writing is the one true test. The file vanishes on close.
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise HarnessError(f"{option} {path}: cannot write in {base} ({err.strerror}): choose a directory you can "
                           f"write to") from None
    return path


def new_file(path: str | Path, option: str) -> Path:
    """A file that can be created and does not exist yet (an existing file
    would be overwritten: the user must choose another path or remove it)."""
    path = _given(path, option, "file")
    if path.name in ("", ".", ".."):
        raise HarnessError(f"{option} needs a file path, got '{path}'")
    if path.is_dir():
        raise HarnessError(f"{option} {path} is a directory: pass a file path")
    if path.exists():
        raise HarnessError(f"{option} {path} already exists and would be overwritten: pass a new path or remove it")
    writable_dir(path.parent, option)
    return path


def fresh_dir(path: str | Path, option: str, outputs: tuple[str, ...]) -> Path:
    """A writable directory holding none of ``outputs`` (names this command
    writes there), so that nothing already written is replaced."""
    path = writable_dir(path, option)
    existing = [name for name in outputs if (path / name).exists()]
    if existing:
        raise HarnessError(f"{option} {path} already holds {existing[0]}, which would be replaced: pass a new "
                           f"directory or remove it")
    return path


def room_for(path: str | Path, n_bytes: float, options: str) -> None:
    """Refuse to start writing ``n_bytes`` to ``path`` where its file system
    has less free; ``options`` names what asked for that much."""
    free = shutil.disk_usage(_nearest_existing(Path(path))).free
    if n_bytes > free:
        raise HarnessError(f"{options}: writing about {_size(n_bytes)} to {path} needs more than the "
                           f"{_size(free)} free there: ask for fewer or smaller samples, or write elsewhere")


def _size(n_bytes: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    step = 0
    while n_bytes >= 1024 and step < len(units) - 1:
        n_bytes /= 1024
        step += 1
    return f"{n_bytes:.1f} {units[step]}" if n_bytes < 1e4 else f"{n_bytes:.2g} {units[step]}"
