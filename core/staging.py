"""A replica's share of the data files, its node-local staging, and the
page-cache eviction that makes ``cache_clear`` true, shared by every
benchmark.

Each data-parallel replica reads a fixed share of the files, so it can stage
exactly its files: MLPerf HPC lets each rank copy its shard from the shared
file system to node-local storage (between staging_start and staging_stop);
the pipelines then read the local copies. A staged copy is reused only
while its source is unchanged: each copy has a manifest beside it with the
source's size and modification time at staging (size alone let regenerated
fixed-size HDF5 files train on the old copies). Staged data lives in
directories only this user can enter, so nobody else can plant a copy
(with its manifest) for a run to read. A run's data must start on
durable storage, not in memory, so before run_start every file a rank will
read is evicted from the page cache: ``posix_fadvise(POSIX_FADV_DONTNEED)``,
which needs no root (unlike dropping the whole cache).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Callable

from core.errors import RankError


SHARD_STYLES = ("round_robin", "contiguous")


def shard(files: list[str], n_shards: int, index: int, style: str = "round_robin") -> list[str]:
    """Replica ``index``'s share of ``files``: every n-th file (round robin,
    CosmoFlow's reference), or one contiguous block (DeepCAM's reference;
    block sizes differ by at most one)."""
    if style == "round_robin":
        return files[index::n_shards]
    if style == "contiguous":
        # Bounds at len * i / n rounded to the nearest file.
        start, stop = ((2 * len(files) * i + n_shards) // (2 * n_shards) for i in (index, index + 1))
        return files[start:stop]
    raise ValueError(f"unknown shard style {style!r}: use one of {SHARD_STYLES}")


def staged_path(src: str, stage_dir: str | Path, suffix: str = "") -> Path:
    """Where ``src`` lives once staged (``suffix`` names a converted copy):
    keyed by its dataset directory, so two datasets with the same file
    names never share a staged copy."""
    source = Path(src).absolute()
    dataset = hashlib.sha1(str(source.parent.parent).encode()).hexdigest()[:12]
    return Path(stage_dir) / dataset / source.parent.name / f"{source.name}{suffix}"


def local_paths(files: list[str], stage_dir: str | Path | None, suffix: str = "") -> list[str]:
    """Where a replica reads ``files`` from: their staged copies, or the
    files themselves when nothing is staged."""
    return [str(staged_path(f, stage_dir, suffix)) for f in files] if stage_dir else files


MANIFEST_SUFFIX = ".staged.json"


def _source_identity(path: str | Path, kind: str) -> dict:
    info = os.stat(path)
    return {"source": str(Path(path).absolute()), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
            "kind": kind}


def _private_dir(path: Path, stage_dir: Path) -> None:
    """Create ``path`` (below ``stage_dir``) for this user alone, and refuse
    one that someone else made or could write into (``stage_dir`` itself is
    the user's choice and may be shared, as /tmp is)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    for folder in reversed([path, *[p for p in path.parents if stage_dir in p.parents]]):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        info = folder.lstat()
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077 or not stat.S_ISDIR(info.st_mode):
            raise RankError(f"stage directory {folder} is not private to this user (another owner, a link, or "
                            f"open to others), so copies there cannot be trusted: remove it or pass another "
                            f"--stage-dir")


def _is_copy_of(dst: Path, identity: dict) -> bool:
    """Whether ``dst`` is a copy of the source as ``identity`` describes it
    now (its manifest records the same size, modification time and kind of
    copy, and the copy's own size)."""
    try:
        recorded = json.loads(Path(f"{dst}{MANIFEST_SUFFIX}").read_text())
        staged_size = recorded.pop("staged_size")
        return recorded == identity and dst.stat().st_size == staged_size
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def stage(files: list[str], stage_dir: str | Path, convert: Callable[[str, Path], None] | None = None,
          suffix: str = "") -> list[str]:
    """Copy files to node-local storage, or with ``convert(src, dst)`` write
    each converted to ``its name + suffix`` (reusing copies of unchanged
    sources), and return the staged paths, in the same order."""
    staged, checked = [], set()
    kind = suffix if convert else "copy"
    for src in files:
        dst = staged_path(src, stage_dir, suffix)
        if dst.parent not in checked:      # a split's files share their directory
            _private_dir(dst.parent, Path(stage_dir).absolute())
            checked.add(dst.parent)
        identity = _source_identity(src, kind)
        if not _is_copy_of(dst, identity):
            # A private temporary name: ranks of concurrent instances on one
            # node may stage the same file at the same time.
            tmp = dst.with_name(f"{dst.name}.{os.getpid()}.part")
            try:
                if convert:
                    convert(src, tmp)
                else:
                    shutil.copyfile(src, tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(dst)
            manifest = dst.with_name(f"{dst.name}{MANIFEST_SUFFIX}.{os.getpid()}.part")
            manifest.write_text(json.dumps({**identity, "staged_size": dst.stat().st_size}))
            manifest.replace(f"{dst}{MANIFEST_SUFFIX}")
        staged.append(str(dst))
    return staged


def evict(files: list[str]) -> list[str]:
    """Drop each file's pages from the page cache; returns the files that
    could not be evicted. Written pages are flushed first: the kernel cannot
    drop dirty ones."""
    failed = []
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except OSError:
            failed.append(path)
    return failed
