"""Node-local staging of a replica's data files, shared by every benchmark.

MLPerf HPC lets each rank copy its shard from the shared file system to
node-local storage (timed between staging_start and staging_stop); the
pipelines then read the local copies.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def staged_path(src: str, stage_dir: str | Path) -> Path:
    """Where ``src`` lives once staged: keyed by its dataset directory, so two
    datasets with the same file names never share a staged copy."""
    source = Path(src).absolute()
    dataset = hashlib.sha1(str(source.parent.parent).encode()).hexdigest()[:12]
    return Path(stage_dir) / dataset / source.parent.name / source.name


def stage(files: list[str], stage_dir: str | Path) -> list[str]:
    """Copy files to node-local storage (skipping ones already there with the
    same size) and return the staged paths, in the same order."""
    staged = []
    for src in files:
        dst = staged_path(src, stage_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.stat().st_size != Path(src).stat().st_size:
            # A private temporary name: ranks of concurrent instances on one
            # node may stage the same file at the same time.
            tmp = dst.with_name(f"{dst.name}.{os.getpid()}.part")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        staged.append(str(dst))
    return staged
